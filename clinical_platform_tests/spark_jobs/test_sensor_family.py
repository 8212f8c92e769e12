"""Level 1: the sensor family's rules and resampling, on small frames and on a generated
delivery whose right answers the generator knows.

The readings go through the same rule evaluation as SDTM (`quality.evaluate`) with the sensor
contract, then to minutes and subject-days (`families.sensor`). Every figure of the generator's
truth must come out exactly (the resting heart rate, a mean of means, to 1e-12), and what was
quarantined or collapsed must be what the generator injected.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from clinical_platform.generators.sensor import SensorDelivery, generate_sensor
from spark_jobs.contracts.outputs import (
    DELIVERY,
    DUPLICATES_COLLAPSED,
    FLAG_DETAILS,
    FLAGS,
    INGESTED_RUN_ID,
    REJECT_DETAILS,
    REJECT_REASONS,
    SOURCE_ROW,
    SOURCE_SHA256,
    SOURCE_URI,
)
from spark_jobs.contracts.sensor import SENSOR
from spark_jobs.families.sensor import (
    CLOCK_CORRECTED,
    DEVICE_SWAP,
    GAP,
    SOURCE_ROW_LAST,
    SOURCE_ROWS,
    daily_features,
    minutes,
    subject_days,
)
from spark_jobs.quality.evaluate import evaluate, rejected_condition
from spark_jobs.quality.rule_sql import EvaluationContext

STUDY = "SENSOR01"
# Subject 1002 has a skewed clock on its first day, subject 1003 swaps device on its second.
SUBJECTS, DAYS = 3, 2
COLUMNS = [c.name for c in SENSOR.columns]


def evaluated(raw: DataFrame) -> DataFrame:
    types = {f.name: f.dataType.simpleString() for f in raw.schema.fields if f.name in COLUMNS}
    context = EvaluationContext(STUDY, dt.date(2030, 1, 1), None)
    return evaluate(raw, SENSOR, types, context)


def as_spark(spark: SparkSession, frame: Any) -> DataFrame:
    """A pandas frame as Spark rows (through Arrow: half a million rows in a second, not 20);
    pandas holds a Parquet null heart rate as NaN."""
    # PySpark 3.5's Arrow path cannot take pandas 3's Arrow-backed text columns.
    text = [c for c in frame.columns if pd.api.types.is_string_dtype(frame[c])]
    frame = frame.astype(dict.fromkeys(text, object))
    arrow = "spark.sql.execution.arrow.pyspark.enabled"
    spark.conf.set(arrow, "true")
    try:
        rows = spark.createDataFrame(frame)
    finally:
        spark.conf.unset(arrow)
    if dict(rows.dtypes).get("HEART_RATE") != "double":
        return rows
    return rows.withColumn("HEART_RATE", F.when(~F.isnan("HEART_RATE"), F.col("HEART_RATE")))


def kept_and_quarantined(raw: DataFrame) -> tuple[DataFrame, DataFrame]:
    rows = evaluated(raw)
    rejected = F.expr(rejected_condition(SENSOR))
    return rows.filter(~rejected), rows.filter(rejected)


def with_provenance(frame: Any, uri: str) -> Any:
    frame = frame.copy()
    frame[SOURCE_URI] = uri
    frame[SOURCE_ROW] = range(1, len(frame) + 1)
    frame[SOURCE_SHA256] = "0" * 64
    frame[DELIVERY] = f"{STUDY}/2024-01-03"
    frame[INGESTED_RUN_ID] = "run"
    return frame


# ---- small frames -------------------------------------------------------------------------


def reading(second: str, hr: float | None, steps: int, *, offset: int = 0, device: str = "A"):
    stamp = pd.Timestamp(f"2024-01-01T{second}Z") + pd.Timedelta(seconds=offset)
    return {
        "STUDYID": STUDY,
        "USUBJID": "S-1",
        "DEVICE_ID": device,
        "TIMESTAMP": stamp,
        "CLOCK_OFFSET_S": offset,
        "HEART_RATE": hr,
        "STEPS": steps,
        "ACCEL_MAG": 1.0,
    }


def small_raw(spark: SparkSession, rows: list[dict[str, Any]]) -> DataFrame:
    frame = with_provenance(pd.DataFrame(rows), "file:/landing/s-1.parquet")
    frame["CLOCK_OFFSET_S"] = frame["CLOCK_OFFSET_S"].astype("int32")
    frame["STEPS"] = frame["STEPS"].astype("int32")
    return as_spark(spark, frame)


def test_a_minute_keeps_its_parts_flags_and_source_rows(spark: SparkSession) -> None:
    # 08:00: 60 resting seconds, one sent twice, one without a pulse reading.
    rows = [reading(f"08:00:{s:02d}", 60.0 + s % 3, 0) for s in range(60)]
    rows[10]["HEART_RATE"] = None
    rows.insert(5, dict(rows[5]))
    # 08:01: 30 seconds, steps, the device swapped at second 20, one impossible pulse.
    rows += [reading(f"08:01:{s:02d}", 90.0, 2, device="A" if s < 20 else "B") for s in range(30)]
    rows[-1]["HEART_RATE"] = 255.0
    # 23:59:50 on a clock 30 s fast: the reading belongs to 23:59 of the true day.
    rows.append(reading("23:59:50", 55.0, 0, offset=30))
    kept, quarantined = kept_and_quarantined(small_raw(spark, rows))

    bad = quarantined.collect()
    assert [(r[REJECT_REASONS], r[REJECT_DETAILS]) for r in bad] == [
        (
            ["plausible_range"],
            ["plausible_range: HEART_RATE=255.0 beats/min is outside the plausible range 20-250"],
        )
    ]
    found = {r["MINUTE"].strftime("%H:%M"): r for r in minutes(kept).collect()}
    assert sorted(found) == ["08:00", "08:01", "23:59"]
    rest, walk, late = found["08:00"], found["08:01"], found["23:59"]
    assert (rest.SECONDS_WORN, rest.STEPS, rest.HR_READINGS) == (60, 0, 59)
    assert sum(60.0 + s % 3 for s in range(60) if s != 10) == rest.HR_SUM
    assert (rest.HR_MIN, rest.HR_MAX, rest.DEVICE_ID) == (60.0, 62.0, "A")
    assert rest[DUPLICATES_COLLAPSED] == 1 and rest[SOURCE_ROWS] == 61
    assert (rest[SOURCE_ROW], rest[SOURCE_ROW_LAST]) == (1, 61)
    assert rest[FLAGS] == []
    assert (walk.SECONDS_WORN, walk.STEPS, walk.HR_READINGS, walk.DEVICE_ID) == (29, 58, 29, "A,B")
    assert walk[FLAGS] == [GAP, DEVICE_SWAP]
    assert walk[FLAG_DETAILS] == ["gap: 29 of 60 seconds worn", "device_swap: A and B"]
    assert late[FLAGS] == [GAP, CLOCK_CORRECTED]
    assert late[FLAG_DETAILS][1] == "clock_corrected: device clock offsets 30 s taken off TIMESTAMP"
    assert late.CLOCK_CORRECTION_S == 30

    (day,) = subject_days(minutes(kept)).collect()
    assert dt.date(2024, 1, 1) == day.DAY
    assert (day.TOTAL_STEPS, day.WEAR_MINUTES, day.HR_MIN, day.HR_MAX) == (58, 90 / 60, 55.0, 90.0)
    readings = [60.0 + s % 3 for s in range(60) if s != 10] + [90.0] * 29 + [55.0]
    assert sum(readings) / len(readings) == day.HR_MEAN
    assert (day.RESTING_MINUTES, day.RESTING_HR) == (1, rest.HR_SUM / 59)


def test_two_readings_claiming_one_second_are_quarantined_whole(spark: SparkSession) -> None:
    rows = [reading("08:00:00", 60.0, 0), reading("08:00:00", 61.0, 0)]
    kept, quarantined = kept_and_quarantined(small_raw(spark, rows))
    assert kept.count() == 0
    assert [r[REJECT_REASONS] for r in quarantined.collect()] == [["natural_key"]] * 2


# ---- a generated delivery ---------------------------------------------------------------


@pytest.fixture(scope="module")
def delivery(tmp_path_factory: pytest.TempPathFactory) -> SensorDelivery:
    return generate_sensor(tmp_path_factory.mktemp("sensor"), SUBJECTS, DAYS, study=STUDY)


@pytest.fixture(scope="module")
def generated_raw(spark: SparkSession, delivery: SensorDelivery) -> DataFrame:
    frames = [
        with_provenance(pq.read_table(path).to_pandas(), path.resolve().as_uri())
        for path in delivery.files
    ]
    return as_spark(spark, pd.concat(frames, ignore_index=True))


@pytest.fixture(scope="module")
def generated_rows(generated_raw: DataFrame) -> Iterator[tuple[DataFrame, DataFrame]]:
    """The generated readings evaluated once, kept and quarantined."""
    rows = evaluated(generated_raw).cache()
    rejected = F.expr(rejected_condition(SENSOR))
    yield rows.filter(~rejected), rows.filter(rejected)
    rows.unpersist()


def test_quarantine_and_collapsed_rows_are_the_injected_faults(
    generated_raw: DataFrame,
    generated_rows: tuple[DataFrame, DataFrame],
    delivery: SensorDelivery,
) -> None:
    kept, quarantined = generated_rows
    reasons = {
        tuple(r[REJECT_REASONS]): r["count"]
        for r in quarantined.groupBy(REJECT_REASONS).count().collect()
    }
    faults = delivery.faults
    assert reasons == {
        ("plausible_range",): faults["heart_rate_implausible"] + faults["steps_implausible"]
    }
    collapsed = kept.agg(F.sum(DUPLICATES_COLLAPSED)).first()
    assert collapsed is not None and collapsed[0] == faults["duplicate_rows"]
    assert generated_raw.count() == kept.count() + sum(reasons.values()) + collapsed[0]


def test_subject_days_are_the_generators_truth(
    generated_rows: tuple[DataFrame, DataFrame], delivery: SensorDelivery
) -> None:
    kept, _ = generated_rows
    minute_rows = minutes(kept).cache()
    worn = minute_rows.agg(F.sum("SECONDS_WORN"), F.sum(SOURCE_ROWS)).first()
    collapsed = delivery.faults["duplicate_rows"]
    assert worn is not None and (worn[0], worn[1]) == (kept.count(), kept.count() + collapsed)
    flagged = {
        flag: minute_rows.filter(F.array_contains(FLAGS, flag)).select("USUBJID").distinct()
        for flag in (CLOCK_CORRECTED, DEVICE_SWAP)
    }
    assert [r.USUBJID for r in flagged[CLOCK_CORRECTED].collect()] == [f"{STUDY}-1002"]
    assert [r.USUBJID for r in flagged[DEVICE_SWAP].collect()] in ([], [f"{STUDY}-1003"])
    assert minute_rows.filter(F.array_contains(FLAGS, GAP)).count() > 0

    days = {(r.USUBJID, r.DAY): r for r in subject_days(minute_rows).collect()}
    assert len(days) == SUBJECTS * DAYS
    for truth in delivery.truth:
        day = days[(truth.usubjid, truth.day)]
        assert truth.total_steps == day.TOTAL_STEPS, truth
        assert truth.wear_minutes == day.WEAR_MINUTES, truth
        assert (
            truth.hr_min,
            truth.hr_max,
            truth.hr_mean,
        ) == (day.HR_MIN, day.HR_MAX, day.HR_MEAN), truth
        assert pytest.approx(truth.resting_hr, rel=1e-12) == day.RESTING_HR, truth
    minute_rows.unpersist()


def test_readings_as_csv_text_give_the_same_minutes(spark: SparkSession, tmp_path: Path) -> None:
    parquet = generate_sensor(tmp_path / "p", 1, 1, study=STUDY, file_format="parquet")
    text = generate_sensor(tmp_path / "c", 1, 1, study=STUDY, file_format="csv")
    # The first 20,000 readings: typing is what differs, and it is the same for every row.
    typed = pq.read_table(parquet.files[0]).to_pandas().head(20_000)
    as_text = pd.read_csv(text.files[0], dtype=str, keep_default_na=False).head(20_000)
    frames = {
        "parquet": as_spark(spark, with_provenance(typed, "file:/p.parquet")),
        "csv": as_spark(spark, with_provenance(as_text, "file:/c.csv")),
    }
    results = {}
    for name, raw in frames.items():
        kept, _ = kept_and_quarantined(raw)
        results[name] = sorted(
            tuple(r) for r in subject_days(minutes(kept)).drop("STUDYID").collect()
        )
    assert results["csv"] == results["parquet"]


def test_a_file_sent_again_in_a_later_batch_counts_once(spark: SparkSession) -> None:
    rows = [reading(f"08:00:{s:02d}", 60.0, 1) for s in range(60)]
    kept, _ = kept_and_quarantined(small_raw(spark, rows))
    first = minutes(kept)
    again = first.withColumn(DELIVERY, F.lit(f"{STUDY}/2024-01-10"))

    def pseudonym(study: Any, subject: Any) -> Any:
        return F.concat_ws("/", study, subject)

    (day,) = daily_features(first.unionByName(again), again, pseudonym).collect()
    assert (day.total_steps, day.wear_minutes, day.wear_day) == (60, 1.0, 1)
