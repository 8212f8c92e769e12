"""Wearable-sensor data from conformed seconds to minutes, and from minutes to subject-days.

The rules of the sensor contract run first, exactly as for SDTM (`quality.evaluate`): the
seconds a device sent twice are collapsed, impossible values are quarantined with reasons. What
is kept is resampled here, on the *true* second (TIMESTAMP minus CLOCK_OFFSET_S), to one row
per subject, minute and source file:

- the minute's parts are kept, not only its means (seconds worn, step total, heart-rate count,
  minimum, maximum and sum), so every daily figure is computed exactly from minutes;
- flags say what the minute went through: `gap` (fewer than 60 seconds worn),
  `clock_corrected` (readings moved back by the device's clock offset), `device_swap` (two
  devices in one minute);
- provenance is a range: the file, its first and last row in the minute, and how many rows
  of the file the minute holds (collapsed duplicates included), so the rows of raw are
  accounted for: raw = seconds worn + quarantined + collapsed.

A minute that two files share gives two rows, each with its own provenance; the daily step
puts them back together before it judges the minute.

Pure DataFrame functions; no Spark session, no Dagster.
"""

from __future__ import annotations

from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from spark_jobs.contracts.outputs import (
    DELIVERY,
    DUPLICATES_COLLAPSED,
    FLAG_DETAILS,
    FLAGS,
    INGESTED_RUN_ID,
    SOURCE_ROW,
    SOURCE_ROW_LAST,
    SOURCE_ROWS,
    SOURCE_SHA256,
    SOURCE_URI,
)

TRUE_TIME = "__true_time"
MINUTE = "MINUTE"
DAY = "DAY"
SECONDS_WORN = "SECONDS_WORN"
SECONDS_PER_MINUTE = 60
# A resting minute: worn for all its seconds, no step, at least one heart-rate reading.
RESTING_STEPS = 0

SUM_DECIMAL = "decimal(38,10)"

GAP = "gap"
CLOCK_CORRECTED = "clock_corrected"
DEVICE_SWAP = "device_swap"


def true_time() -> Column:
    """The second a reading belongs to: the device's clock corrected by its offset (ms kept)."""
    return F.expr(
        "timestamp_millis(unix_millis(TIMESTAMP) - CAST(CLOCK_OFFSET_S AS BIGINT) * 1000)"
    )


def exact_sum(name: str | Column) -> Column:
    """A sum of doubles that does not depend on the order Spark adds them in: each value is
    rounded to 10 decimals (far below any sensor's resolution) and summed as a decimal, so the
    same readings give the same bits in every run, and content hashes stay stable."""
    value = F.col(name) if isinstance(name, str) else name
    return F.sum(value.cast(SUM_DECIMAL)).cast("double")


def exact_avg(name: str | Column) -> Column:
    value = F.col(name) if isinstance(name, str) else name
    return exact_sum(value) / F.count(value)


def minutes(kept: DataFrame) -> DataFrame:
    """Conformed, kept seconds (one per true second) as one row per subject, minute and file."""
    timed = kept.withColumn(TRUE_TIME, true_time()).withColumn(
        MINUTE, F.date_trunc("minute", F.col(TRUE_TIME))
    )
    # The delivery and the ingest run are one per partition: kept as they are, like the file.
    keys = ["STUDYID", "USUBJID", MINUTE, SOURCE_URI, SOURCE_SHA256, DELIVERY, INGESTED_RUN_ID]
    grouped = timed.groupBy(*keys).agg(
        F.array_sort(F.collect_set("DEVICE_ID")).alias("__devices"),
        F.count(F.lit(1)).cast("int").alias("SECONDS_WORN"),
        F.sum("STEPS").alias("STEPS"),
        F.count("HEART_RATE").cast("int").alias("HR_READINGS"),
        F.min("HEART_RATE").alias("HR_MIN"),
        F.max("HEART_RATE").alias("HR_MAX"),
        exact_sum("HEART_RATE").alias("HR_SUM"),
        exact_avg("ACCEL_MAG").alias("ACCEL_MEAN"),
        F.max(F.abs("CLOCK_OFFSET_S")).alias("__largest_offset"),
        F.array_sort(F.collect_set("CLOCK_OFFSET_S")).alias("__offsets"),
        F.min(SOURCE_ROW).alias(SOURCE_ROW),
        F.max(SOURCE_ROW).alias(SOURCE_ROW_LAST),
        F.sum(F.col(DUPLICATES_COLLAPSED) + 1).alias(SOURCE_ROWS),
        F.sum(DUPLICATES_COLLAPSED).cast("int").alias(DUPLICATES_COLLAPSED),
        # Sorted: the order rows reach an aggregate is not fixed, content hashes must be.
        F.array_sort(F.array_distinct(F.flatten(F.collect_list(FLAGS)))).alias("__second_flags"),
        F.array_sort(F.array_distinct(F.flatten(F.collect_list(FLAG_DETAILS)))).alias(
            "__second_details"
        ),
    )
    flags = _minute_flags()
    return grouped.select(
        "*",
        F.array_join("__devices", ",").alias("DEVICE_ID"),
        (F.col("HR_SUM") / F.col("HR_READINGS")).alias("HR_MEAN"),
        F.col("__largest_offset").cast("int").alias("CLOCK_CORRECTION_S"),
        F.concat("__second_flags", F.filter(F.array(*[name for name, _ in flags]), _present)).alias(
            FLAGS
        ),
        F.concat("__second_details", F.filter(F.array(*[d for _, d in flags]), _present)).alias(
            FLAG_DETAILS
        ),
    ).drop("__devices", "__largest_offset", "__offsets", "__second_flags", "__second_details")


def _present(value: Column) -> Column:
    return value.isNotNull()


def _minute_flags() -> list[tuple[Column, Column]]:
    """(flag, detail) per minute flag, both null where the minute does not have it."""
    worn = F.col("SECONDS_WORN")
    gap = worn < SECONDS_PER_MINUTE
    corrected = F.col("__largest_offset") > 0
    swapped = F.size("__devices") > 1
    return [
        (
            F.when(gap, F.lit(GAP)),
            F.when(
                gap,
                F.format_string(f"{GAP}: %d of {SECONDS_PER_MINUTE} seconds worn", worn),
            ),
        ),
        (
            F.when(corrected, F.lit(CLOCK_CORRECTED)),
            F.when(
                corrected,
                F.concat(
                    F.lit(f"{CLOCK_CORRECTED}: device clock offsets "),
                    F.array_join(F.col("__offsets").cast("array<string>"), ", "),
                    F.lit(" s taken off TIMESTAMP"),
                ),
            ),
        ),
        (
            F.when(swapped, F.lit(DEVICE_SWAP)),
            F.when(
                swapped,
                F.concat(F.lit(f"{DEVICE_SWAP}: "), F.array_join("__devices", " and ")),
            ),
        ),
    ]


def subject_days(minute_rows: DataFrame) -> DataFrame:
    """Per subject and (true, UTC) day: steps, wear time, heart rate min/mean/max, and the
    resting heart rate (mean of the resting minutes' mean heart rates)."""
    whole = minute_rows.groupBy("STUDYID", "USUBJID", MINUTE).agg(
        F.sum("SECONDS_WORN").alias("SECONDS_WORN"),
        F.sum("STEPS").alias("STEPS"),
        F.sum("HR_READINGS").alias("HR_READINGS"),
        F.min("HR_MIN").alias("HR_MIN"),
        F.max("HR_MAX").alias("HR_MAX"),
        exact_sum("HR_SUM").alias("HR_SUM"),
    )
    resting = (
        (F.col("SECONDS_WORN") == SECONDS_PER_MINUTE)
        & (F.coalesce(F.col("STEPS"), F.lit(0)) == RESTING_STEPS)
        & (F.col("HR_READINGS") > 0)
    )
    return (
        whole.withColumn(DAY, F.to_date(MINUTE))
        .groupBy("STUDYID", "USUBJID", DAY)
        .agg(
            F.sum("STEPS").alias("TOTAL_STEPS"),
            (F.sum("SECONDS_WORN") / F.lit(float(SECONDS_PER_MINUTE))).alias("WEAR_MINUTES"),
            F.min("HR_MIN").alias("HR_MIN"),
            F.max("HR_MAX").alias("HR_MAX"),
            (exact_sum("HR_SUM") / F.sum("HR_READINGS")).alias("HR_MEAN"),
            exact_avg(F.when(resting, F.col("HR_SUM") / F.col("HR_READINGS"))).alias("RESTING_HR"),
            F.count(F.when(resting, True)).cast("int").alias("RESTING_MINUTES"),
        )
    )


def daily_features(minute_rows: DataFrame, own: DataFrame, pseudonym: Any) -> DataFrame:
    """`features_sensor_daily`: the subject-days `own` (a delivery's minutes) touches, each
    from all of `minute_rows` (the study's minutes up to that delivery), de-identified: a
    pseudonym for the subject and a day of wear (1 = the subject's first day in `minute_rows`)
    for the date."""
    # A file sent again in a later batch holds the same minutes: count them once.
    minute_rows = minute_rows.dropDuplicates(["USUBJID", MINUTE, SOURCE_SHA256])
    touched = own.select("USUBJID", F.to_date(MINUTE).alias(DAY)).distinct()
    first = minute_rows.groupBy("USUBJID").agg(F.min(F.to_date(MINUTE)).alias("__first_day"))
    days = (
        subject_days(minute_rows)
        .join(touched, ["USUBJID", DAY], "left_semi")
        .join(first, "USUBJID")
    )
    return days.select(
        pseudonym(F.col("STUDYID"), F.col("USUBJID")).alias("subject_pseudonym"),
        (F.datediff(DAY, "__first_day") + 1).cast("bigint").alias("wear_day"),
        F.col("TOTAL_STEPS").cast("bigint").alias("total_steps"),
        F.col("WEAR_MINUTES").alias("wear_minutes"),
        F.col("HR_MIN").alias("hr_min"),
        F.col("HR_MAX").alias("hr_max"),
        F.col("HR_MEAN").alias("hr_mean"),
        F.col("RESTING_HR").alias("resting_hr"),
        F.col("RESTING_MINUTES").cast("bigint").alias("resting_minutes"),
    )
