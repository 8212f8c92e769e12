"""Clinical SDTM assets: raw_<domain>, curated_<domain> and features_subject_profile.

Each stage is one subsettable multi-asset, so materializing several domains of a delivery
starts one Spark application per stage, not one per domain; with a single-run backfill policy,
a backfill of several deliveries also starts one per stage, not one per delivery. Keys,
schemas, checks and dependencies come from the kernel (`spark_jobs.contracts.outputs`); the
Spark jobs do all the work, and these functions only say which job to run on which partitions.
"""

from collections.abc import Callable, Iterator, Sequence

import dagster as dg

from clinical_platform.clinical.checks import check_specs
from clinical_platform.clinical.landing import LANDING_KEY
from clinical_platform.lake import ClinicalLake, read_manifest
from clinical_platform.launchers.base import (
    DeliveryFailure,
    DeliveryResult,
    SparkJob,
    SparkLauncher,
    with_metadata,
)
from clinical_platform.launchers.batch import StepEvent, stage_results
from clinical_platform.launchers.bundle import code_version
from clinical_platform.lineage.dossier import write_dossier
from clinical_platform.partitions import CLINICAL_DELIVERIES, deliveries_of
from clinical_platform.pseudonymization import Pseudonymization
from spark_jobs.contracts.layout import Delivery, PartitionKeyError, Zone
from spark_jobs.contracts.outputs import (
    CURATED_OUTPUTS,
    FEATURE_OUTPUTS,
    RAW_OUTPUTS,
    DatasetOutput,
)
from spark_jobs.contracts.protocol import EntryPoint

OWNERS = ["team:clinical-data-engineering"]
KINDS = {"spark", "parquet"}


def column_schema(output: DatasetOutput) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(c.name, c.type, description=c.description or None)
            for c in output.columns
        ]
    )


def asset_spec(output: DatasetOutput) -> dg.AssetSpec:
    """The Dagster face of a declared output: key, group, schema, deps, owners, kinds."""
    tags = {"family": output.family, "zone": output.zone.value}
    if output.zone is not Zone.FEATURES:
        tags["domain"] = output.name.upper()
    return dg.AssetSpec(
        key=dg.AssetKey(output.asset_key),
        group_name=output.zone.value,
        description=output.description,
        # Raw starts at the delivered files: the landing source, versioned by its manifest.
        deps=[dg.AssetKey(key) for key in output.inputs]
        + ([LANDING_KEY] if output.zone is Zone.RAW else []),
        kinds=KINDS,
        owners=OWNERS,
        tags=tags,
        code_version=code_version(),
        partitions_def=CLINICAL_DELIVERIES,
        metadata={"dagster/column_schema": column_schema(output)},
        skippable=True,
    )


def selected_datasets(
    context: dg.AssetExecutionContext, outputs: Sequence[DatasetOutput]
) -> list[str]:
    """Datasets whose assets or checks this step was asked for, in contract order."""
    keys = set(context.selected_asset_keys) | {
        k.asset_key for k in context.selected_asset_check_keys
    }
    return [o.name for o in outputs if dg.AssetKey(o.asset_key) in keys]


def checks_only(context: dg.AssetExecutionContext) -> bool:
    return not context.selected_asset_keys and bool(context.selected_asset_check_keys)


Batched = DeliveryResult | DeliveryFailure  # what a job run on several deliveries reports
NO_DELIVERY = (
    "this run has no delivery: choose a partition (STUDY/DELIVERY) to materialize or check; "
    "nothing was run or evaluated"
)
# Dagster 1.13's "Execute checks" on a partitioned asset launches a run without a partition.
CHECKS_WITHOUT_DELIVERY = (
    "Execute checks was launched without a delivery (Dagster 1.13 cannot pass one from the "
    "Checks tab): nothing was evaluated and no result recorded. To re-check a delivery's "
    "committed data, launch the checks job `clinical_checks` from Jobs with its partition, or "
    "run `clinical-platform materialize --study S --delivery D --checks-only`"
)


def has_delivery(context: dg.AssetExecutionContext) -> bool:
    return context.has_partition_key or context.has_partition_key_range


def landed_deliveries_of(context: dg.AssetExecutionContext, lake: ClinicalLake) -> list[Delivery]:
    """The step's deliveries, refused in one line when a key is malformed (typed into the UI's
    "Add a partition"), the run has no partition, or a delivery was never landed."""
    if not has_delivery(context):
        raise dg.Failure(description=NO_DELIVERY, allow_retries=False)
    try:
        deliveries = deliveries_of(context)
    except PartitionKeyError as error:
        raise dg.Failure(description=f"not a delivery: {error}", allow_retries=False) from None
    missing = [d.key for d in deliveries if read_manifest(lake.layout, d) is None]
    if missing:
        raise dg.Failure(
            description=f"{', '.join(missing)}: never landed in {lake.layout.root} (no delivery "
            "manifest); land it with `clinical-platform land` or drop it into landing for the "
            "landing sensor",
            allow_retries=False,
        )
    return deliveries


def job_arguments(
    context: dg.AssetExecutionContext, lake: ClinicalLake, deliveries: Sequence[Delivery]
) -> list[str]:
    """What every job is told: the lake, the deliveries, the run, and whether to write."""
    if len(deliveries) == 1:
        named = ["--study", deliveries[0].study, "--delivery", deliveries[0].delivery]
    else:
        named = ["--deliveries", ",".join(d.key for d in deliveries)]
    arguments = ["--lake", lake.layout.root, *named, "--run-id", context.run.run_id]
    return [*arguments, "--checks-only"] if checks_only(context) else arguments


def run_stage(
    context: dg.AssetExecutionContext,
    spark: SparkLauncher,
    lake: ClinicalLake,
    job_of: Callable[[list[Delivery]], SparkJob],
) -> Iterator[StepEvent]:
    """Run the stage's job and report it; then refresh each delivery's audit dossier, which
    every materialization names, whether the step succeeded or not.

    Checks launched without a delivery evaluate nothing and say why: failing the step would
    mark every check of a healthy asset failed.
    """
    if checks_only(context) and not has_delivery(context):
        context.log.warning(CHECKS_WITHOUT_DELIVERY)
        return
    deliveries = landed_deliveries_of(context, lake)
    job = job_of(deliveries)
    dossiers = {d.key: lake.layout.dossier(d) for d in deliveries}
    run = spark.run(context, job)
    single = deliveries[0].key  # a one-delivery job's results name no partition
    run.results = [
        with_metadata(r, {"dossier": dossiers[r.partition if isinstance(r, Batched) else single]})
        for r in run.results
    ]
    try:
        yield from stage_results(context, run)
    finally:
        if not checks_only(context):
            for delivery in deliveries:
                try:
                    write_dossier(lake.layout, delivery)
                except Exception as error:  # noqa: BLE001 - a dossier never fails the data
                    context.log.warning(f"{delivery.key}: dossier not refreshed ({error})")


def domain_job(
    context: dg.AssetExecutionContext,
    lake: ClinicalLake,
    entry_point: EntryPoint,
    outputs: Sequence[DatasetOutput],
) -> Callable[[list[Delivery]], SparkJob]:
    """The ingest or curate job for this step's domains of its deliveries."""
    datasets = ",".join(selected_datasets(context, outputs))

    def job(deliveries: list[Delivery]) -> SparkJob:
        arguments = job_arguments(context, lake, deliveries)
        return SparkJob(entry_point, [*arguments, "--datasets", datasets])

    return job


@dg.multi_asset(
    name="clinical_raw",
    specs=[asset_spec(o) for o in RAW_OUTPUTS],
    check_specs=check_specs(RAW_OUTPUTS),
    can_subset=True,
    partitions_def=CLINICAL_DELIVERIES,
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def clinical_raw(
    context: dg.AssetExecutionContext, spark: SparkLauncher, lake: ClinicalLake
) -> Iterator[StepEvent]:
    """landing -> raw for the selected domains of the deliveries, in one Spark application."""
    yield from run_stage(
        context, spark, lake, domain_job(context, lake, EntryPoint.INGEST, RAW_OUTPUTS)
    )


@dg.multi_asset(
    name="clinical_curated",
    specs=[asset_spec(o) for o in CURATED_OUTPUTS],
    check_specs=check_specs(CURATED_OUTPUTS),
    can_subset=True,
    partitions_def=CLINICAL_DELIVERIES,
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def clinical_curated(
    context: dg.AssetExecutionContext, spark: SparkLauncher, lake: ClinicalLake
) -> Iterator[StepEvent]:
    """raw -> curated + quarantine with every contract rule, in one Spark application."""
    yield from run_stage(
        context, spark, lake, domain_job(context, lake, EntryPoint.CURATE, CURATED_OUTPUTS)
    )


@dg.multi_asset(
    name="clinical_features",
    specs=[asset_spec(o) for o in FEATURE_OUTPUTS],
    check_specs=check_specs(FEATURE_OUTPUTS),
    can_subset=True,
    partitions_def=CLINICAL_DELIVERIES,
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def clinical_features(
    context: dg.AssetExecutionContext,
    spark: SparkLauncher,
    lake: ClinicalLake,
    pseudonymization: Pseudonymization,
) -> Iterator[StepEvent]:
    """curated -> features_subject_profile, pseudonymised with the study's HMAC key."""

    def job(deliveries: list[Delivery]) -> SparkJob:
        arguments = [
            *job_arguments(context, lake, deliveries),
            "--key-env",
            pseudonymization.key_env_var,
        ]
        secrets: dict[str, str] = {}
        if not checks_only(context):
            secrets[pseudonymization.key_env_var] = pseudonymization.purpose()
        return SparkJob(EntryPoint.FEATURES, arguments, secrets)

    yield from run_stage(context, spark, lake, job)


CLINICAL_ASSETS = [clinical_raw, clinical_curated, clinical_features]
