"""Clinical SDTM assets: raw_<domain>, curated_<domain> and features_subject_profile.

Each stage is one subsettable multi-asset, so materializing several domains of a delivery
starts one Spark application per stage, not one per domain. The Spark jobs do all the work;
these functions only say which job to run on which partition and hand back what it reported.
"""

from collections.abc import Iterator

import dagster as dg

from clinical_platform.clinical.checks import (
    FEATURES_KEY,
    curated_asset_key,
    curated_check_specs,
    feature_check_specs,
    raw_asset_key,
    raw_check_specs,
)
from clinical_platform.lake import ClinicalLake
from clinical_platform.launchers.base import Result, SparkJob, SparkLauncher
from clinical_platform.launchers.bundle import code_version
from clinical_platform.partitions import CLINICAL_DELIVERIES, delivery_of
from clinical_platform.pseudonymization import Pseudonymization
from spark_jobs.contracts import SDTM_CONTRACTS, SUBJECT_PROFILE, DatasetContract
from spark_jobs.contracts.model import Column

OWNERS = ["team:clinical-data-engineering"]
KINDS = {"spark", "parquet"}
PROVENANCE = (
    ("_source_uri", "string", "Landing file the row came from"),
    ("_source_row", "bigint", "Row number inside that file (1-based)"),
    ("_source_sha256", "string", "sha256 of that file"),
    ("_delivery", "string", "Partition key STUDY/DELIVERY"),
    ("_ingested_run_id", "string", "Dagster run that ingested the row"),
)


def _schema(
    columns: tuple[Column, ...], extra: tuple[tuple[str, str, str], ...] = ()
) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            *[
                dg.TableColumn(c.name, c.type.spark_sql, description=c.label or None)
                for c in columns
            ],
            *[
                dg.TableColumn(name, type_, description=description)
                for name, type_, description in extra
            ],
        ]
    )


def _spec(
    key: dg.AssetKey,
    zone: str,
    description: str,
    schema: dg.TableSchema,
    deps: list[dg.AssetKey],
    domain: str | None = None,
) -> dg.AssetSpec:
    tags = {"family": "clinical", "zone": zone}
    if domain:
        tags["domain"] = domain
    return dg.AssetSpec(
        key=key,
        group_name=zone,
        description=description,
        deps=deps,
        kinds=KINDS,
        owners=OWNERS,
        tags=tags,
        code_version=code_version(),
        partitions_def=CLINICAL_DELIVERIES,
        metadata={"dagster/column_schema": schema},
        skippable=True,
    )


def raw_spec(contract: DatasetContract) -> dg.AssetSpec:
    return _spec(
        raw_asset_key(contract),
        "raw",
        f"{contract.title} ({contract.domain}) exactly as delivered: every column of every "
        f"{'/'.join(contract.file_stems)}* file, typed as in the file, plus provenance "
        "(source file, row number, sha256). Nothing is dropped here.",
        _schema(contract.columns, PROVENANCE),
        [],
        contract.domain,
    )


def curated_spec(contract: DatasetContract) -> dg.AssetSpec:
    deps = [raw_asset_key(contract)]
    if contract.references_dm:
        deps.append(dg.AssetKey("raw_dm"))
    derived: list[tuple[str, str, str]] = []
    for name in contract.datetime_columns:
        derived += [
            (f"{name}_DATE", "date", f"{name} as a date when the day is known"),
            (f"{name}_PRECISION", "string", f"Precision of {name} (year ... second)"),
        ]
    derived += [
        ("_flags", "array<string>", "Warn/flag rules the row breaks"),
        ("_duplicates_collapsed", "int", "Exact duplicates collapsed into this row"),
    ]
    return _spec(
        curated_asset_key(contract),
        "curated",
        f"{contract.title} ({contract.domain}), conformed to its contract: {contract.description}"
        f" Natural key {', '.join(contract.natural_key)}; rows breaking a quarantining rule "
        "are in quarantine/ with their reasons.",
        _schema(contract.columns, (*derived, *PROVENANCE)),
        deps,
        contract.domain,
    )


def selected_datasets(context: dg.AssetExecutionContext, prefix: str) -> list[str]:
    """Datasets whose assets or checks this step was asked for, in contract order."""
    keys = set(context.selected_asset_keys) | {
        k.asset_key for k in context.selected_asset_check_keys
    }
    return [c.name for c in SDTM_CONTRACTS if dg.AssetKey(f"{prefix}{c.name}") in keys]


def _checks_only(context: dg.AssetExecutionContext) -> bool:
    return not context.selected_asset_keys and bool(context.selected_asset_check_keys)


def _domain_job(
    context: dg.AssetExecutionContext,
    lake: ClinicalLake,
    entry_point: str,
    source: str,
    target: str,
    prefix: str,
) -> SparkJob:
    """The ingest or curate job for this step's domains of one delivery (same arguments)."""
    delivery = delivery_of(context)
    arguments = [
        "--input",
        source,
        "--output",
        target,
        "--quarantine",
        lake.layout.zone("quarantine"),
        "--study",
        delivery.study,
        "--delivery",
        delivery.delivery,
        "--datasets",
        ",".join(selected_datasets(context, prefix)),
        "--run-id",
        context.run.run_id,
    ]
    if _checks_only(context):
        arguments.append("--checks-only")
    return SparkJob(entry_point, arguments)


@dg.multi_asset(
    name="clinical_raw",
    specs=[raw_spec(c) for c in SDTM_CONTRACTS],
    check_specs=raw_check_specs(),
    can_subset=True,
    partitions_def=CLINICAL_DELIVERIES,
)
def clinical_raw(
    context: dg.AssetExecutionContext, spark: SparkLauncher, lake: ClinicalLake
) -> Iterator[Result]:
    """landing -> raw for the selected domains of one delivery, in one Spark application."""
    landing = lake.layout.landing(delivery_of(context))
    job = _domain_job(context, lake, "ingest", landing, lake.layout.zone("raw"), "raw_")
    yield from spark.run(context, job).outputs()


@dg.multi_asset(
    name="clinical_curated",
    specs=[curated_spec(c) for c in SDTM_CONTRACTS],
    check_specs=curated_check_specs(),
    can_subset=True,
    partitions_def=CLINICAL_DELIVERIES,
)
def clinical_curated(
    context: dg.AssetExecutionContext, spark: SparkLauncher, lake: ClinicalLake
) -> Iterator[Result]:
    """raw -> curated + quarantine with every contract rule, in one Spark application."""
    raw, curated = lake.layout.zone("raw"), lake.layout.zone("curated")
    job = _domain_job(context, lake, "curate", raw, curated, "curated_")
    yield from spark.run(context, job).outputs()


@dg.multi_asset(
    name="clinical_features",
    specs=[
        _spec(
            FEATURES_KEY,
            "features",
            SUBJECT_PROFILE.description,
            _schema(SUBJECT_PROFILE.columns),
            [dg.AssetKey(f"curated_{name}") for name in SUBJECT_PROFILE.upstream],
        )
    ],
    check_specs=feature_check_specs(),
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
    delivery, layout = delivery_of(context), lake.layout
    arguments = [
        "--input",
        layout.zone("curated"),
        "--output",
        layout.zone("features"),
        "--study",
        delivery.study,
        "--delivery",
        delivery.delivery,
        "--run-id",
        context.run.run_id,
        "--key-env",
        pseudonymization.key_env_var,
    ]
    secrets: dict[str, str] = {}
    if _checks_only(context):
        arguments.append("--checks-only")
    else:
        secrets[pseudonymization.key_env_var] = pseudonymization.purpose()
    yield from spark.run(context, SparkJob("features", arguments, secrets)).outputs()


CLINICAL_ASSETS = [clinical_raw, clinical_curated, clinical_features]
