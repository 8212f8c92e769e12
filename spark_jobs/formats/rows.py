"""Landing files -> rows of a domain's union schema, with row numbers and provenance.

Runs inside Spark executors on one file, or on one record-aligned byte range of an XPT file,
so a large file is decoded by many tasks with bounded memory each.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from spark_jobs.formats import xport
from spark_jobs.formats.csv_text import csv_records


def format_number(value: float) -> str:
    """Text of a number read as a double, without float noise for whole numbers."""
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


@dataclass(frozen=True)
class RowPlan:
    """How to turn one file's records into rows of its domain's union schema."""

    uri: str
    format: str
    source_positions: tuple[int | None, ...]  # per union column: index in the file, or None
    to_text: tuple[bool, ...]  # per union column: numeric source value must become text
    provenance: tuple[Any, ...]  # values appended to every row after its number


def plan_rows(
    plan: RowPlan, records: Iterable[Sequence[Any]], first_row: int = 1
) -> Iterator[tuple[Any, ...]]:
    """Each record in union-column order, followed by its 1-based row number and provenance."""
    for number, record in enumerate(records, start=first_row):
        values = []
        for position, to_text in zip(plan.source_positions, plan.to_text, strict=True):
            if position is None:
                values.append(None)
                continue
            value = record[position]
            if to_text and isinstance(value, float):
                value = format_number(value)
            values.append(value)
        yield (*values, number, *plan.provenance)


def iter_file_rows(plan: RowPlan, content: bytes) -> Iterator[tuple[Any, ...]]:
    """Rows of one whole accepted file held in memory."""
    if plan.format == "xpt":
        records: Iterator[Sequence[Any]] = xport.iter_rows(content, xport.inspect(content))
    elif plan.format == "csv":
        records = iter(csv_records(content)[1])
    else:
        raise ValueError(f"{plan.uri}: rows of {plan.format} files are read by Spark")
    return plan_rows(plan, records)


def iter_xport_range(
    plan: RowPlan, layout: xport.XportLayout, observations: bytes, first: int
) -> Iterator[tuple[Any, ...]]:
    """Rows of observations [first, ...) of an XPT file, given exactly their bytes."""
    decoded = xport.RowDecoder(layout.header).rows(observations, first_row=first + 1)
    return plan_rows(plan, decoded, first_row=first + 1)
