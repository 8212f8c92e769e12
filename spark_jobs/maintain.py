"""Table upkeep: `clinical-platform retention --keep N` expires old snapshots of every table.

    spark-submit --py-files spark_jobs.zip maintain.py --keep N --output FILE [--stage-hours H]

Per platform table: snapshots beyond the newest N of `main` are expired (their unreferenced
files deleted), and staging branches that a killed run left behind for longer than H hours
are dropped. Lineage records in `system.lineage` are never deleted: the audit trail of every
commit stays, also for versions no longer readable. Writes one line per table to --output.
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Sequence
from pathlib import Path

from pyspark.sql import SparkSession

from spark_jobs.contracts.layout import Zone
from spark_jobs.contracts.protocol import EntryPoint
from spark_jobs.contracts.tables import CATALOG, LINEAGE_TABLE, SYSTEM_NAMESPACE, qualified
from spark_jobs.runtime.session import JobError, build_session, run_job

STAGE_PREFIX = "stage_"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="maintain.py", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--keep", type=int, required=True, help="snapshots kept per table")
    parser.add_argument("--stage-hours", type=float, default=24.0)
    parser.add_argument("--output", required=True, help="local file the summary is written to")
    ns = parser.parse_args(argv)
    if ns.keep < 1:
        parser.error("--keep must be at least 1: the current version is always kept")
    return ns


def platform_tables(spark: SparkSession) -> list[str]:
    """Every table of the zones, `system.lineage` excluded (it is append-only history)."""
    names: list[str] = []
    namespaces = {row[0] for row in spark.sql(f"SHOW NAMESPACES IN {CATALOG}").collect()}
    for zone in (z.value for z in Zone if z is not Zone.LANDING):
        if zone in namespaces:
            names += [
                f"{zone}.{r['tableName']}"
                for r in spark.sql(f"SHOW TABLES IN {qualified(zone)}").collect()
            ]
    return [n for n in sorted(names) if n != LINEAGE_TABLE and not n.startswith(SYSTEM_NAMESPACE)]


def drop_stale_branches(spark: SparkSession, table: str, hours: float) -> int:
    """Staging branches older than `hours`: left by killed runs, never published."""
    cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(hours=hours)
    refs = spark.sql(
        f"SELECT r.name, s.committed_at FROM {qualified(table)}.refs r "
        f"JOIN {qualified(table)}.snapshots s ON r.snapshot_id = s.snapshot_id "
        f"WHERE r.type = 'BRANCH' AND r.name LIKE '{STAGE_PREFIX}%'"
    ).collect()
    stale = [r["name"] for r in refs if r["committed_at"].replace(tzinfo=dt.UTC) < cutoff]
    for name in stale:
        spark.sql(f"ALTER TABLE {qualified(table)} DROP BRANCH IF EXISTS {name}")
    return len(stale)


def expire(spark: SparkSession, table: str, keep: int) -> tuple[int, int]:
    """(snapshots before, data files deleted) after keeping the newest `keep` snapshots."""
    before = spark.sql(f"SELECT count(*) FROM {qualified(table)}.snapshots").first()
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    result = spark.sql(
        f"CALL {qualified('system')}.expire_snapshots(table => '{table}', "
        f"older_than => TIMESTAMP '{now}', retain_last => {keep})"
    ).first()
    deleted = int(result["deleted_data_files_count"]) if result is not None else 0
    return (int(before[0]) if before is not None else 0), deleted


def maintain(ns: argparse.Namespace) -> None:
    spark = build_session("clinical-retention")
    spark.sparkContext.setLogLevel("ERROR")
    tables = platform_tables(spark)
    if not tables:
        raise JobError("the catalog holds no platform table yet; nothing to expire")
    lines = []
    for table in tables:
        branches = drop_stale_branches(spark, table, ns.stage_hours)
        before, deleted = expire(spark, table, ns.keep)
        after = spark.sql(f"SELECT count(*) FROM {qualified(table)}.snapshots").first()
        kept = int(after[0]) if after is not None else 0
        lines.append(
            f"{table}: {before} snapshots, {kept} kept, {deleted} data files deleted, "
            f"{branches} stale staging branches dropped\n"
        )
    Path(ns.output).write_text("".join(lines), encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> None:
    ns = parse_args(argv)
    run_job(EntryPoint.MAINTAIN, lambda _reporter: maintain(ns))


if __name__ == "__main__":
    main()
