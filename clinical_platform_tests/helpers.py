"""Helpers the end-to-end tests share: landing and materializing a delivery in a temp lake."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dagster as dg

from clinical_platform.clinical.assets import CLINICAL_ASSETS
from clinical_platform.definitions import resources_for
from clinical_platform.lake import land_delivery
from clinical_platform.partitions import CLINICAL_DELIVERIES
from spark_jobs.contracts.layout import LINEAGE_NAME, Delivery, LakeLayout, local_path


def land(folder: Path, delivery: Delivery, lake: Path) -> None:
    land_delivery(folder, delivery, LakeLayout(str(lake)))


def materialize(
    lake: Path,
    delivery: Delivery,
    *,
    selection: Sequence[str] | None = None,
    instance: dg.DagsterInstance | None = None,
    resources: dict[str, Any] | None = None,
) -> dg.ExecuteInProcessResult:
    """Materialize the clinical assets of one delivery in-process (never raises on failure)."""
    instance = instance or dg.DagsterInstance.ephemeral()
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
    return Path(local_path(LakeLayout(str(lake)).partition(zone, dataset, delivery)))


def lineage(lake: Path, zone: str, dataset: str, delivery: Delivery) -> dict[str, Any]:
    return json.loads((partition_dir(lake, zone, dataset, delivery) / LINEAGE_NAME).read_text())
