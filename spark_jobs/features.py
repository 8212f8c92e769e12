"""curated -> features: de-identified, analysis-ready tables (one row per subject).

    spark-submit --py-files spark_jobs.zip features.py \
        --lake <lake root> (--study <STUDY> --delivery <DELIVERY> | --deliveries S/D1,S/D2,...) \
        [--run-id ID] [--key-env NAME]

The pseudonym key is read from the environment variable named by --key-env (default
CLINICAL_PSEUDONYM_KEY), never from the command line, so it appears in no process listing,
EMR step or Spark event log. Steps: read the curated inputs, build the subject profile
(`subject_profile.py`), refuse identifying columns, write, check one row per subject, commit,
report. Several deliveries are featurized one after the other in one application; one whose
inputs were refused fails alone.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from spark_jobs.contracts import FEATURE_CONTRACTS, SUBJECT_PROFILE
from spark_jobs.contracts.features import FeatureCheck
from spark_jobs.contracts.layout import Delivery, Zone, delivery_order
from spark_jobs.contracts.omics import OMICS_FAMILY, OMICS_TOP_GENES, TOP_GENES
from spark_jobs.contracts.outputs import FEATURIZED_RUN_ID, DatasetOutput, output
from spark_jobs.contracts.protocol import PSEUDONYM_KEY_ENV, SECRET_ID_SUFFIX, EntryPoint
from spark_jobs.contracts.sensor import SENSOR_DAILY, SENSOR_FAMILY
from spark_jobs.contracts.tables import PARTITION_COLUMNS
from spark_jobs.families import omics, sensor
from spark_jobs.quality import identifiers
from spark_jobs.runtime.arguments import DeliveryArgs, delivery_batch, delivery_parser
from spark_jobs.runtime.reporting import (
    CheckOutcome,
    JobReporter,
    column_lineage_value,
    json_value,
    table_metadata,
    table_schema_value,
)
from spark_jobs.runtime.session import (
    JobError,
    application_name,
    build_session,
    for_each_delivery,
    run_job,
)
from spark_jobs.storage.current import holder
from spark_jobs.storage.lineage import input_reference, lineage_record
from spark_jobs.storage.tables import Committed, LakeTables, Staged
from spark_jobs.subject_profile import identifying_columns, pseudonymizer, subject_profile

PROFILE = output(Zone.FEATURES, SUBJECT_PROFILE.name)
SENSOR_DAILY_OUTPUT = output(Zone.FEATURES, SENSOR_DAILY.name)
TOP_GENES_OUTPUT = output(Zone.FEATURES, OMICS_TOP_GENES.name)
PSEUDONYM = "subject_pseudonym"


@dataclass(frozen=True)
class FeatureArgs:
    job: DeliveryArgs  # the delivery being featurized
    key_env: str
    batch: tuple[DeliveryArgs, ...] = ()  # every delivery of the application, when several


def parse_args(argv: Sequence[str] | None = None) -> FeatureArgs:
    parser = delivery_parser("features.py", __doc__)
    parser.add_argument(
        "--key-env",
        default=PSEUDONYM_KEY_ENV,
        help="environment variable holding the pseudonym key",
    )
    ns = parser.parse_args(argv)
    batch = delivery_batch(parser, ns)
    return FeatureArgs(batch[0], ns.key_env, batch)


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
            f"{PROFILE.asset_key}: cannot read the pseudonym key from Secrets Manager secret "
            f"{secret_id} ({type(error).__name__}: {error})"
        ) from None
    return str(answer.get("SecretString") or "")


# ---- pure steps ---------------------------------------------------------------------------


def no_identifiers(
    leaked: Sequence[str], by_value: Mapping[str, str] | None = None
) -> CheckOutcome:
    """No identifying column by name or type (`leaked`), and none whose values identify
    someone (`by_value`: column -> kind; None when the values were not looked at)."""
    found = dict(by_value or {})
    metadata: dict[str, Any] = {"identifying_columns": sorted({*leaked, *found})}
    if by_value is not None:
        metadata["identifying_values"] = found
    return _check(FeatureCheck.NO_IDENTIFIERS, not leaked and not found, **metadata)


def subject_ids(dm: DataFrame) -> DataFrame:
    """The study's USUBJID and SUBJID values (one column `id`): no feature value may be one."""
    present = [c for c in identifiers.SUBJECT_COLUMNS if c in dm.columns]
    frames = [dm.select(F.col(c).cast("string").alias("id")) for c in present]
    ids = frames[0]
    for frame in frames[1:]:
        ids = ids.unionByName(frame)
    return ids.where(F.col("id").isNotNull())


def text_columns(feature: DatasetOutput) -> list[str]:
    """The feature table's declared text columns, whose values the PHI check reads (not the
    partition columns: a delivery key is a date by design)."""
    return [
        c.name
        for c in feature.columns
        if c.type == "string" and not c.name.startswith("_") and c.name not in PARTITION_COLUMNS
    ]


@dataclass(frozen=True)
class Grain:
    """What "one row per ..." means for a feature table: the columns that must be distinct,
    what the expected count counts, and the check's metadata names."""

    check: FeatureCheck
    columns: tuple[str, ...]
    unit: str  # what the expected rows stand for, in the refusal's words
    expected_name: str  # metadata key of the expected count
    distinct_name: str  # metadata key of the distinct grain values

    def unnamed(self) -> Column:
        """A row without its subject pseudonym or a value of the grain."""
        columns = dict.fromkeys((PSEUDONYM, *self.columns))
        return functools.reduce(lambda a, b: a | b, (F.col(c).isNull() for c in columns))

    def of_rows(
        self, rows: DataFrame, count: int, expected: int, missing: int
    ) -> tuple[CheckOutcome, str]:
        """The check on written rows (`count` of them, `missing` of them `unnamed`): as many
        as expected, each grain value once, none unnamed; and what to say when it fails."""
        distinct = rows.select(*self.columns).distinct().count()
        outcome = _check(
            self.check,
            count == expected == distinct and missing == 0,
            rows=count,
            **{self.expected_name: expected, self.distinct_name: distinct},
        )
        return outcome, f"{count} rows for {expected} {self.unit} ({distinct} distinct)"


# One row per DM subject, per subject and day of wear, per passing sample and top gene.
PROFILE_GRAIN = Grain(
    FeatureCheck.ONE_ROW_PER_SUBJECT,
    columns=(PSEUDONYM,),
    unit="DM subjects",
    expected_name="dm_subjects",
    distinct_name="distinct_pseudonyms",
)
SENSOR_DAILY_GRAIN = Grain(
    FeatureCheck.ONE_ROW_PER_SUBJECT_DAY,
    columns=(PSEUDONYM, "wear_day"),
    unit="subject-days",
    expected_name="subject_days",
    distinct_name="distinct_subject_days",
)
TOP_GENES_GRAIN = Grain(
    FeatureCheck.ONE_ROW_PER_SAMPLE_GENE,
    columns=("sample_pseudonym", "gene_id"),
    unit="sample-genes",
    expected_name="expected_rows",
    distinct_name="distinct_sample_genes",
)


def _check(name: FeatureCheck, passed: bool, **metadata: Any) -> CheckOutcome:
    contracts = (*FEATURE_CONTRACTS, SENSOR_DAILY, OMICS_TOP_GENES)
    rule = next(r for c in contracts for r in c.rules if r.name == name)
    return CheckOutcome(name.value, passed, True, metadata, effect=rule.effect.value)


# ---- reading the curated inputs -----------------------------------------------------------


def read_curated(
    tables: LakeTables, job: DeliveryArgs, name: str
) -> tuple[DataFrame, dict[str, Any]]:
    """The study's current curated data of `name` as of this delivery, and the lineage
    reference to the partition read (this delivery's, or the latest earlier one that carried
    the dataset)."""
    curated = output(Zone.CURATED, name)
    key = job.delivery.key
    found = holder(tables, name, job.delivery)
    if found is None:
        raise JobError(
            f"{PROFILE.asset_key} {key}: no delivery of {job.delivery.study} up to {key} "
            f"carried {name.upper()}"
        )
    if found.rejected:
        raise JobError(
            f"{PROFILE.asset_key} {key}: skipped: {name.upper()} of {found.delivery.key} was "
            f"{found.raw_record['status']} ({found.reason}); a domain delivered broken is never "
            "replaced by an older copy"
        )
    lineage = tables.committed_record(curated, found.delivery)
    if lineage is None:
        raise JobError(
            f"{PROFILE.asset_key} {key}: {curated.asset_key} has no committed partition for "
            f"{found.delivery.key}; materialize it first (or see why its checks failed)"
        )
    reference = {**input_reference(curated, found.delivery.key, lineage)}
    reference["rows"] = lineage.get("rows", {}).get("out")
    return tables.read(curated, found.delivery), reference


def read_inputs(
    tables: LakeTables, job: DeliveryArgs
) -> tuple[dict[str, DataFrame], list[dict[str, Any]]]:
    """Every curated dataset the profile reads, and their lineage references."""
    frames: dict[str, DataFrame] = {}
    inputs: list[dict[str, Any]] = []
    for name in SUBJECT_PROFILE.upstream:
        frames[name], reference = read_curated(tables, job, name)
        inputs.append(reference)
    return frames, inputs


# ---- the job ------------------------------------------------------------------------------


def feature_of(family: str) -> DatasetOutput:
    """The feature table a family's features job writes."""
    return {SENSOR_FAMILY: SENSOR_DAILY_OUTPUT, OMICS_FAMILY: TOP_GENES_OUTPUT}.get(family, PROFILE)


def recheck(tables: LakeTables, job: DeliveryArgs, reporter: JobReporter) -> None:
    """Checks of the committed partition, re-evaluated without writing anything: the same
    grain and identifier facts as the build's, from the same inputs."""
    feature = feature_of(job.layout.family)
    if tables.committed_record(feature, job.delivery) is None:
        raise JobError(f"{feature.asset_key} {job.delivery.key}: no committed partition to check")
    if job.layout.family == SENSOR_FAMILY:
        grain, expected, ids = sensor_daily_facts(
            tables.read(output(Zone.CURATED, SENSOR_DAILY.upstream[0]), job.delivery)
        )
    elif job.layout.family == OMICS_FAMILY:
        counts, _ = this_delivery(tables, job, feature, "counts")
        samples, _ = this_delivery(tables, job, feature, "samples")
        chosen = omics.chosen_genes(counts, TOP_GENES)
        grain, expected, ids = top_genes_facts(counts, samples, chosen)
    else:
        dm_frame, dm = read_curated(tables, job, "dm")
        grain, expected, ids = PROFILE_GRAIN, int(dm["rows"] or 0), subject_ids(dm_frame)
    stored = tables.read(feature, job.delivery)
    by_value = identifiers.identifying_values(stored, text_columns(feature), ids)
    missing = stored.where(grain.unnamed()).count()
    outcomes = [
        no_identifiers(identifying_columns(stored.drop(*PARTITION_COLUMNS)), by_value),
        grain.of_rows(stored, stored.count(), expected, missing)[0],
    ]
    reporter.checks(feature.asset_key, outcomes)


def featurize(args: FeatureArgs, reporter: JobReporter) -> None:
    """Every delivery of the run, one after the other, in one Spark application."""
    batch, job = args.batch or (args.job,), args.job
    if job.checks_only:
        spark = build_session(application_name("features-checks", batch), job.layout.root)
        tables = LakeTables(spark, job.layout, job.run_id)
        for_each_delivery(batch, reporter, lambda each: recheck(tables, each, reporter))
        return
    key = pseudonym_key(args.key_env)
    if not key:
        raise JobError(
            f"{feature_of(job.layout.family).asset_key}: environment variable {args.key_env} "
            "with the pseudonym "
            "key is not set; features are never written without pseudonymisation"
        )
    spark = build_session(application_name(EntryPoint.FEATURES, batch), job.layout.root)
    tables = LakeTables(spark, job.layout, job.run_id)
    for_each_delivery(
        batch, reporter, lambda each: featurize_delivery(spark, tables, each, key, reporter)
    )


@dataclass(frozen=True)
class FeatureBuild:
    """A feature table's rows for one delivery, before they are staged, and what proves them.

    The staged partition must hold `expected` rows, one per value of `grain`.
    """

    feature: DatasetOutput
    rows: DataFrame
    inputs: list[dict[str, Any]]
    ids: DataFrame  # identifier values no feature value may equal
    rows_in: int
    grain: Grain
    expected: int


def featurize_delivery(
    spark: SparkSession, tables: LakeTables, job: DeliveryArgs, key: str, reporter: JobReporter
) -> None:
    """The family's feature table of one delivery, from the study's curated data."""
    pseudonym = pseudonymizer(key.encode("utf-8"))
    if job.layout.family == SENSOR_FAMILY:
        build = sensor_daily_build(spark, tables, job, pseudonym)
    elif job.layout.family == OMICS_FAMILY:
        build = top_genes_build(tables, job, pseudonym)
    else:
        build = profile_build(tables, job, pseudonym)
    leaked = identifying_columns(build.rows)
    if leaked:
        reporter.error(
            f"{build.feature.asset_key} {job.delivery.key}: would publish identifying columns "
            f"{leaked}; nothing written"
        )
        reporter.checks(build.feature.asset_key, [no_identifiers(leaked)])
        return
    study, delivery = PARTITION_COLUMNS
    rows = build.rows.select(
        "*",
        F.lit(job.run_id).alias(FEATURIZED_RUN_ID),
        F.lit(job.delivery.study).alias(study),
        F.lit(job.delivery.delivery).alias(delivery),
    )
    write_feature(spark, tables, job, reporter, replace(build, rows=rows))


def profile_build(tables: LakeTables, job: DeliveryArgs, pseudonym: Any) -> FeatureBuild:
    """The subject profile from the study's current curated SDTM: one row per DM subject."""
    frames, inputs = read_inputs(tables, job)
    dm_rows = int(inputs[0]["rows"] or 0)
    rows = subject_profile(frames, pseudonym)
    ids = subject_ids(frames["dm"])
    return FeatureBuild(PROFILE, rows, inputs, ids, dm_rows, PROFILE_GRAIN, dm_rows)


def sensor_daily_build(
    spark: SparkSession, tables: LakeTables, job: DeliveryArgs, pseudonym: Any
) -> FeatureBuild:
    """Per subject-day, the days this delivery's minutes touch, each computed over the minutes
    of every committed delivery of the study up to this one (a day two upload batches share
    is whole in the later one's partition)."""
    minutes_table = output(Zone.CURATED, SENSOR_DAILY.upstream[0])
    current = delivery_order(job.delivery.delivery)
    records = [
        r
        for r in tables.records(minutes_table, job.delivery.study)
        if delivery_order(Delivery.from_key(r["partition"]).delivery) <= current
    ]
    if not any(r["partition"] == job.delivery.key for r in records):
        raise JobError(
            f"{SENSOR_DAILY_OUTPUT.asset_key} {job.delivery.key}: {minutes_table.asset_key} has "
            f"no committed partition for {job.delivery.key}; materialize it first (or see why "
            "its checks failed)"
        )
    frames = [tables.read(minutes_table, Delivery.from_key(r["partition"])) for r in records]
    everything = functools.reduce(DataFrame.unionByName, frames)
    own = tables.read(minutes_table, job.delivery)
    days = sensor.daily_features(everything, own, pseudonym)
    inputs = [
        {**input_reference(minutes_table, r["partition"], r), "rows": r.get("rows", {}).get("out")}
        for r in records
    ]
    grain, touched, ids = sensor_daily_facts(own)
    rows_in = int(next(r for r in records if r["partition"] == job.delivery.key)["rows"]["out"])
    return FeatureBuild(SENSOR_DAILY_OUTPUT, days, inputs, ids, rows_in, grain, touched)


def sensor_daily_facts(own: DataFrame) -> tuple[Grain, int, DataFrame]:
    """From the delivery's own minutes: the subject-days it touches (one feature row each),
    and the subject ids no feature value may equal."""
    touched = own.select("USUBJID", F.to_date(sensor.MINUTE).alias(sensor.DAY)).distinct().count()
    return SENSOR_DAILY_GRAIN, touched, own.select(F.col("USUBJID").alias("id")).distinct()


def this_delivery(
    tables: LakeTables, job: DeliveryArgs, feature: DatasetOutput, name: str
) -> tuple[DataFrame, dict[str, Any]]:
    """A curated dataset's partition of this very delivery, and its lineage reference."""
    curated = output(Zone.CURATED, name)
    record = tables.committed_record(curated, job.delivery)
    if record is None:
        raise JobError(
            f"{feature.asset_key} {job.delivery.key}: {curated.asset_key} has no committed "
            f"partition for {job.delivery.key}; materialize it first (or see why its checks "
            "failed)"
        )
    reference = {**input_reference(curated, job.delivery.key, record)}
    reference["rows"] = record.get("rows", {}).get("out")
    return tables.read(curated, job.delivery), reference


def top_genes_facts(
    counts: DataFrame, samples: DataFrame, chosen: DataFrame
) -> tuple[Grain, int, DataFrame]:
    """The counts of the passing samples on the top genes: one feature row each (a sample
    without a row for a gene, as exports that leave out zero counts have, has no feature row
    for it); and the subject ids no feature value may equal."""
    genes = F.broadcast(chosen.select("GENE_ID"))
    expected = counts.where("PASSES_QC").join(genes, "GENE_ID").count()
    ids = samples.select(F.col("USUBJID").alias("id")).where(F.col("id").isNotNull())
    return TOP_GENES_GRAIN, expected, ids


def top_genes_build(tables: LakeTables, job: DeliveryArgs, pseudonym: Any) -> FeatureBuild:
    """Per sample of the batch that passed QC, the log-CPM of the batch's top-variance genes."""
    feature = TOP_GENES_OUTPUT
    counts, counts_ref = this_delivery(tables, job, feature, "counts")
    samples, samples_ref = this_delivery(tables, job, feature, "samples")
    chosen = omics.chosen_genes(counts, TOP_GENES)
    rows = omics.top_gene_features(counts, samples, pseudonym, chosen)
    grain, expected, ids = top_genes_facts(counts, samples, chosen)
    rows_in = int(counts_ref["rows"] or 0)
    return FeatureBuild(feature, rows, [counts_ref, samples_ref], ids, rows_in, grain, expected)


def write_feature(
    spark: SparkSession,
    tables: LakeTables,
    job: DeliveryArgs,
    reporter: JobReporter,
    build: FeatureBuild,
) -> None:
    """Stage, prove no identifying value and one row per grain, then publish, record and
    report; a failing check discards the staged rows."""
    feature = build.feature
    tables.ensure(feature)
    unnamed = F.sum(F.when(build.grain.unnamed(), 1).otherwise(0))
    staged = tables.stage(
        build.rows, feature, job.delivery, extra_metrics=[unnamed.alias("unnamed")]
    )
    # The staged partition is small, so reading it back costs little.
    written = spark.read.option("branch", staged.branch).table(staged.table)
    written = written.where(partition_of(job))
    by_value = identifiers.identifying_values(written, text_columns(feature), build.ids)
    missing = int(staged.extra["unnamed"] or 0)
    grain, wrong_grain = build.grain.of_rows(written, staged.rows, build.expected, missing)
    outcomes = [no_identifiers([], by_value), grain]
    refused = []
    if by_value:
        kinds = ", ".join(f"{name} ({kind})" for name, kind in by_value.items())
        refused.append(f"values that identify someone in {kinds}")
    if not grain.passed:
        refused.append(wrong_grain)
    if refused:
        tables.discard(staged)
        reporter.error(
            f"{feature.asset_key} {job.delivery.key}: {'; '.join(refused)}; nothing committed"
        )
        reporter.checks(feature.asset_key, outcomes)
        return
    snapshot = tables.publish(staged)
    lineage = lineage_record(
        output=feature,
        delivery=job.delivery,
        run_id=job.run_id,
        application_id=spark.sparkContext.applicationId,
        status="accepted",
        snapshot_id=snapshot,
        inputs=build.inputs,
        rows={"in": build.rows_in, "out": staged.rows},
        content_hash=staged.content_hash,
        data_hash=staged.data_hash,
        checks=[o.as_record() for o in outcomes],
        schema=[{"name": n, "type": t} for n, t, _ in declared_schema(feature)],
    )
    tables.record(Committed(feature, job.delivery, snapshot, lineage))
    report_feature(spark, reporter, job, build, staged, snapshot, outcomes)


def partition_of(job: DeliveryArgs) -> Any:
    study, delivery = PARTITION_COLUMNS
    return (F.col(study) == job.delivery.study) & (F.col(delivery) == job.delivery.delivery)


def declared_schema(feature: DatasetOutput) -> list[tuple[str, str, str | None]]:
    return [(c.name, c.type, c.description or None) for c in feature.columns]


def report_feature(
    spark: SparkSession,
    reporter: JobReporter,
    job: DeliveryArgs,
    build: FeatureBuild,
    staged: Staged,
    snapshot: int,
    outcomes: Sequence[CheckOutcome],
) -> None:
    feature = build.feature
    reporter.info(
        f"{feature.asset_key} {job.delivery.key}: {staged.rows} "
        f"{'subjects' if feature is PROFILE else 'rows'} -> {feature.table} "
        f"snapshot {snapshot}"
    )
    reporter.materialization(
        feature.asset_key,
        {
            "status": "accepted",
            "dagster/row_count": staged.rows,
            "rows_in": build.rows_in,
            "rows_out": staged.rows,
            "content_hash": staged.content_hash,
            "data_hash": staged.data_hash,
            "inputs": json_value(build.inputs),
            **table_metadata(feature, job, snapshot),
            "dagster/column_schema": table_schema_value(declared_schema(feature)),
            "dagster/column_lineage": column_lineage_value(feature),
            "spark_application_id": spark.sparkContext.applicationId,
        },
        data_version=staged.content_hash,
    )
    reporter.checks(feature.asset_key, outcomes)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    run_job(EntryPoint.FEATURES, lambda reporter: featurize(args, reporter))


if __name__ == "__main__":
    main()
