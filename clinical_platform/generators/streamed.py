"""What the streaming generators share: a delivery's files and fault counts, and a file written
one Arrow table at a time (Parquet row groups or CSV chunks) under a temporary name."""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.parquet as pq

FileFormat = Literal["parquet", "csv"]
FILE_FORMATS = ("parquet", "csv")


@dataclass(frozen=True)
class GeneratedDelivery:
    """The files written, their data rows, and how many of each fault they hold."""

    files: list[Path]
    rows: int
    faults: dict[str, int]


def require_count(name: str, value: object, least: int) -> None:
    """A generator's size argument: an integer of at least `least`, or a one-line ValueError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")


def require_format(file_format: str) -> None:
    if file_format not in FILE_FORMATS:
        raise ValueError(f"format must be parquet or csv, got {file_format!r}")


def plain_rows(table: pa.Table) -> Iterator[Sequence[object]]:
    """A table's rows as Python values, for CSV."""
    return zip(*table.to_pydict().values(), strict=True)


def write_tables(
    path: Path,
    schema: pa.Schema,
    tables: Iterable[pa.Table],
    file_format: FileFormat,
    *,
    csv_rows: Callable[[pa.Table], Iterable[Sequence[object]]] = plain_rows,
    written: Callable[[int], None] | None = None,
) -> int:
    """Write the tables in order, each released before the next is drawn; `written` is told
    how many tables are done after each. A failure leaves no file behind. Returns the rows."""
    partial = path.with_name(path.name + ".partial")
    rows = 0
    try:
        with _appender(partial, schema, file_format, csv_rows) as write:
            for done, table in enumerate(tables, start=1):
                write(table)
                rows += len(table)
                del table  # before the next one is drawn: memory stays one table
                if written is not None:
                    written(done)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return rows


@contextmanager
def _appender(
    path: Path,
    schema: pa.Schema,
    file_format: FileFormat,
    csv_rows: Callable[[pa.Table], Iterable[Sequence[object]]],
) -> Iterator[Callable[[pa.Table], None]]:
    """A function that appends one table to the open file."""
    if file_format == "parquet":
        with pq.ParquetWriter(path, schema) as parquet:
            yield lambda table: parquet.write_table(table, row_group_size=len(table))
        return
    with path.open("w", newline="", encoding="utf-8") as text:
        out = csv.writer(text, lineterminator="\n")
        out.writerow(schema.names)
        yield lambda table: out.writerows(csv_rows(table))
