"""curated -> features: de-identified, analysis-ready tables (one row per subject).

    spark-submit --py-files spark_jobs.zip features.py \
        --input <lake>/curated/clinical --output <lake>/features/clinical \
        --study <STUDY> --delivery <DELIVERY> [--run-id ID]

The pseudonym key is read from the environment variable named by --key-env (default
CLINICAL_PSEUDONYM_KEY), never from the command line, so it appears in no process listing,
EMR step or Spark event log.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pyspark.sql import Column as SparkColumn
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from spark_jobs.contracts import SUBJECT_PROFILE
from spark_jobs.contracts.features import IDENTIFYING_COLUMNS
from spark_jobs.contracts.layout import LINEAGE_NAME, Delivery, PartitionKeyError
from spark_jobs.runtime.reporting import JobReporter, json_value, path_value, table_schema_value
from spark_jobs.runtime.session import JobError, build_session, run_job
from spark_jobs.storage.filesystem import LakeStorage
from spark_jobs.storage.partitions import PartitionWriter, lineage_record, write_observed

DEFAULT_KEY_ENV = "CLINICAL_PSEUDONYM_KEY"
AGE_CAP = 90  # HIPAA Safe Harbor: ages over 89 are reported as one category
VITALS = {"SYSBP": "sysbp", "DIABP": "diabp", "PULSE": "pulse"}
ABNORMAL_INDICATORS = ("LOW", "HIGH", "ABNORMAL", "LOW LOW", "HIGH HIGH")
ASSET_KEY = f"features_{SUBJECT_PROFILE.name}"


@dataclass(frozen=True)
class FeatureArgs:
    input: str
    output: str
    delivery: Delivery
    run_id: str
    key_env: str
    checks_only: bool = False


def parse_args(argv: Sequence[str] | None = None) -> FeatureArgs:
    parser = argparse.ArgumentParser(
        prog="features.py", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--input", required=True, help="curated zone root of the family")
    parser.add_argument("--output", required=True, help="features zone root")
    parser.add_argument("--study", required=True)
    parser.add_argument("--delivery", required=True)
    parser.add_argument("--run-id", default=None)
    parser.add_argument(
        "--key-env", default=DEFAULT_KEY_ENV, help="environment variable holding the pseudonym key"
    )
    parser.add_argument(
        "--checks-only", action="store_true", help="re-check the committed partition; write nothing"
    )
    ns = parser.parse_args(argv)
    try:
        delivery = Delivery(ns.study, ns.delivery)
    except PartitionKeyError as error:
        parser.error(str(error))
    return FeatureArgs(
        ns.input.rstrip("/"),
        ns.output.rstrip("/"),
        delivery,
        ns.run_id or uuid.uuid4().hex,
        ns.key_env,
        ns.checks_only,
    )


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
    tests = list(VITALS)
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
            for code, name in VITALS.items()
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
    events = ds.where(F.col("DSCAT") == "DISPOSITION EVENT")
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
            for name in VITALS.values()
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
    """Columns that must never reach a feature table: identifiers, dates and timestamps."""
    found = [
        f.name
        for f in df.schema.fields
        if f.name.upper() in IDENTIFYING_COLUMNS
        or isinstance(f.dataType, (T.DateType, T.TimestampType, T.TimestampNTZType))
        or f.name.upper().endswith(("DTC", "_DATE", "DTM"))
    ]
    return found


def read_curated(
    spark: SparkSession, storage: LakeStorage, args: FeatureArgs, name: str
) -> tuple[DataFrame, dict[str, Any]]:
    uri = f"{args.input}/{name}/{args.delivery.hive_path}"
    lineage_uri = f"{uri}/{LINEAGE_NAME}"
    if not storage.exists(lineage_uri):
        raise JobError(
            f"{ASSET_KEY} {args.delivery.key}: curated_{name} has no committed "
            "partition; materialize it first (or see why its checks failed)"
        )
    lineage = storage.read_json(lineage_uri)
    return spark.read.parquet(uri), {
        "asset": f"curated_{name}",
        "partition": args.delivery.key,
        "uri": uri,
        "content_hash": lineage.get("content_hash"),
        "run_id": lineage.get("run_id"),
        "rows": lineage.get("rows", {}).get("out"),
    }


def recheck(args: FeatureArgs, reporter: JobReporter) -> None:
    """Checks of the committed partition, re-evaluated without writing anything."""
    spark = build_session(f"clinical-features-checks-{args.delivery.key}")
    storage = LakeStorage(spark)
    uri = f"{args.output}/{SUBJECT_PROFILE.name}/{args.delivery.hive_path}"
    if not storage.exists(f"{uri}/{LINEAGE_NAME}"):
        raise JobError(f"{ASSET_KEY} {args.delivery.key}: no committed partition to check")
    stored = spark.read.parquet(uri)
    _, dm = read_curated(spark, storage, args, "dm")
    rows = stored.count()
    distinct = stored.select("subject_pseudonym").distinct().count()
    leaked = identifying_columns(stored)
    dm_rows = int(dm["rows"] or 0)
    _report_checks(
        reporter,
        [
            {
                "check": "no_identifiers",
                "passed": not leaked,
                "metadata": {"identifying_columns": leaked},
            },
            {
                "check": "one_row_per_subject",
                "passed": rows == dm_rows == distinct,
                "metadata": {"rows": rows, "dm_subjects": dm_rows, "distinct_pseudonyms": distinct},
            },
        ],
    )


# Same suffix as clinical_platform.launchers.aws.SECRET_ID_SUFFIX (no Dagster imports here).
SECRET_ID_SUFFIX = "_SECRET_ID"


def pseudonym_key(key_env: str) -> str:
    """The key from `key_env`, else from the Secrets Manager secret `<key_env>_SECRET_ID` names.

    On EMR the launcher passes only the secret's id, so the key is in no step, Spark conf or S3
    object; boto3 is imported only then. Empty when neither is set.
    """
    key = os.environ.get(key_env, "")
    secret_id = os.environ.get(f"{key_env}{SECRET_ID_SUFFIX}", "")
    if key or not secret_id:
        return key
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        answer = boto3.client("secretsmanager").get_secret_value(SecretId=secret_id)
    except (BotoCoreError, ClientError) as error:
        raise JobError(
            f"{ASSET_KEY}: cannot read the pseudonym key from Secrets Manager secret "
            f"{secret_id} ({type(error).__name__}: {error})"
        ) from None
    return str(answer.get("SecretString") or "")


def featurize(args: FeatureArgs, reporter: JobReporter) -> None:
    if args.checks_only:
        recheck(args, reporter)
        return
    key = pseudonym_key(args.key_env)
    if not key:
        raise JobError(
            f"{ASSET_KEY}: environment variable {args.key_env} with the pseudonym "
            "key is not set; features are never written without pseudonymisation"
        )
    spark = build_session(f"clinical-features-{args.delivery.key}")
    storage = LakeStorage(spark)
    writer = PartitionWriter(storage, args.run_id)
    curated: dict[str, DataFrame] = {}
    inputs: list[dict[str, Any]] = []
    for name in SUBJECT_PROFILE.upstream:
        frame, reference = read_curated(spark, storage, args, name)
        curated[name] = frame
        inputs.append(reference)

    profile = subject_profile(curated, pseudonymizer(key.encode("utf-8")))
    profile = profile.withColumn("_featurized_run_id", F.lit(args.run_id))
    leaked = identifying_columns(profile)
    if leaked:
        reporter.error(
            f"{ASSET_KEY} {args.delivery.key}: would publish identifying columns "
            f"{leaked}; nothing written"
        )
        _report_checks(
            reporter,
            [
                {
                    "check": "no_identifiers",
                    "passed": False,
                    "metadata": {"identifying_columns": leaked},
                }
            ],
        )
        return

    dataset_uri = f"{args.output}/{SUBJECT_PROFILE.name}"
    staging = writer.staging_uri(dataset_uri, args.delivery)
    written = write_observed(
        profile,
        staging,
        ASSET_KEY,
        extra_metrics=[
            F.sum(F.when(F.col("subject_pseudonym").isNull(), 1).otherwise(0)).alias(
                "no_pseudonym"
            ),
        ],
    )
    dm_rows = int(inputs[0]["rows"] or 0)
    # One row per subject: the staged table is small, so reading it back costs little.
    distinct = spark.read.parquet(staging).select("subject_pseudonym").distinct().count()
    one_row_each = (
        written.rows == dm_rows == distinct and int(written.extra["no_pseudonym"] or 0) == 0
    )
    checks = [
        {"check": "no_identifiers", "passed": True, "metadata": {"identifying_columns": []}},
        {
            "check": "one_row_per_subject",
            "passed": one_row_each,
            "metadata": {
                "rows": written.rows,
                "dm_subjects": dm_rows,
                "distinct_pseudonyms": distinct,
            },
        },
    ]
    if not one_row_each:
        writer.discard(staging)
        reporter.error(
            f"{ASSET_KEY} {args.delivery.key}: {written.rows} rows for {dm_rows} DM "
            f"subjects ({distinct} distinct pseudonyms); nothing committed"
        )
        _report_checks(reporter, checks)
        return
    schema = [
        (
            f.name,
            f.dataType.simpleString(),
            next((c.label for c in SUBJECT_PROFILE.columns if c.name == f.name), None),
        )
        for f in profile.schema.fields
    ]
    application_id = spark.sparkContext.applicationId
    final = writer.commit(
        dataset_uri,
        args.delivery,
        staging,
        lineage_record(
            dataset=ASSET_KEY,
            zone="features",
            delivery=args.delivery,
            run_id=args.run_id,
            application_id=application_id,
            status="accepted",
            inputs=inputs,
            rows={"in": dm_rows, "out": written.rows},
            content_hash=written.content_hash,
            checks=checks,
            schema=[{"name": n, "type": t} for n, t, _ in schema],
        ),
    )
    reporter.info(f"{ASSET_KEY} {args.delivery.key}: {written.rows} subjects -> {final}")
    reporter.materialization(
        ASSET_KEY,
        {
            "status": "accepted",
            "dagster/row_count": written.rows,
            "rows_in": dm_rows,
            "rows_out": written.rows,
            "content_hash": written.content_hash,
            "inputs": json_value(inputs),
            "path": path_value(final),
            "dagster/column_schema": table_schema_value(schema),
            "spark_application_id": application_id,
        },
        data_version=written.content_hash,
    )
    _report_checks(reporter, checks)


def _report_checks(reporter: JobReporter, checks: Sequence[dict[str, Any]]) -> None:
    for check in checks:
        metadata = {
            k: json_value(v) if isinstance(v, (list, dict)) else v
            for k, v in check["metadata"].items()
        }
        reporter.check(
            ASSET_KEY,
            check["check"],
            check["passed"],
            blocking_severity=not check["passed"],
            metadata=metadata,
        )


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    run_job("features", lambda reporter: featurize(args, reporter))


if __name__ == "__main__":
    main()
