"""Asset check specs of the clinical family, as the kernel declares them per output.

The Spark jobs evaluate these checks in the same pass that writes the data and report them
through Pipes; here they are only declared, so the UI lists every rule of every dataset.
"""

from __future__ import annotations

from collections.abc import Iterable

import dagster as dg

from clinical_platform.partitions import deliveries_def
from spark_jobs.contracts.layout import CLINICAL_FAMILY
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


def checks_job_name(family: str = CLINICAL_FAMILY) -> str:
    return f"{family}_checks"


def checks_job(family: str = CLINICAL_FAMILY) -> dg.UnresolvedAssetJobDefinition:
    """Every check of a family's datasets, for one delivery chosen in the launchpad: they
    re-evaluate its committed data and write nothing (*Execute checks* on an asset's Checks
    tab cannot pass a partition in Dagster 1.13)."""
    keys = [dg.AssetKey(o.asset_key) for o in asset_outputs(family)]
    return dg.define_asset_job(
        checks_job_name(family),
        selection=dg.AssetSelection.checks_for_assets(*keys),
        partitions_def=deliveries_def(family),
        description="Re-evaluate a delivery's checks on its committed data; nothing is written.",
    )
