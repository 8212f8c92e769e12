"""Spark SQL against the lake's tables, for people: `clinical-platform sql "<query>"`.

    spark-submit --py-files spark_jobs.zip query.py --sql "<query>" --output FILE \
        [--format table|csv|json] [--as-of SNAPSHOT_ID|TIMESTAMP] [--max-rows N]

Tables are named `<zone>.<family>_<dataset>` (`curated.clinical_vs`) in the catalog the
session is given. `--as-of` reads every platform table the query names as it was at that
snapshot id (a number) or time (ISO 8601), through Iceberg's time travel. The result goes to
the `--output` file (spark-submit mixes the driver's log into its standard output); an error is
one line.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spark_jobs.contracts.layout import Zone
from spark_jobs.contracts.protocol import EntryPoint
from spark_jobs.contracts.tables import SYSTEM_NAMESPACE
from spark_jobs.runtime.session import JobError, build_session, run_job

FORMATS = ("table", "csv", "json")
_NAMESPACES = "|".join([*(z.value for z in Zone if z is not Zone.LANDING), SYSTEM_NAMESPACE])
# A platform table named in a query, not one of its metadata tables (`t.snapshots`).
_TABLE = re.compile(rf"\b((?:clinical\.)?(?:{_NAMESPACES})\.[A-Za-z0-9_]+)\b(?!\s*\.)")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="query.py", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sql", required=True)
    parser.add_argument("--format", choices=FORMATS, default="table")
    parser.add_argument("--as-of", default=None, help="snapshot id or ISO 8601 time")
    parser.add_argument("--max-rows", type=int, default=1000)
    parser.add_argument("--output", required=True, help="local file the result is written to")
    return parser.parse_args(argv)


def as_of(sql: str, version: str | None) -> str:
    """The query reading every platform table it names at a snapshot id or a time."""
    if not version:
        return sql
    clause = (
        f"VERSION AS OF {int(version)}"
        if version.isdigit()
        else "TIMESTAMP AS OF '" + version.replace("'", "''") + "'"
    )
    return _TABLE.sub(lambda m: f"{m.group(1)} {clause}", sql)


def render(columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str) -> str:
    """The rows as an aligned text table, CSV or JSON lines."""
    if fmt == "json":
        return "".join(
            json.dumps(dict(zip(columns, r, strict=True)), default=str) + "\n" for r in rows
        )
    if fmt == "csv":
        lines: list[str] = []
        writer = csv.writer(_Lines(lines), lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([["" if v is None else v for v in r] for r in rows])
        return "".join(lines)
    cells = [
        [str(c) for c in columns],
        *[["NULL" if v is None else str(v) for v in r] for r in rows],
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    text = [" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    text.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(text) + f"\n({len(rows)} row{'s' if len(rows) != 1 else ''})\n"


class _Lines:
    def __init__(self, lines: list[str]) -> None:
        self.lines = lines

    def write(self, text: str) -> None:
        self.lines.append(text)


def query(ns: argparse.Namespace) -> None:
    spark = build_session("clinical-sql")
    spark.sparkContext.setLogLevel("ERROR")
    try:
        frame = spark.sql(as_of(ns.sql, ns.as_of))
        rows = frame.limit(ns.max_rows + 1).collect()
    except Exception as error:  # noqa: BLE001 - a user's query: say what Spark said, in a line
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise JobError(f"Spark SQL said: {first}") from None
    shown = [tuple(r) for r in rows[: ns.max_rows]]
    text = render(frame.columns, shown, ns.format)
    if len(rows) > ns.max_rows:
        text += f"(only the first {ns.max_rows} rows are shown: --max-rows)\n"
    Path(ns.output).write_text(text, encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> None:
    ns = parse_args(argv)
    run_job(EntryPoint.QUERY, lambda _reporter: query(ns))


if __name__ == "__main__":
    main()
