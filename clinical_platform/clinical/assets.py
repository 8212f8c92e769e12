"""Clinical SDTM assets: raw_<domain>, curated_<domain> and features_subject_profile.

Each stage is one subsettable multi-asset, so materializing several domains of a delivery
starts one Spark application per stage, not one per domain. Keys, schemas, checks and
dependencies come from the kernel (`spark_jobs.contracts.outputs`); the Spark jobs do all the
work, and these functions only say which job to run on which partition.
"""

from collections.abc import Iterator, Sequence

import dagster as dg

from clinical_platform.clinical.checks import check_specs
from clinical_platform.lake import ClinicalLake
from clinical_platform.launchers.base import Result, SparkJob, SparkLauncher
from clinical_platform.launchers.bundle import code_version
from clinical_platform.partitions import CLINICAL_DELIVERIES, delivery_of
from clinical_platform.pseudonymization import Pseudonymization
from spark_jobs.contracts.layout import Zone
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
        deps=[dg.AssetKey(key) for key in output.inputs],
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


def job_arguments(context: dg.AssetExecutionContext, lake: ClinicalLake) -> list[str]:
    """What every job is told: the lake, the delivery, the run, and whether to write."""
    delivery = delivery_of(context)
    arguments = [
        "--lake",
        lake.layout.root,
        "--study",
        delivery.study,
        "--delivery",
        delivery.delivery,
        "--run-id",
        context.run.run_id,
    ]
    return [*arguments, "--checks-only"] if checks_only(context) else arguments


def domain_job(
    context: dg.AssetExecutionContext,
    lake: ClinicalLake,
    entry_point: EntryPoint,
    outputs: Sequence[DatasetOutput],
) -> SparkJob:
    """The ingest or curate job for this step's domains of one delivery."""
    datasets = ",".join(selected_datasets(context, outputs))
    return SparkJob(entry_point, [*job_arguments(context, lake), "--datasets", datasets])


@dg.multi_asset(
    name="clinical_raw",
    specs=[asset_spec(o) for o in RAW_OUTPUTS],
    check_specs=check_specs(RAW_OUTPUTS),
    can_subset=True,
    partitions_def=CLINICAL_DELIVERIES,
)
def clinical_raw(
    context: dg.AssetExecutionContext, spark: SparkLauncher, lake: ClinicalLake
) -> Iterator[Result]:
    """landing -> raw for the selected domains of one delivery, in one Spark application."""
    yield from spark.run(
        context, domain_job(context, lake, EntryPoint.INGEST, RAW_OUTPUTS)
    ).outputs()


@dg.multi_asset(
    name="clinical_curated",
    specs=[asset_spec(o) for o in CURATED_OUTPUTS],
    check_specs=check_specs(CURATED_OUTPUTS),
    can_subset=True,
    partitions_def=CLINICAL_DELIVERIES,
)
def clinical_curated(
    context: dg.AssetExecutionContext, spark: SparkLauncher, lake: ClinicalLake
) -> Iterator[Result]:
    """raw -> curated + quarantine with every contract rule, in one Spark application."""
    yield from spark.run(
        context, domain_job(context, lake, EntryPoint.CURATE, CURATED_OUTPUTS)
    ).outputs()


@dg.multi_asset(
    name="clinical_features",
    specs=[asset_spec(o) for o in FEATURE_OUTPUTS],
    check_specs=check_specs(FEATURE_OUTPUTS),
    can_subset=True,
    partitions_def=CLINICAL_DELIVERIES,
)
def clinical_features(
    context: dg.AssetExecutionContext,
    spark: SparkLauncher,
    lake: ClinicalLake,
    pseudonymization: Pseudonymization,
) -> Iterator[Result]:
    """curated -> features_subject_profile, pseudonymised with the study's HMAC key."""
    arguments = [*job_arguments(context, lake), "--key-env", pseudonymization.key_env_var]
    secrets: dict[str, str] = {}
    if not checks_only(context):
        secrets[pseudonymization.key_env_var] = pseudonymization.purpose()
    yield from spark.run(context, SparkJob(EntryPoint.FEATURES, arguments, secrets)).outputs()


CLINICAL_ASSETS = [clinical_raw, clinical_curated, clinical_features]
