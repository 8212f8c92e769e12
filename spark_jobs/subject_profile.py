"""The subject profile: one de-identified row per subject, as pure DataFrame transforms.

Each feature family is a function of curated frames that tests call on a few rows; the
columns each feature reads are declared in the contract (`SUBJECT_PROFILE.lineage`), and a
test perturbs every curated column to prove that only the features listing it change.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from pyspark.sql import Column as SparkColumn
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from spark_jobs.contracts import SUBJECT_PROFILE
from spark_jobs.contracts.features import IDENTIFYING_COLUMNS, VITAL_TESTS
from spark_jobs.quality import identifiers

AGE_CAP = 90  # HIPAA Safe Harbor: ages over 89 are reported as one category
ABNORMAL_INDICATORS = ("LOW", "HIGH", "ABNORMAL", "LOW LOW", "HIGH HIGH")
DISPOSITION_EVENT = "DISPOSITION EVENT"


def pseudonymizer(key: bytes) -> Any:
    """A UDF computing HMAC-SHA256(key, "STUDYID/USUBJID") as hex.

    A Python UDF rather than SQL: the key stays inside the pickled function instead of
    appearing as a literal in query plans, the Spark UI and event logs.
    """

    def pseudonym(study: str | None, subject: str | None) -> str | None:
        if subject is None or study is None:
            return None
        return hmac.new(key, f"{study}/{subject}".encode(), hashlib.sha256).hexdigest()

    return F.udf(pseudonym, T.StringType())


def study_day(date: SparkColumn, reference: SparkColumn) -> SparkColumn:
    """SDTM study day: day 1 is the reference start date, the day before is -1 (no day 0)."""
    days = F.datediff(date, reference)
    return F.when(days >= 0, days + 1).otherwise(days).cast("bigint")


def vital_features(vs: DataFrame) -> DataFrame:
    """Baseline, last post-baseline visit and change for each vital sign, one row per subject."""
    tests = list(VITAL_TESTS)
    measured = vs.where(F.col("VSTESTCD").isin(tests) & F.col("VSSTRESN").isNotNull())
    baseline = (
        measured.where(F.col("VSBLFL") == "Y")
        .groupBy("USUBJID", "VSTESTCD")
        .agg(F.avg("VSSTRESN").alias("baseline"), F.max("VISITNUM").alias("base_visit"))
    )
    after = measured.join(
        baseline.select("USUBJID", "VSTESTCD", "base_visit"), ["USUBJID", "VSTESTCD"]
    ).where(F.col("VISITNUM") > F.col("base_visit"))
    last_visit = after.groupBy("USUBJID", "VSTESTCD").agg(F.max("VISITNUM").alias("last_visit"))
    last = (
        after.join(last_visit, ["USUBJID", "VSTESTCD"])
        .where(F.col("VISITNUM") == F.col("last_visit"))
        .groupBy("USUBJID", "VSTESTCD")
        .agg(F.avg("VSSTRESN").alias("last"))
    )
    per_test = baseline.join(last, ["USUBJID", "VSTESTCD"], "full").withColumn(
        "change", F.col("last") - F.col("baseline")
    )
    pivoted = (
        per_test.groupBy("USUBJID")
        .pivot("VSTESTCD", list[Any](tests))
        .agg(
            F.first("baseline").alias("baseline"),
            F.first("last").alias("last"),
            F.first("change").alias("change"),
        )
    )
    return pivoted.select(
        "USUBJID",
        *[
            F.round(F.col(f"{code}_{part}"), 4).alias(f"{name}_{part}")
            for code, name in VITAL_TESTS.items()
            for part in ("baseline", "last", "change")
        ],
    )


def adverse_event_features(ae: DataFrame) -> DataFrame:
    def count_where(condition: SparkColumn) -> SparkColumn:
        return F.sum(F.when(condition, 1).otherwise(0)).cast("bigint")

    return ae.groupBy("USUBJID").agg(
        F.count(F.lit(1)).cast("bigint").alias("ae_count"),
        count_where(F.col("AESEV") == "MILD").alias("ae_mild_count"),
        count_where(F.col("AESEV") == "MODERATE").alias("ae_moderate_count"),
        count_where(F.col("AESEV") == "SEVERE").alias("ae_severe_count"),
        count_where(F.col("AESER") == "Y").alias("ae_serious_count"),
    )


def exposure_features(ex: DataFrame) -> DataFrame:
    return ex.groupBy("USUBJID").agg(
        F.min("EXSTDTC_DATE").alias("first_dose"),
        F.max(F.coalesce("EXENDTC_DATE", "EXSTDTC_DATE")).alias("last_dose"),
    )


def lab_features(lb: DataFrame) -> DataFrame:
    value, low, high = F.col("LBSTRESN"), F.col("LBSTNRLO"), F.col("LBSTNRHI")
    outside = F.coalesce((value < low) | (value > high), F.lit(False)) | F.coalesce(
        F.col("LBNRIND").isin(*ABNORMAL_INDICATORS), F.lit(False)
    )
    return lb.groupBy("USUBJID").agg(
        F.sum(F.when(outside, 1).otherwise(0)).cast("bigint").alias("lab_out_of_range_count")
    )


def disposition_features(ds: DataFrame) -> DataFrame:
    events = ds.where(F.col("DSCAT") == DISPOSITION_EVENT)
    latest = events.groupBy("USUBJID").agg(
        F.max_by(
            F.struct("DSDECOD", "DSSTDTC_DATE"), F.struct(F.col("DSSTDTC_DATE"), F.col("DSSEQ"))
        ).alias("event")
    )
    decod = F.col("event.DSDECOD")
    return latest.select(
        "USUBJID",
        F.when(decod == "COMPLETED", "completed")
        .when(decod == "SCREEN FAILURE", "screen_failure")
        .otherwise("discontinued")
        .alias("disposition"),
        decod.alias("disposition_reason"),
        F.col("event.DSSTDTC_DATE").alias("disposition_date"),
    )


def subject_profile(curated: dict[str, DataFrame], pseudonym: Any) -> DataFrame:
    """One row per DM subject; identifiers and dates are dropped at the end."""
    dm = curated["dm"].select(
        "USUBJID",
        "STUDYID",
        "AGE",
        "SEX",
        "RACE",
        "ARM",
        F.col("RFSTDTC_DATE").alias("reference_date"),
    )
    joined = (
        dm.join(vital_features(curated["vs"]), "USUBJID", "left")
        .join(adverse_event_features(curated["ae"]), "USUBJID", "left")
        .join(exposure_features(curated["ex"]), "USUBJID", "left")
        .join(lab_features(curated["lb"]), "USUBJID", "left")
        .join(disposition_features(curated["ds"]), "USUBJID", "left")
    )
    reference = F.col("reference_date")
    zero_if_none = (
        "ae_count",
        "ae_mild_count",
        "ae_moderate_count",
        "ae_severe_count",
        "ae_serious_count",
        "lab_out_of_range_count",
    )
    columns: dict[str, SparkColumn] = {
        "subject_pseudonym": pseudonym(F.col("STUDYID"), F.col("USUBJID")),
        "age": F.least(F.col("AGE"), F.lit(float(AGE_CAP))),
        "sex": F.col("SEX"),
        "race": F.col("RACE"),
        "arm": F.col("ARM"),
        **{
            f"{name}_{part}": F.col(f"{name}_{part}")
            for name in VITAL_TESTS.values()
            for part in ("baseline", "last", "change")
        },
        **{name: F.coalesce(F.col(name), F.lit(0)).cast("bigint") for name in zero_if_none},
        "first_dose_study_day": study_day(F.col("first_dose"), reference),
        "last_dose_study_day": study_day(F.col("last_dose"), reference),
        "treatment_duration_days": (F.datediff("last_dose", "first_dose") + 1).cast("bigint"),
        "disposition": F.coalesce(F.col("disposition"), F.lit("ongoing")),
        "disposition_reason": F.col("disposition_reason"),
        "disposition_study_day": study_day(F.col("disposition_date"), reference),
    }
    ordered = [
        columns[c.name].cast(c.type.spark_sql).alias(c.name) for c in SUBJECT_PROFILE.columns
    ]
    return joined.select(*ordered)


def identifying_columns(df: DataFrame) -> list[str]:
    """Columns that must never reach a feature table, by name or type: identifiers (SDTM's and
    any name that says name, e-mail, phone, birth date, address...), dates and timestamps."""
    named = identifiers.by_name(df.columns)
    found = [
        f.name
        for f in df.schema.fields
        if f.name.upper() in IDENTIFYING_COLUMNS
        or f.name in named
        or isinstance(f.dataType, (T.DateType, T.TimestampType, T.TimestampNTZType))
        or f.name.upper().endswith(("DTC", "_DATE", "DTM"))
    ]
    return found
