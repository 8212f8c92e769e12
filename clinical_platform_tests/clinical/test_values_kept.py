"""Level 2: curated keeps every delivered value exactly, up to documented conformance (issue 16).

Each contract column of each curated domain of the CDISC pilot is compared, row by row, with
the raw row it came from (joined on `_source_uri`, `_source_row`; rows collapsed as duplicates
or quarantined have no curated row and are not compared). Conformance may only remove trailing
blank padding (blanks only -> null), cast to the contract type, and give controlled terminology
its submission spelling (a change of case only). Any other difference fails, naming the domain,
the column and an example. The expectations are written here, not taken from `conform`, so a
change there cannot move them too.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from pyspark.sql import Column as SparkColumn
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from clinical_platform_tests.conftest import PilotRun
from clinical_platform_tests.helpers import read_table
from spark_jobs.contracts import SDTM_CONTRACTS, Column, ColumnType, DatasetContract, contract_for
from spark_jobs.contracts.layout import Delivery
from spark_jobs.contracts.outputs import PROVENANCE, SOURCE_ROW, SOURCE_URI
from spark_jobs.curate import curated_frame
from spark_jobs.quality.evaluate import evaluate
from spark_jobs.quality.rule_sql import EvaluationContext

pytestmark = pytest.mark.slow

KEY = (SOURCE_URI, SOURCE_ROW)
TEXT_TYPES = (ColumnType.STRING, ColumnType.DATETIME)
FOUND = "__raw_row_found"


def raw_name(name: str) -> str:
    return f"__raw_{name}"


def unpadded(value: SparkColumn) -> SparkColumn:
    """Trailing blanks are SAS padding; a value of blanks only is no value."""
    stripped = F.regexp_replace(value, " +$", "")
    return F.when(stripped != "", stripped)


def spellings(contract: DatasetContract, column: Column) -> list[str]:
    """Values whose case conformance may change: the column's codelist, units for the unit."""
    values = list(column.terminology or ())
    if column.name == contract.unit_column:
        values += list(contract.standard_units.values())
    return values


def kept(contract: DatasetContract, column: Column, raw_type: str | None) -> SparkColumn:
    """Whether the curated value is the raw one up to the documented conformance."""
    curated, raw = F.col(column.name), F.col(raw_name(column.name))
    if raw_type is None:  # a column the delivery lacks is null in curated
        return curated.isNull()
    if raw_type != "string":  # a SAS number: curated text or number must denote the same number
        number = curated.cast("double")
        if column.round_digits is not None:  # key-like doubles: 9.299999999999999 is 9.3
            close = F.abs(number - raw) <= 0.5 * 10.0**-column.round_digits
            return (curated.isNull() & raw.isNull()) | close
        return (curated.isNull() & raw.isNull()) | (number == raw)
    expected = unpadded(raw)
    if column.type not in TEXT_TYPES:
        return curated.eqNullSafe(expected.cast("double"))
    same = curated.eqNullSafe(expected)
    codes = spellings(contract, column)
    if codes:
        same = same | (curated.isin(codes) & (F.upper(curated) == F.upper(expected)))
    return same


def value_differences(raw: DataFrame, curated: DataFrame, contract: DatasetContract) -> list[str]:
    """One line per column whose curated values differ from raw beyond conformance.

    One Spark job per domain: curated joined to its raw rows, one count and the first example
    (by file and row) per column, plus the proof that every curated row has its raw row.
    """
    raw_types = dict(raw.dtypes)
    present = [c.name for c in contract.columns if c.name in raw_types]
    raw_side = raw.select(
        *KEY, F.lit(True).alias(FOUND), *[F.col(n).alias(raw_name(n)) for n in present]
    )
    joined = curated.join(raw_side, on=list(KEY), how="left")
    checks = {c.name: kept(contract, c, raw_types.get(c.name)) for c in contract.columns}
    differs = {name: ~F.coalesce(check, F.lit(False)) for name, check in checks.items()}
    example = {
        name: F.struct(
            *[F.col(k) for k in KEY],
            F.col(raw_name(name)).cast("string").alias("raw")
            if name in present
            else F.lit(None).cast("string").alias("raw"),
            F.col(name).cast("string").alias("curated"),
        )
        for name in checks
    }
    summary = joined.agg(
        F.count(F.lit(1)).alias("rows"),
        F.count_distinct(*[F.col(k) for k in KEY]).alias("distinct_rows"),
        F.count(F.col(FOUND)).alias("found"),
        *[F.count_if(bad).alias(f"n_{name}") for name, bad in differs.items()],
        *[F.min(F.when(bad, example[name])).alias(f"e_{name}") for name, bad in differs.items()],
    ).first()
    assert summary is not None
    problems = []
    if not summary["rows"] == summary["distinct_rows"] == summary["found"]:
        problems.append(
            f"{contract.name}: {summary['rows']} curated rows, {summary['found']} traced to "
            f"raw, {summary['distinct_rows']} distinct provenances"
        )
    for name in checks:
        if summary[f"n_{name}"]:
            e = summary[f"e_{name}"]
            problems.append(
                f"{contract.name}.{name}: {summary[f'n_{name}']} row(s) differ from raw, e.g. "
                f"{e[SOURCE_URI]} row {e[SOURCE_ROW]}: raw {e['raw']!r}, curated {e['curated']!r}"
            )
    return problems


# ---------------------------------------------------------------------------- the pilot


def pilot_tables(
    spark: SparkSession, run: PilotRun, contract: DatasetContract
) -> tuple[DataFrame, DataFrame]:
    raw = read_table(spark, run.lake, "raw", contract.name, run.delivery)
    curated = read_table(spark, run.lake, "curated", contract.name, run.delivery)
    return raw, curated


def test_curated_pilot_values_are_the_delivered_values(pilot_run: PilotRun, spark) -> None:
    """Every value of every curated pilot domain is its raw value up to conformance."""
    problems, compared = [], {}
    for default in SDTM_CONTRACTS:
        contract = contract_for(default.name, pilot_run.delivery.study)
        raw, curated = pilot_tables(spark, pilot_run, contract)
        problems += value_differences(raw, curated, contract)
        compared[contract.name] = len([c for c in contract.columns if c.name in raw.columns])
    assert not problems, "\n".join(problems)
    assert all(compared.values()), compared  # no domain passed by comparing nothing


def test_an_unexplained_change_in_the_pilot_is_reported(pilot_run: PilotRun, spark) -> None:
    """The comparison can fail: an upper-cased free text and a changed number are named."""
    contract = contract_for("dm", pilot_run.delivery.study)
    raw, curated = pilot_tables(spark, pilot_run, contract)
    tampered = curated.withColumn("ARM", F.upper("ARM")).withColumn("AGE", F.col("AGE") + 1)
    problems = value_differences(raw, tampered, contract)
    assert [p.split(":")[0] for p in problems] == ["dm.AGE", "dm.ARM"], problems  # contract order
    assert all(" row(s) differ from raw, e.g. file:" in p for p in problems), problems


# ---------------------------------------------------------------------------- blanks


STUDY = "S01"
SUBJECT = "S01-001"
BLANK_URI = "file:/landing/ae.csv"
BLANK_VALUES: dict[str, list[str | None]] = {
    "STUDYID": [STUDY, f"{STUDY}   ", STUDY, STUDY, STUDY],
    "DOMAIN": ["AE", "AE", "ae  ", "AE", "AE"],
    "USUBJID": [SUBJECT] * 5,
    "AESEQ": ["1", "2 ", " 3", "4", "5"],
    "AETERM": [" HEADACHE", "HEADACHE  ", "  SORE  THROAT  ", "NAUSEA\t", "RASH"],
    "AEDECOD": ["Headache", "Headache", "Pharyngitis", "Nausea", "Rash"],
    "AESPID": ["   ", "", None, " 7", "x  "],
    "AESEV": ["MILD", "mild   ", "Moderate", " MILD", None],
}


@pytest.fixture(scope="module")
def blank_delivery(spark: SparkSession) -> tuple[DataFrame, DataFrame, DatasetContract]:
    """A CSV-like AE delivery full of blanks, curated by the real rule evaluation."""
    names = list(BLANK_VALUES)
    delivery = Delivery(STUDY, "2024-01-15")
    rows = [
        (*[BLANK_VALUES[n][i] for n in names], BLANK_URI, i + 1, "0" * 64, delivery.key, "ingest")
        for i in range(len(BLANK_VALUES["AETERM"]))
    ]
    provenance = ", ".join(f"{c.name} {c.type}" for c in PROVENANCE)
    raw = spark.createDataFrame(rows, ", ".join([*(f"{n} string" for n in names), provenance]))
    contract = contract_for("ae", STUDY)
    dm = spark.createDataFrame([(SUBJECT,)], "USUBJID string")
    context = EvaluationContext(STUDY, dt.date(2024, 1, 15), dm)
    evaluated = evaluate(raw, contract, {n: "string" for n in names}, context)
    curated = curated_frame(evaluated, contract, "curate", delivery)
    return raw, curated.cache(), contract


def test_blanks_survive_curation_as_documented(
    blank_delivery: tuple[DataFrame, DataFrame, DatasetContract],
) -> None:
    """Leading and inner blanks stay, trailing padding goes, and nothing else changes."""
    raw, curated, contract = blank_delivery
    assert curated.count() == raw.count()  # nothing quarantined: every row is compared
    assert value_differences(raw, curated, contract) == []
    terms = {r[SOURCE_ROW]: r["AETERM"] for r in curated.select(SOURCE_ROW, "AETERM").collect()}
    assert terms[1] == " HEADACHE" and terms[3] == "  SORE  THROAT"


@pytest.mark.parametrize(
    ("column", "change"),
    [
        ("AETERM", F.trim),
        ("AEDECOD", F.upper),
        ("AESPID", lambda c: F.coalesce(c, F.lit(""))),
        ("AESEQ", lambda c: c + 1),
    ],
)
def test_comparison_names_a_change_beyond_conformance(
    blank_delivery: tuple[DataFrame, DataFrame, DatasetContract],
    column: str,
    change: Callable[[SparkColumn], SparkColumn],
) -> None:
    """Trimming leading blanks, upper-casing free text, blank for null, another number: named."""
    raw, curated, contract = blank_delivery
    changed = curated.withColumn(column, change(F.col(column)))
    problems = value_differences(raw, changed, contract)
    assert [p.split(":")[0] for p in problems] == [f"ae.{column}"], problems
