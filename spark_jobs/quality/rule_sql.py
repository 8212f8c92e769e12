"""SQL text of each row rule: when a row breaks it, and the one-line detail saying how.

Conditions and messages are Spark SQL text over the conformed columns (see `conform`); the
evaluation turns them into one boolean and, for failing rows only, one detail array per rule.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pyspark.sql import DataFrame

from spark_jobs.contracts import ColumnType, DatasetContract, PlausibleRange, Rule, RuleKind
from spark_jobs.quality.conform import (
    CONVERTED_TYPES,
    iso_earliest_column,
    iso_valid_column,
    source_name,
)
from spark_jobs.quality.sql_text import concat, ident, number, quoted, text

IN_DM = "__in_dm"
ZONE = "(T[0-9:.,]*)(Z|[+-][0-9]{2}(:?[0-9]{2})?)$"  # a time followed by its zone

Item = tuple[str, str]  # (SQL condition, SQL message)
CONVERTED_AS = {
    ColumnType.DOUBLE: "a number",
    ColumnType.INTEGER: "an integer",
    ColumnType.TIMESTAMP: "a timestamp (ISO 8601 with a zone, or a Parquet timestamp)",
}


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
            if column.type not in CONVERTED_TYPES or column.name not in self.source_types:
                continue
            source, value = ident(source_name(column.name)), ident(column.name)
            kind = CONVERTED_AS[column.type]
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
        by_column = [r for r in c.plausible_ranges if r.column is not None]
        by_test = [r for r in c.plausible_ranges if r.column is None]
        items = [self._column_range(r) for r in by_column]
        if not by_test:
            return items
        assert c.test_code_column and c.result_column and c.unit_column
        test, value, unit = ident(c.test_code_column), ident(c.result_column), ident(c.unit_column)
        return items + [
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
            for r in by_test
        ]

    @staticmethod
    def _column_range(r: PlausibleRange) -> Item:
        assert r.column is not None
        value = ident(r.column)
        return (
            f"{value} < {number(r.low)} OR {value} > {number(r.high)}",
            concat(
                text(f"{r.column}="),
                f"CAST({value} AS STRING)",
                text(f" {r.unit} is outside the plausible range {r.low:g}-{r.high:g}"),
            ),
        )

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
        builders: dict[RuleKind, Callable[[], list[Item]]] = {
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
