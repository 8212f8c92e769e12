"""The wearable-sensor family's contract: one reading per device second, as a vendor exports it.

A delivery (an upload batch) holds one file per subject or device, Parquet or CSV, each with
these columns. The same standard rules as SDTM apply, from the same facts: readings identical in
every column are collapsed and counted (a device that sent a second twice), a heart rate or step
count no body can produce is quarantined with its reason, and a second that two differing
readings claim is quarantined whole.

The natural key is the subject and the device's second *with* its clock offset: a skewed clock
can give two true seconds the same TIMESTAMP (the last minutes of a skewed day and the first of
the next), and only the offset tells them apart. TIMESTAMP minus CLOCK_OFFSET_S is the true
second, which the curated zone resamples to (`spark_jobs.families.sensor`).
"""

from __future__ import annotations

from spark_jobs.contracts.features import (
    NO_IDENTIFIERS_RULE,
    FeatureCheck,
    FeatureContract,
    grain_rule,
)
from spark_jobs.contracts.model import (
    Column,
    ColumnType,
    DatasetContract,
    PlausibleRange,
)
from spark_jobs.contracts.rules import with_standard_rules

SENSOR_FAMILY = "sensor"

S = ColumnType.STRING
D = ColumnType.DOUBLE
I = ColumnType.INTEGER  # noqa: E741 - the contract "integer" column type
TS = ColumnType.TIMESTAMP

SENSOR = with_standard_rules(
    DatasetContract(
        name="sensor",
        domain="SENSOR",
        title="Wearable sensor readings",
        description="One reading per device second: heart rate, steps and acceleration "
        "magnitude of a wrist-worn device, with the device's clock offset at its last sync.",
        columns=(
            Column("STUDYID", S, "Study Identifier", required=True, max_length=40),
            Column("USUBJID", S, "Unique Subject Identifier", required=True, max_length=40),
            Column("DEVICE_ID", S, "Device that recorded the reading", required=True),
            Column("TIMESTAMP", TS, "Second of the reading on the device's clock", required=True),
            Column(
                "CLOCK_OFFSET_S",
                I,
                "Device clock minus the phone's clock at the last sync (seconds)",
                required=True,
            ),
            Column("HEART_RATE", D, "Heart rate (beats/min); null when no optical reading"),
            Column("STEPS", I, "Steps counted in that second"),
            Column("ACCEL_MAG", D, "Acceleration magnitude (g)"),
        ),
        natural_key=("USUBJID", "TIMESTAMP", "CLOCK_OFFSET_S"),
        file_stems=(),  # every data file of a sensor delivery holds readings
        plausible_ranges=(
            # 0 is an optical sensor's floor and 255 its saturation; neither is a pulse.
            PlausibleRange("HEART_RATE", 20.0, 250.0, "beats/min", column="HEART_RATE"),
            PlausibleRange("STEPS", 0.0, 10.0, "steps/s", column="STEPS"),
            PlausibleRange("ACCEL_MAG", 0.0, 16.0, "g", column="ACCEL_MAG"),
            # A device more than a day off its phone has no usable clock.
            PlausibleRange("CLOCK_OFFSET_S", -86_400.0, 86_400.0, "s", column="CLOCK_OFFSET_S"),
        ),
        references_dm=False,
        # Upload batches differ in size by nature; the volume warning is for gross changes.
        volume_change_limit=0.9,
        family=SENSOR_FAMILY,
        cumulative=False,
    )
)


_DAY = ("sensor", "MINUTE")
SENSOR_DAILY = FeatureContract(
    name="sensor_daily",
    title="Sensor features per subject-day",
    description="One row per subject and day of wear: total steps, wear time, heart rate "
    "minimum, mean and maximum, and resting heart rate (the mean over minutes worn in full "
    "without a step). De-identified like the clinical features: a keyed HMAC pseudonym instead "
    "of USUBJID, a day of wear instead of a date.",
    grain="subject-day",
    columns=(
        Column("subject_pseudonym", S, "HMAC-SHA256 of STUDYID/USUBJID under the study's key"),
        Column(
            "wear_day",
            I,
            "Day of wear: 1 is the subject's first day with readings in the study's deliveries "
            "up to this one (true time, UTC)",
        ),
        Column("total_steps", I, "Steps counted in the day"),
        Column("wear_minutes", D, "Seconds with a kept reading, in minutes"),
        Column("hr_min", D, "Lowest heart rate of the day (beats/min)"),
        Column("hr_max", D, "Highest heart rate of the day (beats/min)"),
        Column("hr_mean", D, "Mean of the day's heart-rate readings (beats/min)"),
        Column(
            "resting_hr",
            D,
            "Mean of the mean heart rates of the day's resting minutes (60 seconds worn, no "
            "step), beats/min; null without one",
        ),
        Column("resting_minutes", I, "Resting minutes of the day"),
    ),
    upstream=("sensor",),
    rules=(
        NO_IDENTIFIERS_RULE,
        grain_rule(
            FeatureCheck.ONE_ROW_PER_SUBJECT_DAY,
            "Exactly one row per subject and day of the curated minutes, pseudonyms never missing.",
        ),
    ),
    lineage={
        "subject_pseudonym": (("sensor", "STUDYID"), ("sensor", "USUBJID")),
        "wear_day": (_DAY,),
        "total_steps": (("sensor", "STEPS"), _DAY),
        "wear_minutes": (("sensor", "SECONDS_WORN"), _DAY),
        "hr_min": (("sensor", "HR_MIN"), _DAY),
        "hr_max": (("sensor", "HR_MAX"), _DAY),
        "hr_mean": (("sensor", "HR_SUM"), ("sensor", "HR_READINGS"), _DAY),
        "resting_hr": (
            ("sensor", "HR_SUM"),
            ("sensor", "HR_READINGS"),
            ("sensor", "SECONDS_WORN"),
            ("sensor", "STEPS"),
            _DAY,
        ),
        "resting_minutes": (
            ("sensor", "HR_READINGS"),
            ("sensor", "SECONDS_WORN"),
            ("sensor", "STEPS"),
            _DAY,
        ),
    },
    family=SENSOR_FAMILY,
)
