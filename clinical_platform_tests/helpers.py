"""Helpers the end-to-end tests share: landing and materializing a delivery in a temp lake."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dagster as dg

from clinical_platform.catalog import catalog_settings, open_catalog
from clinical_platform.clinical.assets import CLINICAL_ASSETS
from clinical_platform.definitions import resources_for
from clinical_platform.lake import land_delivery, read_lineage
from clinical_platform.partitions import CLINICAL_DELIVERIES
from clinical_platform.runs import delivery_assets
from spark_jobs.contracts.layout import Delivery, LakeLayout, local_path
from spark_jobs.contracts.tables import PARTITION_COLUMNS, table_name


def land(folder: Path, delivery: Delivery, lake: Path) -> None:
    land_delivery(folder, delivery, LakeLayout(str(lake)))


def materialize(
    lake: Path | str,
    delivery: Delivery,
    *,
    selection: Sequence[str] | None = None,
    instance: dg.DagsterInstance | None = None,
    resources: dict[str, Any] | None = None,
) -> dg.ExecuteInProcessResult:
    """Materialize the clinical assets of one delivery in-process (never raises on failure).

    By default, like `clinical-platform materialize`, the assets of the datasets it carries.
    """
    instance = instance or dg.DagsterInstance.ephemeral()
    if selection is None:
        carried = delivery_assets(LakeLayout(str(lake)), delivery)
        selection = [k.to_user_string() for k in carried] if carried is not None else None
    assert CLINICAL_DELIVERIES.name is not None
    if not instance.has_dynamic_partition(CLINICAL_DELIVERIES.name, delivery.key):
        instance.add_dynamic_partitions(CLINICAL_DELIVERIES.name, [delivery.key])
    return dg.materialize(
        CLINICAL_ASSETS,
        partition_key=delivery.key,
        instance=instance,
        resources={**resources_for("local", str(lake)), **(resources or {})},
        selection=list(selection) if selection else None,
        raise_on_error=False,
    )


def land_and_materialize(
    folder: Path,
    delivery: Delivery,
    lake: Path,
    family: str,
    assets: Sequence[Any],
    *,
    via_sensor: bool = False,
) -> dg.ExecuteInProcessResult:
    """Land a folder as a delivery of another family than clinical and materialize all its
    assets in a fresh instance, in-process (never raises on failure).

    With `via_sensor`, what runs is what the family's landing sensor asks for: one tick of
    the real sensor adds the partition, and its one run request's partition and assets are
    materialized (the daemon would launch the same request)."""
    from clinical_platform.clinical.landing import LandingPolicy
    from clinical_platform.clinical.sensors import landing_sensor_of
    from clinical_platform.lake import ClinicalLake
    from clinical_platform.partitions import deliveries_def
    from spark_jobs.contracts.outputs import asset_outputs

    land_delivery(folder, delivery, LakeLayout(str(lake), family=family))
    instance = dg.DagsterInstance.ephemeral()
    name = deliveries_def(family).name
    assert name is not None
    selection = [dg.AssetKey(o.asset_key) for o in asset_outputs(family)]
    partition = delivery.key
    if via_sensor:
        context = dg.build_sensor_context(
            instance=instance,
            resources={"lake": ClinicalLake(uri=str(lake)), "landing_policy": LandingPolicy()},
        )
        tick = landing_sensor_of(family)(context)
        assert isinstance(tick, dg.SensorResult)
        [request] = tick.run_requests or []
        [added] = tick.dynamic_partitions_requests or []
        assert isinstance(added, dg.AddDynamicPartitionsRequest)
        assert added.partitions_def_name == name
        instance.add_dynamic_partitions(added.partitions_def_name, list(added.partition_keys))
        selection, partition = list(request.asset_selection or []), request.partition_key
    else:
        instance.add_dynamic_partitions(name, [delivery.key])
    return dg.materialize(
        assets,
        partition_key=partition,
        instance=instance,
        resources=resources_for("local", str(lake)),
        selection=selection,
        raise_on_error=False,
    )


def run_family_checks(
    lake: Path, delivery: Delivery, family: str, assets: Sequence[Any]
) -> dg.ExecuteInProcessResult:
    """The family's checks job (what *Launchpad -> <family>_checks* runs) on one committed
    delivery: every check of its assets, re-evaluated; nothing is written."""
    from clinical_platform.clinical.checks import checks_job, checks_job_name
    from clinical_platform.partitions import deliveries_def

    instance = dg.DagsterInstance.ephemeral()
    name = deliveries_def(family).name
    assert name is not None
    instance.add_dynamic_partitions(name, [delivery.key])
    defs = dg.Definitions(
        assets=assets, jobs=[checks_job(family)], resources=resources_for("local", str(lake))
    )
    job = defs.resolve_job_def(checks_job_name(family))
    # As `materialize --checks-only` does: Dagster 1.13 validates no partition key for a job
    # of checks alone, so the run carries its delivery as the partition tag.
    return job.execute_in_process(
        instance=instance, tags={"dagster/partition": delivery.key}, raise_on_error=False
    )


def assert_checks_alone_agree(
    written: dg.ExecuteInProcessResult,
    alone: dg.ExecuteInProcessResult,
    grain: tuple[str, str],
    figures: Sequence[str],
) -> None:
    """A checks-only run wrote nothing, gave every check the verdict of the materialization,
    and the grain check (asset, check) the same figures."""
    assert alone.get_asset_materialization_events() == []
    before, again = checks(written), checks(alone)
    assert {k: c.passed for k, c in again.items()} == {k: c.passed for k, c in before.items()}
    assert [metadata_value(again[grain], f) for f in figures] == [
        metadata_value(before[grain], f) for f in figures
    ]


def materializations(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetMaterialization]:
    found = {}
    for event in result.get_asset_materialization_events():
        materialization = event.materialization
        assert materialization is not None
        found[materialization.asset_key.to_user_string()] = materialization
    return found


def metadata_value(event: dg.AssetMaterialization | dg.AssetCheckEvaluation, key: str) -> Any:
    """The plain value of one metadata entry (typed Any: tests compare it to literals)."""
    value = event.metadata[key]
    return getattr(value, "value", value)


def checks(result: dg.ExecuteInProcessResult) -> dict[tuple[str, str], dg.AssetCheckEvaluation]:
    return {
        (e.asset_key.to_user_string(), e.check_name): e
        for e in result.get_asset_check_evaluations()
    }


def partition_dir(lake: Path, zone: str, dataset: str, delivery: Delivery) -> Path:
    """Where the table keeps the partition's data files (older versions' files included)."""
    return Path(local_path(LakeLayout(str(lake)).table_files(zone, dataset, delivery)))


def lineage(lake: Path | str, zone: str, dataset: str, delivery: Delivery) -> dict[str, Any]:
    """The partition's lineage record as committed (from `system.lineage`)."""
    record = read_lineage(LakeLayout(str(lake)), zone, dataset, delivery)
    assert record is not None, f"no lineage record for {zone} {dataset} {delivery.key}"
    return record


def lake_catalog(lake: Path | str) -> Any:
    """The lake's catalog through pyiceberg (the same one the jobs write, named `clinical`)."""
    return open_catalog(catalog_settings(LakeLayout(str(lake))))


def read_table(
    spark: Any,
    lake: Path,
    zone: str,
    dataset: str,
    delivery: Delivery,
    snapshot_id: int | None = None,
    family: str = "clinical",
) -> Any:
    """The published rows of one partition, read through the table (current or a snapshot)."""
    table = lake_catalog(lake).load_table(table_name(zone, family, dataset))
    reader = spark.read.format("iceberg")
    if snapshot_id is not None:
        reader = reader.option("snapshot-id", str(snapshot_id))
    rows = reader.load(table.metadata_location)
    study, key = PARTITION_COLUMNS
    return rows.where((rows[study] == delivery.study) & (rows[key] == delivery.delivery))


def table_exists(lake: Path, zone: str, dataset: str) -> bool:
    return bool(lake_catalog(lake).table_exists(table_name(zone, "clinical", dataset)))


def current_data_files(lake: Path, zone: str, dataset: str, delivery: Delivery) -> list[Path]:
    """The data files of the partition in the table's current snapshot."""
    table = lake_catalog(lake).load_table(table_name(zone, "clinical", dataset))
    study, key = PARTITION_COLUMNS
    condition = f"{study} = '{delivery.study}' AND {key} = '{delivery.delivery}'"
    return [
        Path(local_path(task.file.file_path))
        for task in table.scan(row_filter=condition).plan_files()
    ]


def run_command(argv: Sequence[str]) -> tuple[int, str, str]:
    """`clinical-platform <argv>` in this process: exit status, stdout and stderr."""
    import contextlib
    import io

    from clinical_platform.cli import main

    out, err = io.StringIO(), io.StringIO()
    code: int | str | None = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(argv))
        except SystemExit as exited:
            code = exited.code
    return (code if isinstance(code, int) else 1), out.getvalue(), err.getvalue()


def partition_materialization(
    instance: dg.DagsterInstance, asset: str, delivery: Delivery
) -> dg.AssetMaterialization | None:
    """The partition's latest materialization, as the UI's partition view reads it."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[delivery.key]),
        limit=1,
    ).records
    return records[0].asset_materialization if records else None


def metadata_of(materialization: dg.AssetMaterialization | None, key: str) -> Any:
    assert materialization is not None
    return getattr(materialization.metadata[key], "value", None)
