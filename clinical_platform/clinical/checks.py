"""Asset check specs of the clinical family, as the kernel declares them per output.

The Spark jobs evaluate these checks in the same pass that writes the data and report them
through Pipes; here they are only declared, so the UI lists every rule of every dataset.
"""

from __future__ import annotations

from collections.abc import Iterable

import dagster as dg

from clinical_platform.partitions import CLINICAL_DELIVERIES, deliveries_def
from spark_jobs.contracts.outputs import DatasetOutput, asset_outputs


def check_specs(outputs: Iterable[DatasetOutput]) -> list[dg.AssetCheckSpec]:
    """One spec per declared check of each output (raw: files_readable, not blocking;
    curated: every contract rule, file-level and reconciliation blocking; features: both)."""
    return [
        dg.AssetCheckSpec(
            name=check.name,
            asset=dg.AssetKey(output.asset_key),
            description=check.description,
            blocking=check.blocking,
            # Per delivery: a failing delivery stays visible after the next one passes.
            partitions_def=deliveries_def(output.family),
        )
        for output in outputs
        for check in output.checks
    ]


CHECKS_JOB_NAME = "clinical_checks"


def checks_job() -> dg.UnresolvedAssetJobDefinition:
    """Every check of the clinical datasets, for one delivery chosen in the launchpad: they
    re-evaluate its committed data and write nothing (*Execute checks* on an asset's Checks
    tab cannot pass a partition in Dagster 1.13)."""
    keys = [dg.AssetKey(o.asset_key) for o in asset_outputs()]
    return dg.define_asset_job(
        CHECKS_JOB_NAME,
        selection=dg.AssetSelection.checks_for_assets(*keys),
        partitions_def=CLINICAL_DELIVERIES,
        description="Re-evaluate a delivery's checks on its committed data; nothing is written.",
    )
