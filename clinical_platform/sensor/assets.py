"""Wearable-sensor assets: landing_sensor -> raw_sensor -> curated_sensor ->
features_sensor_daily, partitioned by study and upload batch (`sensor_deliveries`).

The same stages as the clinical family (`clinical.assets`), run by the same Spark jobs with
`--family sensor`: the kernel's sensor contract says what they read and write. Nothing here
but which job runs for which assets.
"""

from clinical_platform.clinical.assets import FAMILY_STAGES, stage_asset
from clinical_platform.clinical.landing import landing_source
from spark_jobs.contracts.sensor import SENSOR_FAMILY

RAW_STAGE, CURATED_STAGE, FEATURES_STAGE = FAMILY_STAGES[SENSOR_FAMILY]

landing_sensor = landing_source(
    SENSOR_FAMILY,
    "Wearable-sensor files as the devices' vendor uploaded them, one partition per upload batch",
)


sensor_raw = stage_asset(RAW_STAGE, "landing -> raw: every reading as the device sent it.")
sensor_curated = stage_asset(
    CURATED_STAGE,
    "raw -> curated minutes + quarantine: the contract's rules on every second, then one row "
    "per subject and minute of true time.",
)
sensor_features = stage_asset(
    FEATURES_STAGE, "curated -> features_sensor_daily, pseudonymised with the study's HMAC key."
)

SENSOR_ASSETS = [landing_sensor, sensor_raw, sensor_curated, sensor_features]
