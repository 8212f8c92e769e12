"""The platform's one Definitions object, built lazily; `CLINICAL_ENV` chooses where Spark runs.

Importing this module reads no setting: Dagster (or a test, or the CLI) calls `defs()`, and
only then are the environment's resources chosen (`deployments.resources_for`).
"""

from __future__ import annotations

import dagster as dg

from clinical_platform import settings
from clinical_platform.clinical.assets import CLINICAL_ASSETS
from clinical_platform.clinical.checks import checks_job
from clinical_platform.clinical.landing import (
    deliveries_on_time,
    landing_clinical,
    late_deliveries_job,
    late_delivery_schedule,
)
from clinical_platform.clinical.sensors import clinical_landing_sensor, landing_sensor_of
from clinical_platform.deployments import LakeUri, resources_for
from clinical_platform.omics.assets import OMICS_ASSETS
from clinical_platform.sensor.assets import SENSOR_ASSETS
from spark_jobs.contracts.omics import OMICS_FAMILY
from spark_jobs.contracts.sensor import SENSOR_FAMILY

__all__ = ["build_definitions", "defs", "resources_for"]


def build_definitions(
    environment: str | None = None, lake_uri: LakeUri | None = None
) -> dg.Definitions:
    """Assets with the resources of `environment` (default `CLINICAL_ENV`)."""
    chosen = settings.environment(environment)
    return dg.Definitions(
        assets=[landing_clinical, *CLINICAL_ASSETS, *SENSOR_ASSETS, *OMICS_ASSETS],
        asset_checks=[deliveries_on_time],
        jobs=[
            checks_job(),
            checks_job(SENSOR_FAMILY),
            checks_job(OMICS_FAMILY),
            late_deliveries_job,
        ],
        schedules=[late_delivery_schedule],
        sensors=[
            clinical_landing_sensor,
            landing_sensor_of(SENSOR_FAMILY),
            landing_sensor_of(OMICS_FAMILY),
        ],
        resources=resources_for(chosen, lake_uri),
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions()
