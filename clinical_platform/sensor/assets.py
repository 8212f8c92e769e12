"""Wearable-sensor assets: landing_sensor -> raw_sensor -> curated_sensor ->
features_sensor_daily, partitioned by study and upload batch (`sensor_deliveries`).

The same stages as the clinical family (`clinical.assets`), run by the same Spark jobs with
`--family sensor`: the kernel's sensor contract says what they read and write. Nothing here
but which job runs for which assets.
"""

from collections.abc import Iterator

import dagster as dg

from clinical_platform.clinical.assets import FAMILY_STAGES, Stage, asset_spec, run_stage
from clinical_platform.clinical.checks import check_specs
from clinical_platform.clinical.landing import landing_source
from clinical_platform.lake import ClinicalLake
from clinical_platform.launchers.base import SparkLauncher
from clinical_platform.launchers.batch import StepEvent
from clinical_platform.partitions import SENSOR_DELIVERIES
from clinical_platform.pseudonymization import Pseudonymization
from spark_jobs.contracts.layout import Zone
from spark_jobs.contracts.outputs import family_outputs
from spark_jobs.contracts.protocol import EntryPoint
from spark_jobs.contracts.sensor import SENSOR_FAMILY

RAW_STAGE = Stage(
    "sensor_raw", EntryPoint.INGEST, family_outputs(SENSOR_FAMILY, Zone.RAW), SENSOR_FAMILY
)
CURATED_STAGE = Stage(
    "sensor_curated", EntryPoint.CURATE, family_outputs(SENSOR_FAMILY, Zone.CURATED), SENSOR_FAMILY
)
FEATURES_STAGE = Stage(
    "sensor_features",
    EntryPoint.FEATURES,
    family_outputs(SENSOR_FAMILY, Zone.FEATURES),
    SENSOR_FAMILY,
)
FAMILY_STAGES[SENSOR_FAMILY] = (RAW_STAGE, CURATED_STAGE, FEATURES_STAGE)

landing_sensor = landing_source(
    SENSOR_FAMILY,
    "Wearable-sensor files as the devices' vendor uploaded them, one partition per upload batch",
)


def _stage_asset(stage: Stage, doc: str) -> dg.AssetsDefinition:
    @dg.multi_asset(
        name=stage.node,
        specs=[asset_spec(o) for o in stage.outputs],
        check_specs=check_specs(stage.outputs),
        can_subset=True,
        partitions_def=SENSOR_DELIVERIES,
        backfill_policy=dg.BackfillPolicy.single_run(),
        description=doc,
    )
    def step(
        context: dg.AssetExecutionContext,
        spark: SparkLauncher,
        lake: ClinicalLake,
        pseudonymization: Pseudonymization,
    ) -> Iterator[StepEvent]:
        yield from run_stage(context, spark, lake, stage, pseudonymization)

    return step


sensor_raw = _stage_asset(RAW_STAGE, "landing -> raw: every reading as the device sent it.")
sensor_curated = _stage_asset(
    CURATED_STAGE,
    "raw -> curated minutes + quarantine: the contract's rules on every second, then one row "
    "per subject and minute of true time.",
)
sensor_features = _stage_asset(
    FEATURES_STAGE, "curated -> features_sensor_daily, pseudonymised with the study's HMAC key."
)

SENSOR_ASSETS = [landing_sensor, sensor_raw, sensor_curated, sensor_features]
