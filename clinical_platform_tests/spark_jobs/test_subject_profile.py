"""Level 1: every feature of the subject profile on a few rows, and its declared lineage.

The frames hold only the curated columns the features read, typed as curated declares them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spark_jobs.contracts import SUBJECT_PROFILE
from spark_jobs.contracts.layout import Zone
from spark_jobs.contracts.outputs import output
from spark_jobs.subject_profile import (
    adverse_event_features,
    disposition_features,
    exposure_features,
    identifying_columns,
    lab_features,
    pseudonymizer,
    study_day,
    subject_profile,
    vital_features,
)

KEY = b"unit-test-key"
D = dt.date

ROWS: dict[str, tuple[str, list[tuple[Any, ...]]]] = {
    "dm": (
        "USUBJID string, STUDYID string, AGE double, SEX string, RACE string, ARM string, "
        "RFSTDTC_DATE date",
        [
            ("S1", "ST", 95.0, "F", "WHITE", "Placebo", D(2024, 1, 10)),
            ("S2", "ST", 60.0, "M", "ASIAN", "High", D(2024, 1, 5)),
        ],
    ),
    "vs": (
        "USUBJID string, VSTESTCD string, VSSTRESN double, VSBLFL string, VISITNUM double",
        [
            ("S1", "SYSBP", 120.0, "Y", 1.0),
            ("S1", "SYSBP", 124.0, "Y", 1.0),
            ("S1", "SYSBP", 130.0, None, 2.0),
            ("S1", "SYSBP", 140.0, None, 3.0),
            ("S1", "SYSBP", 150.0, None, 3.0),
            ("S1", "DIABP", 80.0, "Y", 1.0),
            ("S1", "DIABP", 70.0, None, 2.0),
            ("S1", "PULSE", 60.0, "Y", 1.0),
            ("S2", "SYSBP", 110.0, "Y", 1.0),
            ("S2", "SYSBP", 115.0, None, 4.0),
            ("S2", "TEMP", 37.0, "Y", 1.0),
        ],
    ),
    "ae": (
        "USUBJID string, AESEV string, AESER string",
        [("S1", "MILD", "N"), ("S1", "SEVERE", "Y"), ("S1", "MODERATE", "N")],
    ),
    "ex": (
        "USUBJID string, EXSTDTC_DATE date, EXENDTC_DATE date",
        [
            ("S1", D(2024, 1, 10), D(2024, 1, 20)),
            ("S1", D(2024, 1, 21), None),
            ("S2", D(2024, 1, 6), D(2024, 1, 8)),
        ],
    ),
    "lb": (
        "USUBJID string, LBSTRESN double, LBSTNRLO double, LBSTNRHI double, LBNRIND string",
        [
            ("S1", 5.0, 1.0, 10.0, "NORMAL"),
            ("S1", 12.0, 1.0, 10.0, "HIGH"),
            ("S1", 3.0, 4.0, 10.0, None),
            ("S2", 7.0, None, None, "HIGH"),
        ],
    ),
    "ds": (
        "USUBJID string, DSCAT string, DSDECOD string, DSSTDTC_DATE date, DSSEQ bigint",
        [
            ("S1", "DISPOSITION EVENT", "COMPLETED", D(2024, 3, 1), 3),
            ("S1", "DISPOSITION EVENT", "ADVERSE EVENT", D(2024, 3, 1), 2),
            ("S1", "PROTOCOL MILESTONE", "RANDOMIZED", D(2024, 1, 10), 1),
        ],
    ),
}


def frames(spark: SparkSession) -> dict[str, DataFrame]:
    return {name: spark.createDataFrame(rows, schema) for name, (schema, rows) in ROWS.items()}


def by_subject(df: DataFrame, key: str = "USUBJID") -> dict[str, dict[str, Any]]:
    return {row[key]: row.asDict() for row in df.collect()}


def pseudonym(subject: str) -> str:
    return hmac.new(KEY, f"ST/{subject}".encode(), hashlib.sha256).hexdigest()


@pytest.fixture(scope="module")
def profile(spark: SparkSession) -> dict[str, dict[str, Any]]:
    built = subject_profile(frames(spark), pseudonymizer(KEY))
    return by_subject(built, "subject_pseudonym")


def test_study_day_has_no_day_zero(spark: SparkSession) -> None:
    df = spark.createDataFrame(
        [
            (D(2024, 1, 10), D(2024, 1, 10)),
            (D(2024, 1, 9), D(2024, 1, 10)),
            (D(2024, 1, 12), D(2024, 1, 10)),
        ],
        "day date, reference date",
    )
    days = [r[0] for r in df.select(study_day(F.col("day"), F.col("reference"))).collect()]
    assert days == [1, -1, 3]


def test_vitals_baseline_last_visit_and_change(spark: SparkSession) -> None:
    found = by_subject(vital_features(frames(spark)["vs"]))
    s1, s2 = found["S1"], found["S2"]
    assert (s1["sysbp_baseline"], s1["sysbp_last"], s1["sysbp_change"]) == (122.0, 145.0, 23.0)
    assert (s1["diabp_baseline"], s1["diabp_last"], s1["diabp_change"]) == (80.0, 70.0, -10.0)
    assert (s1["pulse_baseline"], s1["pulse_last"], s1["pulse_change"]) == (60.0, None, None)
    assert (s2["sysbp_baseline"], s2["sysbp_last"], s2["sysbp_change"]) == (110.0, 115.0, 5.0)
    assert s2["diabp_baseline"] is None  # TEMP is not one of the vital signs profiled


def test_adverse_event_counts(spark: SparkSession) -> None:
    found = by_subject(adverse_event_features(frames(spark)["ae"]))
    assert found == {
        "S1": {
            "USUBJID": "S1",
            "ae_count": 3,
            "ae_mild_count": 1,
            "ae_moderate_count": 1,
            "ae_severe_count": 1,
            "ae_serious_count": 1,
        }
    }


def test_exposure_first_and_last_dose(spark: SparkSession) -> None:
    found = by_subject(exposure_features(frames(spark)["ex"]))
    assert (found["S1"]["first_dose"], found["S1"]["last_dose"]) == (D(2024, 1, 10), D(2024, 1, 21))
    assert (found["S2"]["first_dose"], found["S2"]["last_dose"]) == (D(2024, 1, 6), D(2024, 1, 8))


def test_labs_out_of_range_by_value_or_by_indicator(spark: SparkSession) -> None:
    found = by_subject(lab_features(frames(spark)["lb"]))
    assert {s: r["lab_out_of_range_count"] for s, r in found.items()} == {"S1": 2, "S2": 1}


def test_disposition_is_the_latest_event_and_maps_to_a_category(spark: SparkSession) -> None:
    ds = spark.createDataFrame(
        [
            ("A", "DISPOSITION EVENT", "COMPLETED", D(2024, 3, 1), 3),
            ("A", "DISPOSITION EVENT", "ADVERSE EVENT", D(2024, 3, 1), 2),
            ("B", "DISPOSITION EVENT", "SCREEN FAILURE", D(2024, 1, 2), 1),
            ("C", "DISPOSITION EVENT", "COMPLETED", D(2024, 2, 1), 1),
            ("C", "DISPOSITION EVENT", "LOST TO FOLLOW-UP", D(2024, 4, 1), 2),
            ("D", "PROTOCOL MILESTONE", "RANDOMIZED", D(2024, 1, 2), 1),
        ],
        ROWS["ds"][0],
    )
    found = by_subject(disposition_features(ds))
    assert {s: (r["disposition"], r["disposition_reason"]) for s, r in found.items()} == {
        "A": ("completed", "COMPLETED"),  # same day: the higher DSSEQ wins
        "B": ("screen_failure", "SCREEN FAILURE"),
        "C": ("discontinued", "LOST TO FOLLOW-UP"),  # the later event wins
    }


def test_profile_has_one_de_identified_row_per_dm_subject(
    profile: dict[str, dict[str, Any]],
) -> None:
    assert set(profile) == {pseudonym("S1"), pseudonym("S2")}
    s1, s2 = profile[pseudonym("S1")], profile[pseudonym("S2")]
    assert list(s1) == list(SUBJECT_PROFILE.column_names)
    assert (s1["age"], s1["sex"], s1["race"], s1["arm"]) == (90.0, "F", "WHITE", "Placebo")
    assert (s1["first_dose_study_day"], s1["last_dose_study_day"]) == (1, 12)
    assert s1["treatment_duration_days"] == 12
    assert (s1["disposition"], s1["disposition_reason"], s1["disposition_study_day"]) == (
        "completed",
        "COMPLETED",
        52,
    )
    assert (s1["ae_count"], s1["lab_out_of_range_count"]) == (3, 2)
    # No adverse events and no disposition: counts are zero, the subject is ongoing.
    assert (s2["ae_count"], s2["ae_serious_count"], s2["disposition"]) == (0, 0, "ongoing")
    assert (s2["first_dose_study_day"], s2["treatment_duration_days"]) == (2, 3)


def test_profile_leaks_no_identifier_or_date(spark: SparkSession) -> None:
    built = subject_profile(frames(spark), pseudonymizer(KEY))
    assert identifying_columns(built) == []
    leaky = built.withColumn("USUBJID", F.lit("S1")).withColumn("visit_date", F.current_date())
    assert identifying_columns(leaky) == ["USUBJID", "visit_date"]


# ---------------------------------------------------------------------------- lineage

Perturb = Callable[[Any], Any]


def perturbation(type_name: str) -> Perturb:
    """A change that moves values relative to each other, so order-based features notice."""
    changes: Mapping[str, Perturb] = {
        "string": lambda v: None if v is None else f"{v}x",
        "double": lambda v: None if v is None else -v,
        "bigint": lambda v: None if v is None else -v,
        "date": lambda v: None if v is None else v + dt.timedelta(days=3),
    }
    return changes[type_name]


def readable_pseudonym(study: Any, subject: Any) -> Any:
    """Stands in for the HMAC here so rows stay matched by subject when STUDYID changes."""
    return F.concat_ws("|", subject, study)


def profile_by_subject(inputs: dict[str, DataFrame]) -> dict[str, dict[str, Any]]:
    rows = subject_profile(inputs, readable_pseudonym).collect()
    return {row["subject_pseudonym"].split("|")[0]: row.asDict() for row in rows}


def test_each_feature_changes_only_with_the_curated_columns_its_lineage_names(
    spark: SparkSession,
) -> None:
    """Perturb one curated column at a time: every feature that changes must list it, and every
    perturbed column must change some feature (no column is read for nothing).

    All perturbations run in one Spark job: variant k prefixes every USUBJID with `k#`.
    """
    variants: list[tuple[str, int] | None] = [None]
    for dataset, (schema, _) in ROWS.items():
        names = [part.strip().split(" ")[0] for part in schema.split(",")]
        variants += [(dataset, i) for i, name in enumerate(names) if name != "USUBJID"]
    inputs: dict[str, DataFrame] = {}
    for dataset, (schema, rows) in ROWS.items():
        types = [part.strip().split(" ")[1] for part in schema.split(",")]
        data = []
        for k, variant in enumerate(variants):
            for row in rows:
                values = [f"{k}#{v}" if i == 0 else v for i, v in enumerate(row)]
                if variant is not None and variant[0] == dataset:
                    index = variant[1]
                    values[index] = perturbation(types[index])(values[index])
                data.append(tuple(values))
        inputs[dataset] = spark.createDataFrame(data, schema)
    found = profile_by_subject(inputs)
    lineage = output(Zone.FEATURES, SUBJECT_PROFILE.name).column_lineage
    sources = {
        name: {(r.asset_key.removeprefix("curated_"), r.column) for r in refs}
        for name, refs in lineage.items()
    }
    baseline = {s.split("#")[1]: row for s, row in found.items() if s.startswith("0#")}
    assert set(baseline) == {"S1", "S2"}
    for k, variant in enumerate(variants[1:], start=1):
        assert variant is not None
        dataset, index = variant
        column = ROWS[dataset][0].split(",")[index].strip().split(" ")[0]
        changed = {
            feature
            for subject, row in baseline.items()
            for feature, value in row.items()
            if feature != "subject_pseudonym" and found[f"{k}#{subject}"][feature] != value
        }
        study_of = {s: row["subject_pseudonym"].split("|")[1] for s, row in baseline.items()}
        if any(
            found[f"{k}#{s}"]["subject_pseudonym"].split("|")[1] != study_of[s] for s in study_of
        ):
            changed.add("subject_pseudonym")
        assert changed, f"perturbing {dataset}.{column} changed no feature"
        undeclared = {f for f in changed if (dataset, column) not in sources.get(f, set())}
        assert undeclared == set(), (dataset, column)
    assert len(variants) - 1 == 22
