"""Tests for the wearable-sensor generator: determinism, the faults it says it injected, and a
truth that an independent reading of its files reproduces.

The files are read back with pandas and cleaned the way the curated sensor data is specified
(clock corrected, one row per second, impossible values out), so a truth that disagreed with
the data, or a fault that was miscounted, fails here before any pipeline runs.
"""

from __future__ import annotations

import hashlib
import json
import tracemalloc
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from clinical_platform.cli import main as cli_main
from clinical_platform.generators.sensor import SECONDS_PER_DAY, SensorDelivery, generate_sensor

SUBJECTS, DAYS = 6, 2
# pandas frames are typed Any here: pandas' stubs make every column access a union.
Frame = Any


@pytest.fixture(scope="module")
def delivery(tmp_path_factory: pytest.TempPathFactory) -> SensorDelivery:
    return generate_sensor(tmp_path_factory.mktemp("sensor"), SUBJECTS, DAYS)


@pytest.fixture(scope="module")
def sent(delivery: SensorDelivery) -> Frame:
    return pd.concat([pd.read_parquet(path) for path in delivery.files], ignore_index=True)


def digests(paths: list[Path]) -> list[str]:
    return [hashlib.sha256(path.read_bytes()).hexdigest() for path in paths]


def test_same_arguments_give_the_same_bytes_and_another_seed_does_not(
    delivery: SensorDelivery, tmp_path: Path
) -> None:
    again = generate_sensor(tmp_path / "again", SUBJECTS, DAYS)
    other = generate_sensor(tmp_path / "other", SUBJECTS, DAYS, seed=7)
    assert digests(again.files) == digests(delivery.files)
    assert again.truth == delivery.truth
    assert digests(other.files) != digests(delivery.files)
    assert [p.name for p in delivery.files] == [f"sensor_{1001 + i}.parquet" for i in range(6)]


def test_every_injected_fault_is_in_the_files_as_counted(
    delivery: SensorDelivery, sent: Frame
) -> None:
    faults = delivery.faults
    expected_rows = SUBJECTS * DAYS * SECONDS_PER_DAY - faults["gap_seconds"]
    assert len(sent) == delivery.rows == expected_rows + faults["duplicate_rows"]
    assert int(sent.duplicated().sum()) == faults["duplicate_rows"] > 0
    assert int(sent["HEART_RATE"].isin([0.0, 255.0]).sum()) == faults["heart_rate_implausible"]
    assert int((sent["STEPS"] < 0).sum()) == faults["steps_implausible"] > 0
    skewed = sent[sent["CLOCK_OFFSET_S"] != 0]
    # Subjects 1 and 5 (every fourth from the second) on their first day, ahead by 90-900 s.
    assert sorted(skewed["USUBJID"].unique()) == ["SENSOR01-1002", "SENSOR01-1006"]
    assert skewed["CLOCK_OFFSET_S"].between(90, 900).all()
    assert faults["skewed_subject_days"] == 2
    devices = sent.groupby("USUBJID")["DEVICE_ID"].nunique()
    assert devices[devices > 1].index.tolist() == ["SENSOR01-1003"] and faults["device_swaps"] == 1
    assert faults["gap_seconds"] >= SUBJECTS * DAYS * 20 * 60  # a charging break every day


def cleaned(sent: Frame) -> Frame:
    """The seconds a correct curation keeps: true time, each second once, no impossible value."""
    rows = sent.drop_duplicates().copy()
    rows["second"] = rows["TIMESTAMP"] - pd.to_timedelta(rows["CLOCK_OFFSET_S"], unit="s")
    assert not rows.duplicated(["USUBJID", "second"]).any()
    impossible = rows["HEART_RATE"].isin([0.0, 255.0]) | (rows["STEPS"] < 0)
    rows = rows[~impossible]
    rows["day"] = rows["second"].dt.date
    rows["minute"] = rows["second"].dt.floor("min")
    return rows


def test_the_truth_is_what_the_files_hold_once_cleaned(
    delivery: SensorDelivery, sent: Frame
) -> None:
    rows = cleaned(sent)
    per_day = rows.groupby(["USUBJID", "day"])
    minutes = rows.groupby(["USUBJID", "day", "minute"]).agg(
        seconds=("STEPS", "size"), steps=("STEPS", "sum"), heart_rate=("HEART_RATE", "mean")
    )
    rest = minutes[(minutes["seconds"] == 60) & (minutes["steps"] == 0)]
    resting = rest.dropna().groupby(level=["USUBJID", "day"])["heart_rate"].mean()
    assert len(delivery.truth) == SUBJECTS * DAYS
    for truth in delivery.truth:
        key = (truth.usubjid, truth.day)
        day = per_day.get_group(key)
        assert truth.total_steps == int(day["STEPS"].sum())
        assert truth.wear_minutes == len(day) / 60
        assert truth.hr_min == day["HEART_RATE"].min()
        assert truth.hr_max == day["HEART_RATE"].max()
        assert truth.hr_mean == pytest.approx(day["HEART_RATE"].mean(), rel=1e-12)
        assert truth.resting_hr == pytest.approx(resting[key], rel=1e-12)
    assert {t.day for t in delivery.truth} == {date(2024, 1, 1), date(2024, 1, 2)}


def test_csv_holds_the_same_readings_as_parquet(tmp_path: Path) -> None:
    parquet = generate_sensor(tmp_path / "p", 2, 1, file_format="parquet")
    text = generate_sensor(tmp_path / "c", 2, 1, file_format="csv")
    assert text.truth == parquet.truth and text.rows == parquet.rows
    from_csv = pd.concat([pd.read_csv(p) for p in text.files], ignore_index=True)
    from_parquet = pd.concat([pd.read_parquet(p) for p in parquet.files], ignore_index=True)
    stamps = pd.to_datetime(from_csv["TIMESTAMP"], format="%Y-%m-%dT%H:%M:%SZ", utc=True)
    assert (stamps.to_numpy() == from_parquet["TIMESTAMP"].to_numpy()).all()
    for column in ("HEART_RATE", "STEPS", "ACCEL_MAG", "CLOCK_OFFSET_S", "DEVICE_ID"):
        assert from_csv[column].equals(from_parquet[column].astype(from_csv[column].dtype))


def test_bad_arguments_are_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="days must be an integer >= 1, got 0"):
        generate_sensor(tmp_path, 1, 0)
    with pytest.raises(ValueError, match="format must be parquet or csv, got 'xlsx'"):
        generate_sensor(tmp_path, 1, 1, file_format="xlsx")  # type: ignore[arg-type]


def exit_code(argv: list[str]) -> object:
    with pytest.raises(SystemExit) as exited:
        cli_main(argv)
    return exited.value.code


def test_the_command_writes_files_and_truth(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, truth = tmp_path / "out", tmp_path / "truth.json"
    argv = ["generate", "sensor", "--subjects", "2", "--days", "1", "--out", str(out)]
    assert exit_code([*argv, "--truth", str(truth), "--seed", "3"]) == 0
    printed = capsys.readouterr().out
    written = json.loads(truth.read_text())
    assert sorted(p.name for p in out.iterdir()) == ["sensor_1001.parquet", "sensor_1002.parquet"]
    assert len(written["subject_days"]) == 2
    assert f"duplicate_rows {written['faults']['duplicate_rows']}" in printed
    assert exit_code([*argv, "--days", "0"]) == 1
    assert "generate sensor: days must be an integer >= 1, got 0" in capsys.readouterr().err


def peak_bytes(out: Path, subjects: int, days: int) -> int:
    tracemalloc.start()
    try:
        generate_sensor(out, subjects, days)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_is_one_subject_day_whatever_the_size(tmp_path: Path) -> None:
    """Numpy's arrays are traced: six times the subject-days must not need much more memory
    (holding them would need six times as much; the margin is for the collector's timing)."""
    one = peak_bytes(tmp_path / "one", 1, 1)
    six = peak_bytes(tmp_path / "six", 2, 3)
    assert one > 5 * SECONDS_PER_DAY  # the day's arrays were traced at all
    assert six < 1.6 * one


def test_unwritable_places_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    taken = tmp_path / "a_file"
    taken.write_text("")
    argv = ["generate", "sensor", "--subjects", "1", "--days", "1"]
    assert exit_code([*argv, "--out", str(taken)]) == 1
    assert f"generate sensor: cannot write {taken}: File exists" in capsys.readouterr().err
    missing = tmp_path / "no" / "truth.json"
    assert exit_code([*argv, "--out", str(tmp_path / "o"), "--truth", str(missing)]) == 1
    error = capsys.readouterr().err
    assert f"--truth {missing}: its folder does not exist" in error and "Traceback" not in error
    assert not (tmp_path / "o").exists()  # refused before anything was generated
