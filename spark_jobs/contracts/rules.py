"""The standard rule set every SDTM contract gets, with its documented default effects.

A contract only declares facts (columns, keys, ranges, date pairs); which rules apply follows
from those facts here, so adding a column with terminology automatically adds the check.
"""

from __future__ import annotations

from dataclasses import replace

from spark_jobs.contracts.model import DatasetContract, Effect, Level, Rule, RuleKind

# (kind, level, default effect, description) — the table in docs/data_quality.md mirrors this.
DEFAULT_RULES: tuple[tuple[RuleKind, Level, Effect, str], ...] = (
    (
        RuleKind.FILES_READABLE,
        Level.FILE,
        Effect.REJECT_FILE,
        "Every landing file of the domain is a readable, complete file of its declared format "
        "(not truncated, not empty, valid encoding, matches the delivery manifest).",
    ),
    (
        RuleKind.REQUIRED_COLUMNS,
        Level.FILE,
        Effect.REJECT_FILE,
        "Every required column of the contract is present in each file.",
    ),
    (
        RuleKind.SCHEMA_DRIFT,
        Level.FILE,
        Effect.WARN,
        "No column outside the contract; unknown columns stay in raw and are not curated.",
    ),
    (
        RuleKind.CASTABLE,
        Level.ROW,
        Effect.QUARANTINE,
        "Every value converts to its contract type (numbers, integers).",
    ),
    (
        RuleKind.ISO8601,
        Level.ROW,
        Effect.QUARANTINE,
        "Dates are valid ISO 8601; SDTM partial dates (2014, 2014-02) are valid.",
    ),
    (
        RuleKind.MAX_LENGTH,
        Level.ROW,
        Effect.QUARANTINE,
        "Text values are no longer than the contract allows.",
    ),
    (
        RuleKind.EXACT_DUPLICATES,
        Level.ROW,
        Effect.COLLAPSE,
        "Rows identical in every contract column are collapsed to one and counted.",
    ),
    (
        RuleKind.NATURAL_KEY,
        Level.ROW,
        Effect.QUARANTINE,
        "The natural key is present and unique; every row of a key shared by differing rows "
        "is quarantined.",
    ),
    (
        RuleKind.SUBJECT_IN_DM,
        Level.ROW,
        Effect.QUARANTINE,
        "USUBJID exists in DM of the same delivery.",
    ),
    (
        RuleKind.STUDY_MATCHES,
        Level.ROW,
        Effect.QUARANTINE,
        "STUDYID equals the study of the partition.",
    ),
    (
        RuleKind.FUTURE_DATE,
        Level.ROW,
        Effect.QUARANTINE,
        "No date lies after the day the data is curated.",
    ),
    (
        RuleKind.PLAUSIBLE_RANGE,
        Level.ROW,
        Effect.QUARANTINE,
        "Results in standard units lie inside the physiologically plausible range of the test.",
    ),
    (
        RuleKind.TERMINOLOGY,
        Level.ROW,
        Effect.WARN,
        "Controlled-terminology columns hold a known value and units match the test.",
    ),
    (
        RuleKind.END_BEFORE_START,
        Level.ROW,
        Effect.WARN,
        "End dates are not before their start dates (compared at the shared precision).",
    ),
    (
        RuleKind.REFERENCE_RANGE,
        Level.ROW,
        Effect.FLAG,
        "Flags results outside their own reference range; clinical data, never an error.",
    ),
    (
        RuleKind.RECONCILIATION,
        Level.PARTITION,
        Effect.BLOCK,
        "raw rows = curated rows + quarantined rows + collapsed duplicates.",
    ),
    (
        RuleKind.VOLUME,
        Level.PARTITION,
        Effect.WARN,
        "Row count within the configured change of the study's previous delivery.",
    ),
)


def _applies(kind: RuleKind, contract: DatasetContract) -> bool:
    if kind is RuleKind.SUBJECT_IN_DM:
        return contract.references_dm
    if kind is RuleKind.STUDY_MATCHES:
        return "STUDYID" in contract.column_names  # omics counts name only sample and gene
    if kind is RuleKind.FUTURE_DATE:
        return bool(contract.datetime_columns)
    if kind is RuleKind.ISO8601:
        return bool(contract.datetime_columns)
    if kind is RuleKind.PLAUSIBLE_RANGE:
        return bool(contract.plausible_ranges)
    if kind is RuleKind.TERMINOLOGY:
        return bool(contract.standard_units) or any(c.terminology for c in contract.columns)
    if kind is RuleKind.END_BEFORE_START:
        return bool(contract.date_pairs)
    if kind is RuleKind.REFERENCE_RANGE:
        return contract.reference_range is not None
    return True


def with_standard_rules(contract: DatasetContract) -> DatasetContract:
    """The contract with every standard rule that its facts make applicable."""
    rules = tuple(
        Rule(name=kind.value, kind=kind, level=level, effect=effect, description=description)
        for kind, level, effect, description in DEFAULT_RULES
        if _applies(kind, contract)
    )
    return replace(contract, rules=rules)
