"""Deterministic synthetic wearable-sensor delivery: one reading per second per subject-day,
with the faults real uploads carry, and the truth a correct pipeline must compute from it.

Tests need sensor data whose right answers are known exactly; benchmarks need 86 million rows
without holding them in memory. So each subject-day is drawn from its own random stream
(`SeedSequence([seed, 2, subject, day])`; the tags 1 and 2 keep
the per-subject and per-day streams apart), written as one Parquet row group (or CSV chunk) and
forgotten: memory is one subject-day, whatever the delivery's size, and the same arguments
always give the same bytes.

The signal: a subject sleeps (low heart rate, still), is awake and sedentary, or walks in bouts
(1-3 steps a second, heart rate up). Columns, as a device vendor's export would have them:
STUDYID, USUBJID, DEVICE_ID, TIMESTAMP (the device's clock, UTC, whole seconds),
CLOCK_OFFSET_S (the device's clock minus the phone's at the last sync), HEART_RATE (bpm; null
when the optical sensor had no reading), STEPS (in that second) and ACCEL_MAG (g).

Faults, each counted in `SensorDelivery.faults`:
- gaps: an evening charging break of 20-90 minutes a day, and sometimes a short dropout;
- duplicated seconds: a few readings sent twice, byte for byte;
- clock skew: on the first day of every fourth subject the device's clock runs ahead by
  90-900 s; TIMESTAMP is shifted by it and CLOCK_OFFSET_S says by how much;
- a device swapped mid-study: every fifth subject (of those with at least two days) gets a new
  DEVICE_ID from a second of the middle day onwards;
- impossible values: heart rate 0 or 255 (a sensor's floor and saturation) and a step count of
  -1, each on distinct seconds that are neither gaps nor duplicated.

The truth (`SubjectDayTruth`) is computed from the clean, true-time arrays: the seconds that
were neither missing nor impossible, each counted once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

from clinical_platform.generators.streamed import (
    FileFormat,
    GeneratedDelivery,
    require_count,
    require_format,
    write_tables,
)

__all__ = [
    "FAULT_KINDS",
    "RESTING_MINUTE_STEPS",
    "SensorDelivery",
    "SubjectDayTruth",
    "generate_sensor",
]

Progress = Callable[[int, int], None]  # (subject-days done, subject-days in all)

SECONDS_PER_DAY = 86_400
# A minute is a resting one when all its 60 seconds were worn and it has no step.
RESTING_MINUTE_STEPS = 0
FAULT_KINDS = (
    "gap_seconds",
    "duplicate_rows",
    "heart_rate_implausible",
    "steps_implausible",
    "skewed_subject_days",
    "device_swaps",
)

SCHEMA = pa.schema(
    [
        ("STUDYID", pa.string()),
        ("USUBJID", pa.string()),
        ("DEVICE_ID", pa.string()),
        ("TIMESTAMP", pa.timestamp("ms", tz="UTC")),
        ("CLOCK_OFFSET_S", pa.int32()),
        ("HEART_RATE", pa.float64()),
        ("STEPS", pa.int32()),
        ("ACCEL_MAG", pa.float64()),
    ]
)
_IMPOSSIBLE_HEART_RATES = (0.0, 255.0)
_IMPOSSIBLE_STEPS = -1


@dataclass(frozen=True)
class SubjectDayTruth:
    """What a correct pipeline computes for one subject-day (heart rates in bpm)."""

    usubjid: str
    day: date
    total_steps: int
    wear_minutes: float
    hr_min: float | None
    hr_max: float | None
    hr_mean: float | None
    resting_hr: float | None  # mean of the resting minutes' mean heart rates


@dataclass(frozen=True)
class SensorDelivery(GeneratedDelivery):
    truth: list[SubjectDayTruth] = field(default_factory=list)

    def truth_json(self) -> list[dict[str, object]]:
        return [{**asdict(t), "day": t.day.isoformat()} for t in self.truth]


@dataclass
class _Day:
    """One subject-day as generated, in true time (index = second of the day)."""

    heart_rate: np.ndarray  # float64, NaN = no reading
    steps: np.ndarray  # int32
    accel: np.ndarray  # float64
    present: np.ndarray  # bool: the device sent this second
    duplicated: np.ndarray  # seconds sent twice
    bad_heart_rate: np.ndarray  # seconds whose heart rate is replaced by an impossible one
    bad_steps: np.ndarray  # seconds whose step count is replaced by an impossible one


def generate_sensor(
    out_dir: Path,
    subjects: int,
    days: int,
    *,
    study: str = "SENSOR01",
    seed: int = 20240101,
    start: date = date(2024, 1, 1),
    file_format: FileFormat = "parquet",
    progress: Progress | None = None,
) -> SensorDelivery:
    """Write one file per subject into out_dir (created if missing) and return the truth.

    Raises ValueError for fewer than one subject or day, or an unknown format.
    """
    require_count("subjects", subjects, 1)
    require_count("days", days, 1)
    require_format(file_format)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    faults: dict[str, int] = dict.fromkeys(FAULT_KINDS, 0)
    truth: list[SubjectDayTruth] = []
    files: list[Path] = []
    rows = 0
    for subject in range(subjects):
        usubjid = f"{study}-{1001 + subject}"
        path = out_dir / f"sensor_{1001 + subject}.{file_format}"
        tables = _subject_tables(seed, subject, usubjid, study, start, days, faults, truth)
        written = write_tables(
            path,
            SCHEMA,
            tables,
            file_format,
            csv_rows=_csv_rows,
            written=_progress(progress, subject * days, subjects * days),
        )
        files.append(path)
        rows += written
    return SensorDelivery(files=files, rows=rows, faults=faults, truth=truth)


def _subject_tables(
    seed: int,
    subject: int,
    usubjid: str,
    study: str,
    start: date,
    days: int,
    faults: dict[str, int],
    truth: list[SubjectDayTruth],
) -> Iterator[pa.Table]:
    """Each day of one subject as the device sent it; the truth and faults are recorded as
    each day is drawn."""
    resting = np.random.default_rng([seed, 1, subject]).uniform(55.0, 75.0)
    swap_day = days // 2 if days >= 2 and subject % 5 == 2 else None
    for index in range(days):
        rng = np.random.default_rng([seed, 2, subject, index])
        day = start + timedelta(days=index)
        drawn = _draw_day(rng, resting)
        offset = int(rng.integers(90, 901)) if index == 0 and subject % 4 == 1 else 0
        swap_second = int(rng.integers(36_000, 50_000)) if index == swap_day else None
        devices = _devices(subject, index, swap_day, swap_second)
        truth.append(_truth(usubjid, day, drawn))
        _count_faults(faults, drawn, offset, swap_second)
        yield _sent(drawn, study, usubjid, day, offset, devices)
        del drawn, devices  # before the next day is drawn: memory stays one subject-day


def _draw_day(rng: np.random.Generator, resting: float) -> _Day:
    """A day's clean signal, then where its faults fall."""
    second = np.arange(SECONDS_PER_DAY)
    wake, sleep = int(rng.integers(6 * 3600, 8 * 3600)), int(rng.integers(22 * 3600, 24 * 3600))
    awake = (second >= wake) & (second < sleep)
    walking = np.zeros(SECONDS_PER_DAY, dtype=bool)
    for _ in range(int(rng.poisson(12))):
        begin = int(rng.integers(wake, max(wake + 1, sleep - 60)))
        walking[begin : begin + int(rng.integers(120, 1800))] = True
    walking &= awake
    steps = np.where(walking, rng.binomial(3, 0.6, SECONDS_PER_DAY), 0).astype(np.int32)
    level = np.where(walking, resting + 30.0, np.where(awake, resting + 5.0, resting - 5.0))
    heart_rate = np.clip(np.rint(level + rng.normal(0.0, 2.0, SECONDS_PER_DAY)), 35, 200)
    heart_rate[rng.random(SECONDS_PER_DAY) < 0.002] = np.nan
    accel = np.where(walking, 1.0 + np.abs(rng.normal(0.3, 0.1, SECONDS_PER_DAY)), 1.0)
    accel = np.round(accel + rng.normal(0.0, 0.01, SECONDS_PER_DAY), 3)
    present = np.ones(SECONDS_PER_DAY, dtype=bool)
    charge = int(rng.integers(19 * 3600, 21 * 3600))
    present[charge : charge + 60 * int(rng.integers(20, 91))] = False
    if rng.random() < 0.3:
        dropout = int(rng.integers(0, SECONDS_PER_DAY - 300))
        present[dropout : dropout + int(rng.integers(60, 301))] = False
    chosen = rng.choice(np.flatnonzero(present), size=int(rng.integers(3, 21)) + 6, replace=False)
    bad_hr_count = int(rng.integers(1, 4))
    return _Day(
        heart_rate=heart_rate,
        steps=steps,
        accel=accel,
        present=present,
        duplicated=np.sort(chosen[bad_hr_count + 3 :]),
        bad_heart_rate=np.sort(chosen[:bad_hr_count]),
        bad_steps=np.sort(chosen[bad_hr_count : bad_hr_count + int(rng.integers(0, 3))]),
    )


def _devices(subject: int, index: int, swap_day: int | None, swap_second: int | None) -> np.ndarray:
    """The device of each second: the first one, or the replacement after a swap."""
    first, second = f"WD-{1001 + subject}-A", f"WD-{1001 + subject}-B"
    chosen = np.full(
        SECONDS_PER_DAY, second if swap_day is not None and index > swap_day else first
    )
    if swap_second is not None:
        chosen[swap_second:] = second
    return chosen.astype(object)


def _truth(usubjid: str, day: date, drawn: _Day) -> SubjectDayTruth:
    valid = drawn.present.copy()
    valid[drawn.bad_heart_rate] = False
    valid[drawn.bad_steps] = False
    heart_rate = drawn.heart_rate[valid & ~np.isnan(drawn.heart_rate)]
    minutes = valid.reshape(-1, 60)
    steps = np.where(valid, drawn.steps, 0).reshape(-1, 60)
    minute_hr = np.where(minutes, drawn.heart_rate.reshape(-1, 60), np.nan)
    rest = minutes.all(axis=1) & (steps.sum(axis=1) == RESTING_MINUTE_STEPS)
    rest &= ~np.isnan(minute_hr).all(axis=1)
    resting = np.nanmean(minute_hr[rest], axis=1) if rest.any() else np.array([])
    return SubjectDayTruth(
        usubjid=usubjid,
        day=day,
        total_steps=int(steps.sum()),
        wear_minutes=int(valid.sum()) / 60.0,
        hr_min=float(heart_rate.min()) if heart_rate.size else None,
        hr_max=float(heart_rate.max()) if heart_rate.size else None,
        hr_mean=float(heart_rate.mean()) if heart_rate.size else None,
        resting_hr=float(resting.mean()) if resting.size else None,
    )


def _count_faults(
    faults: dict[str, int], drawn: _Day, offset: int, swap_second: int | None
) -> None:
    faults["gap_seconds"] += int((~drawn.present).sum())
    faults["duplicate_rows"] += len(drawn.duplicated)
    faults["heart_rate_implausible"] += len(drawn.bad_heart_rate)
    faults["steps_implausible"] += len(drawn.bad_steps)
    faults["skewed_subject_days"] += int(offset != 0)
    faults["device_swaps"] += int(swap_second is not None)


def _sent(
    drawn: _Day, study: str, usubjid: str, day: date, offset: int, devices: np.ndarray
) -> pa.Table:
    """The rows the device sent: present seconds, duplicates repeated next to their first
    copy, impossible values in place, timestamps on the device's (possibly skewed) clock."""
    heart_rate = drawn.heart_rate.copy()
    heart_rate[drawn.bad_heart_rate] = np.resize(_IMPOSSIBLE_HEART_RATES, len(drawn.bad_heart_rate))
    steps = drawn.steps.copy()
    steps[drawn.bad_steps] = _IMPOSSIBLE_STEPS
    repeats = drawn.present.astype(np.int64)
    repeats[drawn.duplicated] = 2
    second = np.repeat(np.arange(SECONDS_PER_DAY), repeats)
    midnight = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())
    stamps = (midnight + second + offset) * 1000
    count = len(second)
    heart = heart_rate[second]
    return pa.table(
        [
            pa.array([study] * count, pa.string()),
            pa.array([usubjid] * count, pa.string()),
            pa.array(devices[second], pa.string()),
            pa.array(stamps, pa.timestamp("ms", tz="UTC")),
            pa.array(np.full(count, offset, dtype=np.int32)),
            pa.array(heart, pa.float64(), mask=np.isnan(heart)),
            pa.array(steps[second]),
            pa.array(drawn.accel[second]),
        ],
        schema=SCHEMA,
    )


def _progress(progress: Progress | None, before: int, total: int) -> Callable[[int], None]:
    """A subject's days written, told as subject-days written of the whole delivery."""
    return lambda days: progress(before + days, total) if progress is not None else None


def _csv_rows(table: pa.Table) -> Iterator[tuple[object, ...]]:
    """ISO 8601 timestamps with Z; missing heart rates as empty cells; numbers as written."""
    columns = table.to_pydict()
    for values in zip(*columns.values(), strict=True):
        study, usubjid, device, stamp, offset, heart_rate, steps, accel = values
        yield (
            study,
            usubjid,
            device,
            stamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
            offset,
            "" if heart_rate is None else f"{heart_rate:g}",
            steps,
            repr(accel),
        )
