"""Dataset contracts as plain data: the Spark jobs enforce them, Dagster renders them.

Nothing here imports Spark or Dagster, so both sides (and the tests) share one definition of
every column, key and rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum

from spark_jobs.contracts.layout import CLINICAL_FAMILY


class ColumnType(StrEnum):
    """Logical types a contract column can have; each maps to one Spark SQL type."""

    STRING = "string"
    DOUBLE = "double"
    INTEGER = "bigint"
    DATETIME = "iso8601"  # ISO 8601 text, parsed into <name>_DATE and <name>_PRECISION
    TIMESTAMP = "timestamp"  # an instant (UTC), as device exports carry it; text is ISO 8601

    @property
    def spark_sql(self) -> str:
        return "string" if self is ColumnType.DATETIME else self.value

    @property
    def transport_type(self) -> str:
        """How a SAS XPORT delivery types the column: SAS has only numbers and text. A
        timestamp is declared as the instant a Parquet export carries (CSV brings text)."""
        if self is ColumnType.TIMESTAMP:
            return "timestamp"
        return "double" if self in (ColumnType.DOUBLE, ColumnType.INTEGER) else "string"


class Effect(StrEnum):
    """What a rule violation does to the data (the severity of a rule)."""

    REJECT_FILE = "reject_file"  # the whole domain file is rejected; blocking check
    BLOCK = "block"  # partition-level proof failed; blocking check
    QUARANTINE = "quarantine"  # row moved to quarantine/ with the rule name as a reason
    COLLAPSE = "collapse"  # exact duplicate rows collapsed to one and counted
    WARN = "warn"  # row kept and flagged; the check fails with WARN severity
    FLAG = "flag"  # row kept and flagged; informational, the check always passes
    OFF = "off"  # rule not evaluated (per-study opt-out)

    @property
    def blocking(self) -> bool:
        return self in (Effect.REJECT_FILE, Effect.BLOCK)


class Level(StrEnum):
    """What a rule looks at."""

    FILE = "file"
    ROW = "row"
    PARTITION = "partition"


class RuleKind(StrEnum):
    """Rule families the curation job knows how to evaluate."""

    FILES_READABLE = "files_readable"
    REQUIRED_COLUMNS = "required_columns"
    SCHEMA_DRIFT = "schema_drift"
    CASTABLE = "castable"
    ISO8601 = "iso8601"
    MAX_LENGTH = "max_length"
    EXACT_DUPLICATES = "exact_duplicates"
    NATURAL_KEY = "natural_key"
    SUBJECT_IN_DM = "subject_in_dm"
    STUDY_MATCHES = "study_matches"
    FUTURE_DATE = "future_date"
    PLAUSIBLE_RANGE = "plausible_range"
    TERMINOLOGY = "terminology"
    END_BEFORE_START = "end_before_start"
    REFERENCE_RANGE = "reference_range"
    RECONCILIATION = "reconciliation"
    VOLUME = "volume"


@dataclass(frozen=True)
class Column:
    """One contract column. `required` means the file is rejected when the column is absent."""

    name: str
    type: ColumnType = ColumnType.STRING
    label: str = ""
    required: bool = False
    max_length: int | None = None
    terminology: tuple[str, ...] | None = None
    round_digits: int | None = None  # key-like doubles: 9.299999999999999 and 9.3 are one visit

    @property
    def is_datetime(self) -> bool:
        return self.type is ColumnType.DATETIME


@dataclass(frozen=True)
class PlausibleRange:
    """Physiologically possible values of one test (findings: its --TESTCD, in its standard
    unit) or, where `column` is set, of every value of that column (wide data: a device
    export's HEART_RATE)."""

    test_code: str
    low: float
    high: float
    unit: str
    column: str | None = None


@dataclass(frozen=True)
class Rule:
    """A named data-quality rule; its name is also the Dagster asset check name."""

    name: str
    kind: RuleKind
    level: Level
    effect: Effect
    description: str

    @property
    def blocking(self) -> bool:
        return self.effect.blocking


@dataclass(frozen=True)
class DatasetContract:
    """Columns, natural key and rules of one curated SDTM domain."""

    name: str  # lower-case dataset name, used in asset keys and lake paths ("ae")
    domain: str  # SDTM DOMAIN value ("AE")
    title: str
    description: str
    columns: tuple[Column, ...]
    natural_key: tuple[str, ...]
    file_stems: tuple[str, ...]  # landing file stems folded into this domain ("lb", "lbch", ...)
    date_pairs: tuple[tuple[str, str], ...] = ()  # (start, end) columns for end_before_start
    test_code_column: str | None = None  # findings domains: --TESTCD
    result_column: str | None = None  # findings domains: --STRESN
    unit_column: str | None = None  # findings domains: --STRESU
    standard_units: Mapping[str, str] = field(default_factory=dict)
    plausible_ranges: tuple[PlausibleRange, ...] = ()
    reference_range: tuple[str, str] | None = None  # (low, high) columns of the lab's own range
    references_dm: bool = True
    family: str = CLINICAL_FAMILY  # the source family: its landing folder and its tables
    # Each delivery carries the dataset whole (SDTM), so the latest one is the study's current
    # data; False where each delivery adds to the earlier ones (a sensor upload batch).
    cumulative: bool = True
    volume_change_limit: float = 0.5  # warn when rows change by more than this fraction
    rules: tuple[Rule, ...] = ()

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def required_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.required)

    @property
    def datetime_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.is_datetime)

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(f"{self.name}: no column {name} in the contract")

    def rule(self, name: str) -> Rule:
        for rule in self.rules:
            if rule.name == name:
                return rule
        raise KeyError(f"{self.name}: no rule {name} in the contract")

    def rules_of(self, kind: RuleKind) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.kind is kind)

    def with_effects(self, overrides: Mapping[str, Effect]) -> DatasetContract:
        """This contract with some rules' effects changed (per-study configuration).

        File- and partition-level proofs stay blocking: turning them off would let wrong data
        through silently, so only row-level rules and the volume warning can be changed.
        """
        unknown = set(overrides) - {r.name for r in self.rules}
        if unknown:
            raise KeyError(f"{self.name}: study override names unknown rules {sorted(unknown)}")
        rules = []
        for rule in self.rules:
            effect = overrides.get(rule.name, rule.effect)
            if effect is not rule.effect and (rule.blocking or effect.blocking):
                raise ValueError(
                    f"{self.name}.{rule.name}: a study may not change a blocking rule's effect"
                )
            rules.append(replace(rule, effect=effect))
        return replace(self, rules=tuple(rules))
