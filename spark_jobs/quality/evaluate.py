"""Row-level data-quality rules of a contract, evaluated as columns of one DataFrame.

`evaluate` types the raw rows, collapses exact duplicates, finds natural-key conflicts, then
adds for every rule a boolean `__fail_<rule>` and, for failing rows, one-line details
(`__why_<rule>`), and turns the rules' effects into `_reject_reasons` (row goes to quarantine)
and `_flags` (row kept and flagged). Counting and writing happen in the caller, in the same
pass over the data.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyspark
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from spark_jobs.contracts import ColumnType, DatasetContract, Effect, Rule, RuleKind
from spark_jobs.quality.conform import (
    conform_types,
    iso_earliest_column,
    iso_valid_column,
    parse_dates,
    source_name,
)
from spark_jobs.quality.sql_text import concat, ident, number, present, quoted, text

ROW_RULE_KINDS = (
    RuleKind.CASTABLE,
    RuleKind.ISO8601,
    RuleKind.MAX_LENGTH,
    RuleKind.NATURAL_KEY,
    RuleKind.SUBJECT_IN_DM,
    RuleKind.STUDY_MATCHES,
    RuleKind.FUTURE_DATE,
    RuleKind.PLAUSIBLE_RANGE,
    RuleKind.TERMINOLOGY,
    RuleKind.END_BEFORE_START,
    RuleKind.REFERENCE_RANGE,
)
IN_DM = "__in_dm"
ZONE = "(T[0-9:.,]*)(Z|[+-][0-9]{2}(:?[0-9]{2})?)$"  # a time followed by its zone

Item = tuple[str, str]  # (SQL condition, SQL message)


def fail_column(rule: str) -> str:
    return f"__fail_{rule}"


def detail_column(rule: str) -> str:
    return f"__why_{rule}"


@dataclass(frozen=True)
class EvaluationContext:
    """Facts about the partition the rules need besides the rows themselves."""

    study: str
    today: dt.date
    dm_subjects: DataFrame | None  # one column USUBJID; None when DM is unavailable
    dm_unavailable_reason: str | None = None
    dm_lineage: Mapping[str, Any] | None = None  # the DM partition read, for lineage


class RuleItems:
    """SQL conditions and messages of each row rule for one contract."""

    def __init__(
        self, contract: DatasetContract, source_types: Mapping[str, str], context: EvaluationContext
    ) -> None:
        self.contract = contract
        self.source_types = source_types
        self.context = context

    def castable(self) -> list[Item]:
        items = []
        for column in self.contract.columns:
            if (
                column.type not in (ColumnType.DOUBLE, ColumnType.INTEGER)
                or column.name not in self.source_types
            ):
                continue
            source, value = ident(source_name(column.name)), ident(column.name)
            kind = "a number" if column.type is ColumnType.DOUBLE else "an integer"
            items.append(
                (
                    f"{source} IS NOT NULL AND {value} IS NULL",
                    concat(text(f"{column.name}="), quoted(source), text(f" is not {kind}")),
                )
            )
        return items

    def iso8601(self) -> list[Item]:
        return [
            (
                f"NOT {ident(iso_valid_column(n))}",
                concat(text(f"{n}="), quoted(ident(n)), text(" is not an ISO 8601 date/time")),
            )
            for n in self.contract.datetime_columns
        ]

    def max_length(self) -> list[Item]:
        items = []
        for column in self.contract.columns:
            if column.max_length is None or column.type not in (
                ColumnType.STRING,
                ColumnType.DATETIME,
            ):
                continue
            length = f"length({ident(column.name)})"
            items.append(
                (
                    f"{length} > {column.max_length}",
                    concat(
                        text(f"{column.name} has "),
                        f"CAST({length} AS STRING)",
                        text(f" characters, at most {column.max_length} allowed"),
                    ),
                )
            )
        return items

    def study_matches(self) -> list[Item]:
        study = text(self.context.study)
        return [
            (
                f"STUDYID IS NULL OR STUDYID != {study}",
                concat(
                    text("STUDYID="),
                    quoted("STUDYID"),
                    text(f" differs from the partition's study {self.context.study}"),
                ),
            )
        ]

    def subject_in_dm(self) -> list[Item]:
        if self.context.dm_subjects is None:
            reason = self.context.dm_unavailable_reason or "DM is unavailable"
            return [("TRUE", text(f"USUBJID cannot be verified: {reason}"))]
        return [
            (
                f"{IN_DM} IS NULL",
                concat(text("USUBJID="), quoted("USUBJID"), text(" is not in DM of this delivery")),
            )
        ]

    def future_date(self) -> list[Item]:
        today = self.context.today.isoformat()
        return [
            (
                f"{ident(iso_earliest_column(n))} > DATE {text(today)}",
                concat(text(f"{n}="), quoted(ident(n)), text(f" lies after {today}")),
            )
            for n in self.contract.datetime_columns
        ]

    def plausible_range(self) -> list[Item]:
        c = self.contract
        assert c.test_code_column and c.result_column and c.unit_column
        test, value, unit = ident(c.test_code_column), ident(c.result_column), ident(c.unit_column)
        return [
            (
                f"{test} = {text(r.test_code)} AND ({unit} IS NULL OR {unit} = {text(r.unit)}) "
                f"AND ({value} < {number(r.low)} OR {value} > {number(r.high)})",
                concat(
                    text(f"{c.result_column}="),
                    f"CAST({value} AS STRING)",
                    text(
                        f" {r.unit} is outside the plausible range {r.low:g}-{r.high:g} "
                        f"for {r.test_code}"
                    ),
                ),
            )
            for r in c.plausible_ranges
        ]

    def terminology(self) -> list[Item]:
        items = []
        for column in self.contract.columns:
            if not column.terminology:
                continue
            value = ident(column.name)
            allowed = ", ".join(text(t) for t in column.terminology)
            items.append(
                (
                    f"{value} IS NOT NULL AND {value} NOT IN ({allowed})",
                    concat(
                        text(f"{column.name}="),
                        quoted(value),
                        text(" is not in its controlled terminology"),
                    ),
                )
            )
        c = self.contract
        if c.standard_units and c.test_code_column and c.unit_column:
            test, unit = ident(c.test_code_column), ident(c.unit_column)
            pairs = ", ".join(f"{text(k)}, {text(v)}" for k, v in c.standard_units.items())
            expected = f"map({pairs})[{test}]"
            items.append(
                (
                    f"{unit} IS NOT NULL AND {expected} IS NOT NULL AND {unit} != {expected}",
                    concat(
                        text(f"{c.unit_column}="),
                        quoted(unit),
                        text(" is not the standard unit "),
                        quoted(expected),
                        text(" of "),
                        test,
                    ),
                )
            )
        return items

    def end_before_start(self) -> list[Item]:
        items = []
        for start_name, end_name in self.contract.date_pairs:
            start, end = ident(start_name), ident(end_name)
            # Compare local date/time text only: "Z" or "+01:00" is not a finer component.
            start, end = (f"regexp_replace({c}, {text(ZONE)}, '$1')" for c in (start, end))
            shared = f"least(length({start}), length({end}))"
            condition = (
                f"{start} IS NOT NULL AND {end} IS NOT NULL "
                f"AND {ident(iso_valid_column(start_name))} "
                f"AND {ident(iso_valid_column(end_name))} "
                f"AND substring({end}, 1, {shared}) < substring({start}, 1, {shared})"
            )
            items.append(
                (
                    condition,
                    concat(
                        text(f"{end_name}="),
                        quoted(ident(end_name)),
                        text(f" is before {start_name}="),
                        quoted(ident(start_name)),
                    ),
                )
            )
        return items

    def reference_range(self) -> list[Item]:
        c = self.contract
        assert c.reference_range and c.result_column
        low, high = (ident(n) for n in c.reference_range)
        value = ident(c.result_column)
        return [
            (
                f"{value} < {low} OR {value} > {high}",
                concat(
                    text(f"{c.result_column}="),
                    f"CAST({value} AS STRING)",
                    text(" is outside its reference range "),
                    f"coalesce(CAST({low} AS STRING), '')",
                    text("-"),
                    f"coalesce(CAST({high} AS STRING), '')",
                ),
            )
        ]

    def items(self, rule: Rule) -> list[Item]:
        builders = {
            RuleKind.CASTABLE: self.castable,
            RuleKind.ISO8601: self.iso8601,
            RuleKind.MAX_LENGTH: self.max_length,
            RuleKind.STUDY_MATCHES: self.study_matches,
            RuleKind.SUBJECT_IN_DM: self.subject_in_dm,
            RuleKind.FUTURE_DATE: self.future_date,
            RuleKind.PLAUSIBLE_RANGE: self.plausible_range,
            RuleKind.TERMINOLOGY: self.terminology,
            RuleKind.END_BEFORE_START: self.end_before_start,
            RuleKind.REFERENCE_RANGE: self.reference_range,
        }
        return builders[rule.kind]()


def row_rules(contract: DatasetContract) -> list[Rule]:
    """Rules evaluated per row, in contract order, excluding those a study switched off."""
    return [r for r in contract.rules if r.kind in ROW_RULE_KINDS and r.effect is not Effect.OFF]


def rejected_condition(contract: DatasetContract) -> str:
    """SQL that holds for a row breaking a quarantining rule (its `_reject_reasons` not empty)."""
    quarantining = [r for r in row_rules(contract) if r.effect is Effect.QUARANTINE]
    return " OR ".join(fail_column(r.name) for r in quarantining) or "false"


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
        return F.min_by(value, order, k)
    return F.slice(F.array_sort(F.collect_list(F.when(order.isNotNull(), value))), 1, k)


def rule_metrics(
    contract: DatasetContract, examples: int, *, bounded: bool | None = None
) -> list[Column]:
    """Aggregates over evaluated rows: rows kept, duplicates collapsed, rows to quarantine, and
    per rule its failing rows and up to `examples` (natural key, details) with the smallest keys.

    All of them are plain aggregates, so they can ride along the pass that writes curated
    (`DataFrame.observe`) instead of costing a pass of their own.
    """
    key = F.expr(key_text(contract))
    metrics = [
        F.count(F.lit(1)).alias("rows"),
        F.coalesce(F.sum("_duplicates_collapsed"), F.lit(0)).alias("collapsed"),
        F.coalesce(F.sum(F.expr(rejected_condition(contract)).cast("long")), F.lit(0)).alias(
            "rejected"
        ),
    ]
    for rule in row_rules(contract):
        failing = F.col(fail_column(rule.name))
        metrics.append(F.coalesce(F.sum(failing.cast("long")), F.lit(0)).alias(rule.name))
        example = F.struct(key.alias("key"), F.col(detail_column(rule.name)).alias("details"))
        # Rows whose ordering is null are no candidates, so only failing rows are.
        metrics.append(
            smallest(example, F.when(failing, key), examples, bounded=bounded).alias(
                examples_column(rule.name)
            )
        )
    return metrics


def key_text(contract: DatasetContract) -> str:
    """SQL for the natural key of a row as text ("01-701-1015/3"), for check examples."""
    parts = ", ".join(
        f"coalesce(CAST({ident(k)} AS STRING), '<missing>')" for k in contract.natural_key
    )
    return f"concat_ws('/', {parts})"


def _effect(contract: DatasetContract, kind: RuleKind) -> Effect:
    rules = contract.rules_of(kind)
    return rules[0].effect if rules else Effect.OFF


def evaluate(
    raw: DataFrame,
    contract: DatasetContract,
    source_types: Mapping[str, str],
    context: EvaluationContext,
) -> DataFrame:
    """Raw rows conformed, duplicates collapsed, each with its reasons, flags and failures.

    Order matters for speed (measured at 10x pilot volume): only what the duplicate and key
    windows need travels through their shuffle and sort; dates are parsed and rules evaluated
    after it, which also keeps Spark from folding the typing into every rule expression.
    """
    df = conform_types(raw, contract, source_types)
    # Exact duplicates: identical in every contract column. Where a numeric value did not
    # convert, its source text stands in, so "abc" and "xyz" never look alike as two nulls.
    # Rows are compared through two independent hashes (xxhash64 and murmur3, 96 bits)
    # within their natural key: sorting on every column instead took most of the time.
    # Spark's hashes skip nulls, so each value's nullness is hashed too: otherwise
    # (A='x', B=NULL) and (A=NULL, B='x') would hash alike and one would vanish as a duplicate.
    values = [
        *[ident(c) for c in contract.column_names],
        *[
            f"CASE WHEN {ident(c)} IS NULL THEN {ident(source_name(c))} END"
            for c in contract.column_names
            if source_name(c) in df.columns
        ],
    ]
    identity = [*values, *[f"({value}) IS NULL" for value in values]]
    df = df.selectExpr(
        "*",
        f"xxhash64({', '.join(identity)}) AS __row_hash",
        f"hash({', '.join(identity)}) AS __row_hash2",
    )
    df = df.repartition(*[F.col(k) for k in contract.natural_key])
    if _effect(contract, RuleKind.EXACT_DUPLICATES) is not Effect.OFF:
        same_row = Window.partitionBy(*contract.natural_key, "__row_hash", "__row_hash2")
        df = (
            df.withColumn(
                "__dup_rank", F.row_number().over(same_row.orderBy("_source_uri", "_source_row"))
            )
            .withColumn("__dup_count", F.count(F.lit(1)).over(same_row))
            .filter("__dup_rank = 1")
            .withColumn("_duplicates_collapsed", F.expr("CAST(__dup_count - 1 AS INT)"))
            .drop("__dup_rank", "__dup_count")
        )
    else:
        df = df.withColumn("_duplicates_collapsed", F.lit(0))
    df = df.withColumn(
        "__key_rows", F.count(F.lit(1)).over(Window.partitionBy(*contract.natural_key))
    )

    if contract.references_dm and context.dm_subjects is not None:
        subjects = context.dm_subjects.select("USUBJID").distinct().withColumn(IN_DM, F.lit(True))
        df = df.join(F.broadcast(subjects), on="USUBJID", how="left")
    df = parse_dates(df, contract)

    rules = row_rules(contract)
    builder = RuleItems(contract, source_types, context)
    key_missing = " OR ".join(f"{ident(k)} IS NULL" for k in contract.natural_key)
    details = {r.name: builder.items(r) for r in rules if r.kind is not RuleKind.NATURAL_KEY}
    natural_key = contract.rule(RuleKind.NATURAL_KEY.value)
    details[natural_key.name] = [
        (
            key_missing,
            concat(text("natural key "), key_text(contract), text(" has a missing part")),
        ),
        (
            f"NOT ({key_missing}) AND __key_rows > 1",
            concat(
                text("natural key "),
                key_text(contract),
                text(" is shared by "),
                "CAST(__key_rows AS STRING)",
                text(" differing rows"),
            ),
        ),
    ]
    # Failing is a plain boolean per rule; the details array is only built for failing rows
    # (allocating arrays for every row cost more than evaluating the rules). Every detail
    # starts with its rule's name, so a row's list says which rule said what.
    empty = "CAST(array() AS array<string>)"
    df = df.selectExpr(
        "*",
        *[
            f"({' OR '.join(f'coalesce({c}, false)' for c, _ in items) or 'false'}) AS "
            f"{fail_column(name)}"
            for name, items in details.items()
        ],
    )
    df = df.selectExpr(
        "*",
        *[
            f"CASE WHEN {fail_column(name)} THEN "
            f"{present((c, concat(text(name + ': '), m)) for c, m in items)} ELSE {empty} END AS "
            f"{detail_column(name)}"
            for name, items in details.items()
        ],
    )

    quarantining = [r for r in rules if r.effect is Effect.QUARANTINE]
    flagging = [r for r in rules if r.effect in (Effect.WARN, Effect.FLAG)]
    return df.selectExpr(
        "*",
        f"{_names_where(quarantining)} AS _reject_reasons",
        f"{_details_where(quarantining)} AS _reject_details",
        f"{_names_where(flagging)} AS _flags",
        f"{_details_where(flagging)} AS _flag_details",
    )


def _names_where(rules: Sequence[Rule]) -> str:
    if not rules:
        return "CAST(array() AS array<string>)"
    any_fails = " OR ".join(fail_column(r.name) for r in rules)
    names = present((fail_column(r.name), text(r.name)) for r in rules)
    return f"CASE WHEN {any_fails} THEN {names} ELSE CAST(array() AS array<string>) END"


def _details_where(rules: Sequence[Rule]) -> str:
    if not rules:
        return "CAST(array() AS array<string>)"
    any_fails = " OR ".join(fail_column(r.name) for r in rules)
    details = "flatten(array(" + ", ".join(detail_column(r.name) for r in rules) + "))"
    return f"CASE WHEN {any_fails} THEN {details} ELSE CAST(array() AS array<string>) END"
