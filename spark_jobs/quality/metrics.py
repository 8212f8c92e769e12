"""Aggregates over evaluated rows: what each rule found, counted in the pass that writes.

All of them are plain aggregates, so they can ride along the write of curated
(`DataFrame.observe`) instead of costing a pass of their own.
"""

from __future__ import annotations

import json
from typing import Any

import pyspark
from pyspark.sql import Column
from pyspark.sql import functions as F

from spark_jobs.contracts import DatasetContract
from spark_jobs.contracts.outputs import DUPLICATES_COLLAPSED, SOURCE_ROW, SOURCE_URI
from spark_jobs.quality.evaluate import (
    detail_column,
    fail_column,
    key_text,
    rejected_condition,
    row_rules,
)
from spark_jobs.quality.identifiers import SUBJECT_COLUMNS


def examples_column(rule: str) -> str:
    return f"__examples_{rule}"


def _spark_version() -> tuple[int, int]:
    major, minor = pyspark.__version__.split(".")[:2]
    return int(major), int(minor)


def smallest(value: Column, order: Column, k: int, *, bounded: bool | None = None) -> Column:
    """Aggregate: up to `k` values of the rows with the smallest non-null `order`, as an array.

    `value` must be a struct whose first field is `order`. Spark 4.2 added `k` to `min_by`,
    which keeps only k candidates per task; older Spark (EMR 6 and 7 ship 3.x) collects every
    candidate, then sorts and slices. `bounded` chooses explicitly (for tests).
    """
    if bounded is None:
        bounded = _spark_version() >= (4, 2)
    if bounded:
        min_by: Any = F.min_by  # typed with two arguments before Spark 4.2
        return min_by(value, order, k)
    return F.slice(F.array_sort(F.collect_list(F.when(order.isNotNull(), value))), 1, k)


def rule_metrics(
    contract: DatasetContract,
    examples: int,
    *,
    bounded: bool | None = None,
    as_json: bool = False,
) -> list[Column]:
    """Aggregates over evaluated rows: rows kept, duplicates collapsed, rows to quarantine, and
    per rule its failing rows and up to `examples` (natural key, details) with the smallest keys.

    All of them are plain aggregates, so they can ride along the pass that writes curated
    (`DataFrame.observe`) instead of costing a pass of their own. `as_json` gives the examples
    as JSON text: Spark before 4 hands observed arrays of structs to Python as Java objects.
    """
    key = F.expr(key_text(contract))
    metrics = [
        F.count(F.lit(1)).alias("rows"),
        F.coalesce(F.sum(DUPLICATES_COLLAPSED), F.lit(0)).alias("collapsed"),
        F.coalesce(F.sum(F.expr(rejected_condition(contract)).cast("long")), F.lit(0)).alias(
            "rejected"
        ),
    ]
    for rule in row_rules(contract):
        failing = F.col(fail_column(rule.name))
        metrics.append(F.coalesce(F.sum(failing.cast("long")), F.lit(0)).alias(rule.name))
        example = F.struct(
            key.alias("key"),
            F.col(detail_column(rule.name)).alias("details"),
            row_reference().alias("row"),
            subject_values(contract).alias("subjects"),
        )
        # Rows whose ordering is null are no candidates, so only failing rows are.
        found = smallest(example, F.when(failing, key), examples, bounded=bounded)
        metrics.append((F.to_json(found) if as_json else found).alias(examples_column(rule.name)))
    return metrics


# Subject ids are kept in curated and quarantine (identifiable zones), never in what is
# reported to Dagster: check examples name rows, and their details mask the subject.
SUBJECT_MASK = "<subject>"


def row_reference() -> Column:
    """Where a row came from, as text without any of its values: `ae.xpt row 12`."""
    file_name = F.regexp_extract(F.col(SOURCE_URI), r"[^/]*$", 0)
    return F.concat(file_name, F.lit(" row "), F.col(SOURCE_ROW).cast("string"))


def subject_values(contract: DatasetContract) -> Column:
    """The row's subject identifiers (USUBJID, SUBJID where the dataset has them)."""
    present = [c for c in SUBJECT_COLUMNS if c in contract.column_names]
    return F.array(*[F.col(c).cast("string") for c in present])


def masked_details(example: dict[str, Any]) -> list[str]:
    """An example's details with its subject's identifiers replaced by `<subject>`."""
    values = {v for s in example["subjects"] or [] if s for v in (s, s.strip()) if v}
    details = []
    for detail in example["details"] or []:
        for value in sorted(values, key=len, reverse=True):
            detail = detail.replace(value, SUBJECT_MASK)
        details.append(detail)
    return details


def examples_of(value: Any) -> list[dict[str, Any]]:
    """The examples of one rule from a metric, given as JSON text or as rows."""
    if value is None:
        return []
    return json.loads(value) if isinstance(value, str) else list(value)
