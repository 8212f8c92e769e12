"""Deterministic synthetic SDTM delivery shaped like the CDISC pilot study (CDISCPILOT01).

Tests and 10x-volume benchmarks need realistic, internally consistent SDTM files of any size
without real patients; the same arguments always give byte-identical XPORT files.

What the data looks like (variables, order and value styles follow the pilot's files):
- Subjects are screen failures (15%, rounded; screening records only) or randomised to Placebo,
  Xanomeline Low Dose or Xanomeline High Dose; ~45% of randomised subjects complete the
  26-week schedule, the others stop early at a visit between week 2 and week 16.
- Visits: SCREENING 1 (VISITNUM 1, day -7), BASELINE (3, day 1), WEEK 2 (4), WEEK 4 (5),
  WEEK 8 (7), WEEK 16 (9), WEEK 26 (12). Day 1 is the first dose (RFSTDTC); there is no day 0.
- Baseline flags: VSBLFL on the BASELINE-visit vital signs, LBBLFL on the screening labs, both
  only for randomised subjects (screen failures never reach baseline).
- LBSEQ numbers chemistry and hematology together (by visit, then test code), so the natural
  key (USUBJID, LBSEQ) is unique over lbch.xpt and lbhe.xpt combined.
- Enrolment (RFSTDTC) falls in 2012-07..2014-09, moved earlier only when `today` is so early
  that a subject's records could otherwise reach `today`; every date is before `today`.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from operator import itemgetter
from pathlib import Path
from typing import cast

from clinical_platform.generators.xport_writer import write_xport

__all__ = ["GeneratedFile", "generate_sdtm"]

Value = str | float | int | None
Row = tuple[Value, ...]
Columns = tuple[tuple[str, str, str], ...]  # (name, kind, label); char lengths come from data

_C = "char"
_N = "numeric"

_SCREEN_FAIL_SHARE = 0.15
_ENROL_FIRST = date(2012, 7, 1)
_ENROL_LAST = date(2014, 9, 30)
_MAX_DAYS_AFTER_START = 250  # no record lies later than RFSTDTC + this (AE end dates)

_SITES = ("701", "703", "704", "705", "708", "709", "710", "716")
_SITE_WEIGHTS = (18, 8, 10, 8, 12, 8, 14, 10)
_RACES = ("WHITE", "BLACK OR AFRICAN AMERICAN", "ASIAN", "AMERICAN INDIAN OR ALASKA NATIVE")
_RACE_WEIGHTS = (86, 10, 2, 2)

_ARMS = (("Pbo", "Placebo"), ("Xan_Lo", "Xanomeline Low Dose"), ("Xan_Hi", "Xanomeline High Dose"))
_SCREEN_FAILURE = ("Scrnfail", "Screen Failure")

# (VISITNUM, VISIT, planned study day); index 0 is screening, index 1 baseline.
_SCHEDULE: tuple[tuple[float, str, int], ...] = (
    (1.0, "SCREENING 1", -7),
    (3.0, "BASELINE", 1),
    (4.0, "WEEK 2", 14),
    (5.0, "WEEK 4", 28),
    (7.0, "WEEK 8", 56),
    (9.0, "WEEK 16", 112),
    (12.0, "WEEK 26", 182),
)
_BASELINE_VISITNUM = 3.0
_SCREENING_VISITNUM = 1.0
_DROPOUT_LAST_VISIT = (2, 3, 4, 5)  # schedule index of the last visit of an early stopper
_DROPOUT_LAST_VISIT_WEIGHTS = (30, 30, 25, 15)
_EX_INTERVAL_VISITS = (3.0, 4.0, 9.0)  # dosing intervals start at BASELINE, WEEK 2, WEEK 16

# DSDECOD -> (DSTERM choices, weight per arm Pbo / Xan_Lo / Xan_Hi)
_DISPOSITIONS: tuple[tuple[str, tuple[str, ...], tuple[float, float, float]], ...] = (
    ("COMPLETED", ("PROTOCOL COMPLETED",), (55.0, 40.0, 40.0)),
    ("ADVERSE EVENT", ("ADVERSE EVENT",), (10.0, 36.0, 40.0)),
    (
        "WITHDRAWAL BY SUBJECT",
        ("PATIENT WITHDREW CONSENT", "CAREGIVER BURDEN", "PATIENT IS MOVING", "TOO MANY VISITS"),
        (13.0, 10.0, 8.0),
    ),
    ("LOST TO FOLLOW-UP", ("UNABLE TO CONTACT PATIENT (LOST TO FOLLOW-UP)",), (4.0, 3.0, 2.0)),
    ("PHYSICIAN DECISION", ("PHYSICIAN DECISION",), (3.0, 3.0, 3.0)),
    (
        "PROTOCOL DEVIATION",
        ("PROTOCOL VIOLATION", "PROTOCOL ENTRY CRITERIA NOT MET"),
        (4.0, 3.0, 2.0),
    ),
    ("LACK OF EFFICACY", ("LACK OF EFFICACY, PATIENT CAREGIVER PERCEPTION",), (5.0, 2.0, 2.0)),
    (
        "STUDY TERMINATED BY SPONSOR",
        ("SPONSOR DECISION (STUDY OR PATIENT DISCONTINUED BY THE SPONSOR)",),
        (5.0, 2.0, 2.0),
    ),
    ("DEATH", ("DEATH",), (1.0, 1.0, 1.0)),
)


@dataclass(frozen=True)
class GeneratedFile:
    """One written XPORT file: its name inside out_dir, its row count and its full path."""

    name: str
    rows: int
    path: Path


@dataclass(slots=True)
class _Visit:
    """One attended visit; study_day is None for screen failures (no reference start)."""

    num: float
    name: str
    planned_day: int
    day: date
    study_day: int | None
    epoch: str
    lab_time: str  # HH:MM of the specimen collection at this visit


@dataclass(slots=True)
class _Subject:
    """Everything the domains share about one subject, decided once up front."""

    usubjid: str
    subjid: str
    siteid: str
    armcd: str
    arm: str
    age: int
    sex: str
    race: str
    ethnic: str
    consent: date
    visits: list[_Visit]
    rfst: date | None = None  # first dose; None for screen failures
    end: date | None = None  # last dose = reference end = disposition date
    disposition: str = "SCREEN FAILURE"
    disposition_term: str = "SCREEN FAILURE"
    retrieval: date | None = None
    death: date | None = None


# --------------------------------------------------------------------------- public API


def generate_sdtm(
    out_dir: Path,
    subjects: int,
    *,
    study: str = "SYNTH01",
    seed: int = 20240115,
    today: date = date(2024, 1, 15),
    progress: Callable[[int, int], None] | None = None,
) -> list[GeneratedFile]:
    """Write dm, ae, vs, lbch, lbhe, ex, ds, sv .xpt files into out_dir (created if missing).

    Same arguments give byte-identical files: one random.Random(seed) stream and a header
    timestamp taken from `today`, never the wall clock. Rows are streamed to disk, so memory
    does not grow with `subjects`. `progress` is told (files written, files in all) after each
    file. Raises ValueError if subjects < 1.
    """
    if isinstance(subjects, bool) or not isinstance(subjects, int) or subjects < 1:
        raise ValueError(f"subjects must be an integer >= 1, got {subjects!r}")
    if not study:
        raise ValueError("study must be a non-empty study identifier")
    if isinstance(today, datetime):  # a datetime would not compare with the date constants
        today = today.date()
    rng = random.Random(seed)
    enrol_last = min(_ENROL_LAST, today - timedelta(days=_MAX_DAYS_AFTER_START + 1))
    enrol_first = enrol_last - (_ENROL_LAST - _ENROL_FIRST)
    streams = _Streams(rng, subjects, enrol_first, (enrol_last - enrol_first).days, study)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    created = datetime(today.year, today.month, today.day)
    written = []
    for stem, label, columns in _DATASETS:
        path = out_dir / f"{stem}.xpt"
        written.append(_write(path, stem.upper(), label, columns, streams, stem, created))
        if progress is not None:
            progress(len(written), len(_DATASETS))
    return written


class _Streams:
    """Each dataset's rows as a fresh stream, exactly as one pass over one random stream
    (plan, then lb, ae and vs draws, in that order) would give them.

    Nothing is held but the random states where each part of that stream begins, so a
    dataset can be read twice (its text lengths, then its rows) in the memory of one subject.
    The pass that finds where the draws begin also measures the text of the files it reads.
    """

    def __init__(
        self, rng: random.Random, count: int, enrol_first: date, enrol_days: int, study: str
    ) -> None:
        self.plan = (count, enrol_first, enrol_days)
        self.study = study
        self.starts = {"plan": rng.getstate()}
        self.lengths: dict[str, list[int]] = {}
        for _ in _plan_subjects(rng, *self.plan):  # where the domains' draws begin
            pass
        columns = {stem: columns for stem, _, columns in _DATASETS}
        for stem in ("lbch", "ae", "vs"):  # the order the draws were made in
            self.starts[_part(stem)] = rng.getstate()
            drawing = self._random(_part(stem))
            self.lengths[stem] = _text_lengths(columns[stem], self._drawn(stem, drawing))
            rng.setstate(drawing.getstate())

    def _random(self, part: str) -> random.Random:
        chosen = random.Random()
        chosen.setstate(self.starts[part])
        return chosen

    def rows(self, stem: str) -> Iterator[Row]:
        if _part(stem) in self.starts:  # a dataset that draws random numbers
            return self._drawn(stem, self._random(_part(stem)))
        subjects, study = _plan_subjects(self._random("plan"), *self.plan), self.study
        if stem == "dm":
            return _dm_rows(subjects, study)
        if stem == "sv":
            return _sv_rows(subjects, study)
        if stem == "ex":
            return _ex_rows(subjects, study)
        return _ds_rows(subjects, study)

    def _drawn(self, stem: str, drawing: random.Random) -> Iterator[Row]:
        subjects, study = _plan_subjects(self._random("plan"), *self.plan), self.study
        if stem == "ae":
            return _ae_rows(subjects, study, drawing)
        if stem == "vs":
            return _vs_rows(subjects, study, drawing)
        return _lb_rows(subjects, study, drawing, _CHEM if stem == "lbch" else _HEMA)


def _part(stem: str) -> str:
    """The part of the random stream a dataset draws from (both lab files share one)."""
    return "lb" if stem.startswith("lb") else stem


# --------------------------------------------------------------------------- helpers


def _study_day(day: date, reference: date) -> int:
    """SDTM study day: day 1 is the reference date and there is no day 0."""
    delta = (day - reference).days
    return delta + 1 if delta >= 0 else delta


def _clip(value: float, low: float, high: float) -> float:
    """Keep a simulated measurement inside its plausible interval."""
    return max(low, min(value, high))


def _number_text(value: float) -> str:
    """Shortest plain decimal text of a rounded result (38.0 -> "38", 0.05 -> "0.05")."""
    text = f"{value:.4f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _text_lengths(columns: Columns, rows: Iterable[Row]) -> list[int]:
    """Each text column's XPORT length: its longest value, at least 1 (numbers: unused)."""
    lengths = [1] * len(columns)
    text = [index for index, (_, kind, _) in enumerate(columns) if kind == _C]
    for row in rows:
        for index in text:
            lengths[index] = max(lengths[index], len(cast(str, row[index])))
    return lengths


def _write(
    path: Path,
    name: str,
    label: str,
    columns: Columns,
    streams: _Streams,
    stem: str,
    created: datetime,
) -> GeneratedFile:
    """Write one dataset; char lengths are the longest value (XPORT rejects longer ones), so
    its rows are streamed twice: once for the lengths (unless known), once into the file.

    Writes to a temporary name first so a failure never leaves a half-written .xpt behind.
    """
    lengths = streams.lengths.get(stem) or _text_lengths(columns, streams.rows(stem))
    variables = [
        (column, kind, 8 if kind == _N else lengths[index], column_label)
        for index, (column, kind, column_label) in enumerate(columns)
    ]
    partial = path.with_name(path.name + ".partial")
    try:
        with partial.open("wb") as out:
            count = write_xport(
                out, name, variables, streams.rows(stem), dataset_label=label, created=created
            )
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return GeneratedFile(name=path.name, rows=count, path=path)


# --------------------------------------------------------------------------- subjects


def _plan_subjects(
    rng: random.Random, count: int, enrol_first: date, enrol_days: int
) -> Iterator[_Subject]:
    """Demographics, arm, visit dates and disposition of each subject in turn."""
    sites = sorted(rng.choices(_SITES, weights=_SITE_WEIGHTS, k=count))
    dispositions = [d[0] for d in _DISPOSITIONS]
    # Exactly round(15%) screen failures; the rest randomised in permuted blocks of the arms.
    failures = set(rng.sample(range(count), round(count * _SCREEN_FAIL_SHARE)))
    arm_stream: list[int] = []
    for index, site in enumerate(sites):
        subjid = str(1001 + index)
        sex = "F" if rng.random() < 0.58 else "M"
        if rng.random() < 0.02:
            age = 90 + rng.randint(0, 5)
        else:
            age = int(_clip(round(rng.gauss(75.0, 8.0)), 50, 89))
        race = rng.choices(_RACES, weights=_RACE_WEIGHTS)[0]
        ethnic = "HISPANIC OR LATINO" if rng.random() < 0.06 else "NOT HISPANIC OR LATINO"
        anchor = enrol_first + timedelta(days=rng.randint(0, enrol_days))
        screening = anchor + timedelta(days=-7 + rng.randint(-3, 3))
        consent = screening - timedelta(days=rng.randint(0, 7))
        subject = _Subject(
            usubjid=f"01-{site}-{subjid}",
            subjid=subjid,
            siteid=site,
            armcd=_SCREEN_FAILURE[0],
            arm=_SCREEN_FAILURE[1],
            age=age,
            sex=sex,
            race=race,
            ethnic=ethnic,
            consent=consent,
            visits=[],
        )
        if index in failures:
            subject.visits.append(
                _Visit(1.0, "SCREENING 1", -7, screening, None, "SCREENING", _lab_time(rng))
            )
            yield subject
            continue

        if not arm_stream:
            arm_stream = list(range(len(_ARMS))) * 2
            rng.shuffle(arm_stream)
        arm_index = arm_stream.pop()
        subject.armcd, subject.arm = _ARMS[arm_index]
        weights = [d[2][arm_index] for d in _DISPOSITIONS]
        choice = rng.choices(range(len(dispositions)), weights=weights)[0]
        subject.disposition = dispositions[choice]
        subject.disposition_term = rng.choice(_DISPOSITIONS[choice][1])
        completed = subject.disposition == "COMPLETED"
        last = (
            len(_SCHEDULE) - 1
            if completed
            else rng.choices(_DROPOUT_LAST_VISIT, weights=_DROPOUT_LAST_VISIT_WEIGHTS)[0]
        )
        subject.rfst = anchor
        for position in range(last + 1):
            num, name, planned = _SCHEDULE[position]
            if position == 0:
                day = screening
            elif position == 1:
                day = anchor
            else:
                day = anchor + timedelta(days=planned - 1 + rng.randint(-2, 2))
            epoch = "SCREENING" if position == 0 else "TREATMENT"
            subject.visits.append(
                _Visit(num, name, planned, day, _study_day(day, anchor), epoch, _lab_time(rng))
            )
        subject.end = subject.visits[-1].day
        if subject.disposition == "DEATH":
            subject.death = subject.end
        elif not completed and rng.random() < 0.3:
            subject.retrieval = anchor + timedelta(days=181 + rng.randint(-3, 3))
        yield subject


def _lab_time(rng: random.Random) -> str:
    """Clock time of a morning-to-afternoon specimen collection."""
    return f"{rng.randint(7, 16):02d}:{rng.randint(0, 59):02d}"


# --------------------------------------------------------------------------- DM, SV


_DM_COLUMNS: Columns = (
    ("STUDYID", _C, "Study Identifier"),
    ("DOMAIN", _C, "Domain Abbreviation"),
    ("USUBJID", _C, "Unique Subject Identifier"),
    ("SUBJID", _C, "Subject Identifier for the Study"),
    ("RFSTDTC", _C, "Subject Reference Start Date/Time"),
    ("RFENDTC", _C, "Subject Reference End Date/Time"),
    ("RFXSTDTC", _C, "Date/Time of First Study Treatment"),
    ("RFXENDTC", _C, "Date/Time of Last Study Treatment"),
    ("RFICDTC", _C, "Date/Time of Informed Consent"),
    ("RFPENDTC", _C, "Date/Time of End of Participation"),
    ("DTHDTC", _C, "Date/Time of Death"),
    ("DTHFL", _C, "Subject Death Flag"),
    ("SITEID", _C, "Study Site Identifier"),
    ("AGE", _N, "Age"),
    ("AGEU", _C, "Age Units"),
    ("SEX", _C, "Sex"),
    ("RACE", _C, "Race"),
    ("ETHNIC", _C, "Ethnicity"),
    ("ARMCD", _C, "Planned Arm Code"),
    ("ARM", _C, "Description of Planned Arm"),
    ("ACTARMCD", _C, "Actual Arm Code"),
    ("ACTARM", _C, "Description of Actual Arm"),
    ("COUNTRY", _C, "Country"),
    ("DMDTC", _C, "Date/Time of Collection"),
    ("DMDY", _N, "Study Day of Collection"),
)


def _dm_rows(subjects: Iterable[_Subject], study: str) -> Iterator[Row]:
    """One row per subject; reference dates blank for screen failures, as in the pilot."""
    for s in subjects:
        screening = s.visits[0]
        if s.rfst is not None and s.end is not None:
            last = s.visits[-1]
            start, end = s.rfst.isoformat(), s.end.isoformat()
            participation = (
                s.retrieval.isoformat()
                if s.retrieval is not None
                else f"{last.day.isoformat()}T{last.lab_time}"
            )
        else:
            start = end = ""
            participation = screening.day.isoformat()
        death = s.death.isoformat() if s.death is not None else ""
        yield (
            study, "DM", s.usubjid, s.subjid, start, end, start, end, s.consent.isoformat(),
            participation, death, "Y" if death else "", s.siteid, float(s.age), "YEARS", s.sex,
            s.race, s.ethnic, s.armcd, s.arm, s.armcd, s.arm, "USA",
            screening.day.isoformat(), screening.study_day,
        )  # fmt: skip


_SV_COLUMNS: Columns = (
    ("STUDYID", _C, "Study Identifier"),
    ("DOMAIN", _C, "Domain Abbreviation"),
    ("USUBJID", _C, "Unique Subject Identifier"),
    ("VISITNUM", _N, "Visit Number"),
    ("VISIT", _C, "Visit Name"),
    ("VISITDY", _N, "Planned Study Day of Visit"),
    ("EPOCH", _C, "Epoch"),
    ("SVSTDTC", _C, "Start Date/Time of Visit"),
    ("SVENDTC", _C, "End Date/Time of Visit"),
    ("SVSTDY", _N, "Study Day of Start of Visit"),
    ("SVENDY", _N, "Study Day of End of Visit"),
    ("SVUPDES", _C, "Description of Unplanned Visit"),
)


def _sv_rows(subjects: Iterable[_Subject], study: str) -> Iterator[Row]:
    """One row per attended visit; single-day visits, so start equals end."""
    for s in subjects:
        for v in s.visits:
            text = v.day.isoformat()
            yield (
                study, "SV", s.usubjid, v.num, v.name, float(v.planned_day), v.epoch, text, text,
                v.study_day, v.study_day, "",
            )  # fmt: skip


# --------------------------------------------------------------------------- VS


_VS_COLUMNS: Columns = (
    ("STUDYID", _C, "Study Identifier"),
    ("DOMAIN", _C, "Domain Abbreviation"),
    ("USUBJID", _C, "Unique Subject Identifier"),
    ("VSSEQ", _N, "Sequence Number"),
    ("VSTESTCD", _C, "Vital Signs Test Short Name"),
    ("VSTEST", _C, "Vital Signs Test Name"),
    ("VSPOS", _C, "Vital Signs Position of Subject"),
    ("VSORRES", _C, "Result or Finding in Original Units"),
    ("VSORRESU", _C, "Original Units"),
    ("VSSTRESC", _C, "Character Result/Finding in Std Format"),
    ("VSSTRESN", _N, "Numeric Result/Finding in Standard Units"),
    ("VSSTRESU", _C, "Standard Units"),
    ("VSSTAT", _C, "Completion Status"),
    ("VSLOC", _C, "Location of Vital Signs Measurement"),
    ("VSBLFL", _C, "Baseline Flag"),
    ("VISITNUM", _N, "Visit Number"),
    ("VISIT", _C, "Visit Name"),
    ("VISITDY", _N, "Planned Study Day of Visit"),
    ("EPOCH", _C, "Epoch"),
    ("VSDTC", _C, "Date/Time of Measurements"),
    ("VSDY", _N, "Study Day of Vital Signs"),
    ("VSTPT", _C, "Planned Time Point Name"),
    ("VSTPTNUM", _N, "Planned Time Point Number"),
    ("VSELTM", _C, "Planned Elapsed Time from Time Point Ref"),
    ("VSTPTREF", _C, "Time Point Reference"),
)

# (VSPOS, VSTPT, VSTPTNUM, VSELTM, VSTPTREF, standing)
_VS_TIMEPOINTS = (
    ("SUPINE", "AFTER LYING DOWN FOR 5 MINUTES", 815.0, "PT5M", "PATIENT SUPINE", False),
    ("STANDING", "AFTER STANDING FOR 1 MINUTE", 816.0, "PT1M", "PATIENT STANDING", True),
    ("STANDING", "AFTER STANDING FOR 3 MINUTES", 817.0, "PT3M", "PATIENT STANDING", True),
)


@dataclass(frozen=True)
class _BloodPressureTest:
    """How one position-dependent vital sign is simulated (values in standard units)."""

    code: str
    name: str
    unit: str
    mean: float
    subject_sd: float
    visit_sd: float
    standing_shift: float
    low: float
    high: float
    drift: tuple[float, float, float]  # change by week 26 for Pbo, Xan_Lo, Xan_Hi


_POSITIONAL_TESTS = {
    "DIABP": _BloodPressureTest("DIABP", "Diastolic Blood Pressure", "mmHg", 77.0, 7.0, 4.0, 2.0,
                                55.0, 105.0, (0.0, -2.0, -4.0)),
    "PULSE": _BloodPressureTest("PULSE", "Pulse Rate", "beats/min", 72.0, 8.0, 4.0, 5.0, 50.0,
                                110.0, (0.0, -2.5, -5.0)),
    "SYSBP": _BloodPressureTest("SYSBP", "Systolic Blood Pressure", "mmHg", 134.0, 12.0, 6.0,
                                -3.0, 95.0, 180.0, (0.0, -4.0, -7.0)),
}  # fmt: skip
_ARM_INDEX = {code: i for i, (code, _) in enumerate(_ARMS)}
_VS_NOT_DONE_RATE = 0.0065  # per positional record outside baseline: ~0.5% of all VS rows


def _vs_rows(subjects: Iterable[_Subject], study: str, rng: random.Random) -> Iterator[Row]:
    """Vital signs per attended visit, ordered by test, visit and time point like the pilot."""
    for subject in subjects:
        rows: list[Row] = []
        _vs_subject(rows, subject, study, rng)
        yield from rows


def _vs_subject(rows: list[Row], s: _Subject, study: str, rng: random.Random) -> None:
    """Append one subject's vital signs: a per-subject level, arm drift and visit noise."""
    gauss, random_ = rng.gauss, rng.random
    arm = _ARM_INDEX.get(s.armcd)
    seq = 0
    temp_loc = "ORAL CAVITY" if random_() < 0.65 else "EAR"
    male = s.sex == "M"
    levels = {
        code: _clip(gauss(t.mean, t.subject_sd), t.low + 10.0, t.high - 15.0)
        for code, t in _POSITIONAL_TESTS.items()
    }
    weight = _clip(gauss(76.0 if male else 64.0, 11.0), 48.0, 105.0)
    height = _clip(gauss(175.0 if male else 161.0, 7.0), 146.0, 194.0)
    temp = _clip(gauss(36.6, 0.2), 36.1, 37.1)
    fractions = [
        0.0 if v.study_day is None or v.study_day <= 1 else min(v.study_day - 1, 181) / 181
        for v in s.visits
    ]
    no_timepoint: tuple[str, float | None, str, str] = ("", None, "", "")

    def add(
        code: str,
        name: str,
        position: str,
        value: float | None,
        unit: str,
        loc: str,
        v: _Visit,
        timepoint: tuple[str, float | None, str, str],
    ) -> None:
        nonlocal seq
        seq += 1
        done = value is not None
        text = _number_text(value) if value is not None else ""
        rows.append((
            study, "VS", s.usubjid, seq, code, name, position, text, unit if done else "",
            text, value, unit if done else "", "" if done else "NOT DONE", loc,
            "Y" if v.num == _BASELINE_VISITNUM else "", v.num, v.name, float(v.planned_day),
            v.epoch, v.day.isoformat(), v.study_day, timepoint[0], timepoint[1],
            timepoint[2], timepoint[3],
        ))  # fmt: skip

    for code in ("DIABP", "HEIGHT", "PULSE", "SYSBP", "TEMP", "WEIGHT"):
        if code == "HEIGHT":
            value = round(_clip(height + gauss(0.0, 0.5), 145.0, 195.0), 1)
            add(code, "Height", "", value, "cm", "", s.visits[0], no_timepoint)
        elif code == "TEMP":
            for v in s.visits:
                value = round(_clip(temp + gauss(0.0, 0.18), 35.8, 37.6), 1)
                add(code, "Temperature", "", value, "C", temp_loc, v, no_timepoint)
        elif code == "WEIGHT":
            drift = (0.0, -0.8, -1.5)[arm] if arm is not None else 0.0
            count = len(s.visits)
            weighed = (0, 1, count - 1) if count > 2 else tuple(range(count))
            for position in weighed:
                shift = drift * fractions[position]
                value = round(_clip(weight + shift + gauss(0.0, 0.6), 45.0, 110.0), 1)
                add(code, "Weight", "", value, "kg", "", s.visits[position], no_timepoint)
        else:
            t = _POSITIONAL_TESTS[code]
            drift = t.drift[arm] if arm is not None else 0.0
            level = levels[code]
            for v, fraction in zip(s.visits, fractions, strict=True):
                centre = level + drift * fraction
                for position, tpt, tptnum, eltm, tptref, standing in _VS_TIMEPOINTS:
                    timepoint = (tpt, tptnum, eltm, tptref)
                    if v.num != _BASELINE_VISITNUM and random_() < _VS_NOT_DONE_RATE:
                        add(code, t.name, position, None, t.unit, "", v, timepoint)
                        continue
                    raw = centre + (t.standing_shift if standing else 0.0)
                    value = float(round(_clip(raw + gauss(0.0, t.visit_sd), t.low, t.high)))
                    add(code, t.name, position, value, t.unit, "", v, timepoint)


# --------------------------------------------------------------------------- LB


_LB_COLUMNS: Columns = (
    ("STUDYID", _C, "Study Identifier"),
    ("DOMAIN", _C, "Domain Abbreviation"),
    ("USUBJID", _C, "Unique Subject Identifier"),
    ("LBSEQ", _N, "Sequence Number"),
    ("LBTESTCD", _C, "Lab Test or Examination Short Name"),
    ("LBTEST", _C, "Lab Test or Examination Name"),
    ("LBCAT", _C, "Category for Lab Test"),
    ("LBORRES", _C, "Result or Finding in Original Units"),
    ("LBORRESU", _C, "Original Units"),
    ("LBORNRLO", _C, "Reference Range Lower Limit in Orig Unit"),
    ("LBORNRHI", _C, "Reference Range Upper Limit in Orig Unit"),
    ("LBSTRESC", _C, "Character Result/Finding in Std Format"),
    ("LBSTRESN", _N, "Numeric Result/Finding in Standard Units"),
    ("LBSTRESU", _C, "Standard Units"),
    ("LBSTNRLO", _N, "Reference Range Lower Limit-Std Units"),
    ("LBSTNRHI", _N, "Reference Range Upper Limit-Std Units"),
    ("LBNRIND", _C, "Reference Range Indicator"),
    ("LBBLFL", _C, "Baseline Flag"),
    ("VISITNUM", _N, "Visit Number"),
    ("VISIT", _C, "Visit Name"),
    ("VISITDY", _N, "Planned Study Day of Visit"),
    ("EPOCH", _C, "Epoch"),
    ("LBDTC", _C, "Date/Time of Specimen Collection"),
    ("LBDY", _N, "Study Day of Specimen Collection"),
)


@dataclass(frozen=True)
class _LabTest:
    """One lab test: conventional (original) units, SI conversion factor and reference range."""

    code: str
    name: str
    category: str
    unit: str
    std_unit: str
    factor: float
    low: float
    high: float
    decimals: int

    @property
    def std_low(self) -> float:
        return round(self.low * self.factor, 4)

    @property
    def std_high(self) -> float:
        return round(self.high * self.factor, 4)


_CHEM = "CHEMISTRY"
_HEMA = "HEMATOLOGY"
_LAB_TESTS = (
    _LabTest("ALB", "Albumin", _CHEM, "g/dL", "g/L", 10.0, 3.3, 4.9, 1),
    _LabTest("ALP", "Alkaline Phosphatase", _CHEM, "U/L", "U/L", 1.0, 35, 115, 0),
    _LabTest("ALT", "Alanine Aminotransferase", _CHEM, "U/L", "U/L", 1.0, 6, 34, 0),
    _LabTest("AST", "Aspartate Aminotransferase", _CHEM, "U/L", "U/L", 1.0, 9, 34, 0),
    _LabTest("BILI", "Bilirubin", _CHEM, "mg/dL", "umol/L", 17.1, 0.2, 1.2, 1),
    _LabTest("CA", "Calcium", _CHEM, "mg/dL", "mmol/L", 0.2495, 8.4, 10.3, 1),
    _LabTest("CHOL", "Cholesterol", _CHEM, "mg/dL", "mmol/L", 0.02586, 156, 300, 0),
    _LabTest("CK", "Creatine Kinase", _CHEM, "U/L", "U/L", 1.0, 21, 169, 0),
    _LabTest("CL", "Chloride", _CHEM, "mEq/L", "mmol/L", 1.0, 94, 112, 0),
    _LabTest("CREAT", "Creatinine", _CHEM, "mg/dL", "umol/L", 88.4, 0.7, 1.4, 1),
    _LabTest("GGT", "Gamma Glutamyl Transferase", _CHEM, "U/L", "U/L", 1.0, 5, 50, 0),
    _LabTest("GLUC", "Glucose", _CHEM, "mg/dL", "mmol/L", 0.05551, 70, 110, 0),
    _LabTest("K", "Potassium", _CHEM, "mEq/L", "mmol/L", 1.0, 3.4, 5.4, 1),
    _LabTest("PHOS", "Phosphate", _CHEM, "mg/dL", "mmol/L", 0.3229, 2.2, 5.1, 1),
    _LabTest("PROT", "Protein", _CHEM, "g/dL", "g/L", 10.0, 6.0, 8.0, 1),
    _LabTest("SODIUM", "Sodium", _CHEM, "mEq/L", "mmol/L", 1.0, 135, 145, 0),
    _LabTest("URATE", "Urate", _CHEM, "mg/dL", "umol/L", 59.48, 2.5, 7.5, 1),
    _LabTest("UREAN", "Urea Nitrogen", _CHEM, "mg/dL", "mmol/L", 0.357, 4, 24, 0),
    _LabTest("BASO", "Basophils", _HEMA, "10^9/L", "10^9/L", 1.0, 0.0, 0.2, 2),
    _LabTest("EOS", "Eosinophils", _HEMA, "10^9/L", "10^9/L", 1.0, 0.0, 0.57, 2),
    _LabTest("HCT", "Hematocrit", _HEMA, "%", "%", 1.0, 34, 48, 0),
    _LabTest("HGB", "Hemoglobin", _HEMA, "g/dL", "mmol/L", 0.6206, 11.5, 15.8, 1),
    _LabTest("LYM", "Lymphocytes", _HEMA, "10^9/L", "10^9/L", 1.0, 0.8, 3.0, 2),
    _LabTest("MCH", "Ery. Mean Corpuscular Hemoglobin", _HEMA, "pg", "fmol", 0.06206, 26, 34, 0),
    _LabTest("MCHC", "Ery. Mean Corpuscular HGB Concentration", _HEMA, "g/dL", "mmol/L", 0.6206,
             31, 38, 0),
    _LabTest("MCV", "Ery. Mean Corpuscular Volume", _HEMA, "fL", "fL", 1.0, 80, 100, 0),
    _LabTest("MONO", "Monocytes", _HEMA, "10^9/L", "10^9/L", 1.0, 0.12, 0.92, 2),
    _LabTest("PLAT", "Platelets", _HEMA, "10^9/L", "10^9/L", 1.0, 130, 394, 0),
    _LabTest("RBC", "Erythrocytes", _HEMA, "10^12/L", "10^12/L", 1.0, 3.9, 5.5, 2),
    _LabTest("WBC", "Leukocytes", _HEMA, "10^9/L", "10^9/L", 1.0, 3.8, 10.7, 2),
)  # fmt: skip
_LAB_ORDER = tuple(sorted(_LAB_TESTS, key=lambda t: t.code))
# Subject and visit spread in units of the reference half-width: ~6% of results fall outside.
_LAB_SUBJECT_SD = 0.42
_LAB_VISIT_SD = 0.4


def _lb_rows(
    subjects: Iterable[_Subject], study: str, rng: random.Random, category: str
) -> Iterator[Row]:
    """The rows of one category (chemistry or hematology) at screening and each post-baseline
    visit; both categories draw the same numbers, so each file replays the same stream.

    LBSEQ runs over both categories (visit, then test code) so it is unique per subject across
    the two files; each file is ordered by test then visit like the pilot.
    """
    gauss = rng.gauss
    # Per-test constants: centre, half-width, floor, text of the ranges, std range.
    constants = [
        (
            t,
            (t.low + t.high) / 2,
            (t.high - t.low) / 2,
            t.low * 0.3,
            f"{t.low:.{t.decimals}f}",
            f"{t.high:.{t.decimals}f}",
            t.std_low,
            t.std_high,
        )
        for t in _LAB_ORDER
    ]
    for s in subjects:
        treated = s.rfst is not None
        offsets = [gauss(0.0, _LAB_SUBJECT_SD) for _ in constants]
        buckets: list[list[Row]] = [[] for _ in constants]
        seq = 0
        for v in s.visits:
            if v.num == _BASELINE_VISITNUM:
                continue
            dtc = f"{v.day.isoformat()}T{v.lab_time}"
            baseline = "Y" if treated and v.num == _SCREENING_VISITNUM else ""
            visitdy = float(v.planned_day)
            for k, (t, centre, half, floor, lo_text, hi_text, std_lo, std_hi) in enumerate(
                constants
            ):
                seq += 1
                value = centre + half * (offsets[k] + gauss(0.0, _LAB_VISIT_SD))
                original = round(max(floor, value), t.decimals)
                standard = round(original * t.factor, 4)
                indicator = (
                    "LOW" if standard < std_lo else "HIGH" if standard > std_hi else "NORMAL"
                )
                buckets[k].append((
                    study, "LB", s.usubjid, seq, t.code, t.name, t.category,
                    f"{original:.{t.decimals}f}", t.unit, lo_text, hi_text,
                    _number_text(standard), standard, t.std_unit, std_lo, std_hi, indicator,
                    baseline, v.num, v.name, visitdy, v.epoch, dtc, v.study_day,
                ))  # fmt: skip
        for k, (t, *_rest) in enumerate(constants):
            if t.category == category:
                yield from buckets[k]


# --------------------------------------------------------------------------- EX


_EX_COLUMNS: Columns = (
    ("STUDYID", _C, "Study Identifier"),
    ("DOMAIN", _C, "Domain Abbreviation"),
    ("USUBJID", _C, "Unique Subject Identifier"),
    ("EXSEQ", _N, "Sequence Number"),
    ("EXTRT", _C, "Name of Treatment"),
    ("EXDOSE", _N, "Dose"),
    ("EXDOSU", _C, "Dose Units"),
    ("EXDOSFRM", _C, "Dose Form"),
    ("EXDOSFRQ", _C, "Dosing Frequency per Interval"),
    ("EXROUTE", _C, "Route of Administration"),
    ("VISITNUM", _N, "Visit Number"),
    ("VISIT", _C, "Visit Name"),
    ("VISITDY", _N, "Planned Study Day of Visit"),
    ("EPOCH", _C, "Epoch"),
    ("EXSTDTC", _C, "Start Date/Time of Treatment"),
    ("EXENDTC", _C, "End Date/Time of Treatment"),
    ("EXSTDY", _N, "Study Day of Start of Treatment"),
    ("EXENDY", _N, "Study Day of End of Treatment"),
)


def _ex_rows(subjects: Iterable[_Subject], study: str) -> Iterator[Row]:
    """Contiguous dosing intervals from BASELINE, WEEK 2 and WEEK 16 to the last dose.

    Xan_Hi titrates 54 mg to 81 mg after the first interval; placebo is a true zero dose.
    """
    for s in subjects:
        if s.rfst is None or s.end is None:
            continue
        starts = [
            v for v in s.visits
            if v.num in _EX_INTERVAL_VISITS and (v.num == _BASELINE_VISITNUM or v.day < s.end)
        ]  # fmt: skip
        treatment = "PLACEBO" if s.armcd == "Pbo" else "XANOMELINE"
        for i, v in enumerate(starts):
            stop = starts[i + 1].day - timedelta(days=1) if i + 1 < len(starts) else s.end
            if s.armcd == "Pbo":
                dose = 0.0
            elif s.armcd == "Xan_Hi" and i > 0:
                dose = 81.0
            else:
                dose = 54.0
            yield (
                study, "EX", s.usubjid, i + 1, treatment, dose, "mg", "PATCH", "QD",
                "TRANSDERMAL", v.num, v.name, float(v.planned_day), "TREATMENT",
                v.day.isoformat(), stop.isoformat(), _study_day(v.day, s.rfst),
                _study_day(stop, s.rfst),
            )  # fmt: skip


# --------------------------------------------------------------------------- AE


_AE_COLUMNS: Columns = (
    ("STUDYID", _C, "Study Identifier"),
    ("DOMAIN", _C, "Domain Abbreviation"),
    ("USUBJID", _C, "Unique Subject Identifier"),
    ("AESEQ", _N, "Sequence Number"),
    ("AESPID", _C, "Sponsor-Defined Identifier"),
    ("AETERM", _C, "Reported Term for the Adverse Event"),
    ("AELLT", _C, "Lowest Level Term"),
    ("AELLTCD", _N, "Lowest Level Term Code"),
    ("AEDECOD", _C, "Dictionary-Derived Term"),
    ("AEPTCD", _N, "Preferred Term Code"),
    ("AEHLT", _C, "High Level Term"),
    ("AEHLTCD", _N, "High Level Term Code"),
    ("AEHLGT", _C, "High Level Group Term"),
    ("AEHLGTCD", _N, "High Level Group Term Code"),
    ("AEBODSYS", _C, "Body System or Organ Class"),
    ("AEBDSYCD", _N, "Body System or Organ Class Code"),
    ("AESOC", _C, "Primary System Organ Class"),
    ("AESOCCD", _N, "Primary System Organ Class Code"),
    ("AESEV", _C, "Severity/Intensity"),
    ("AESER", _C, "Serious Event"),
    ("AEACN", _C, "Action Taken with Study Treatment"),
    ("AEREL", _C, "Causality"),
    ("AEOUT", _C, "Outcome of Adverse Event"),
    ("AESCAN", _C, "Involves Cancer"),
    ("AESCONG", _C, "Congenital Anomaly or Birth Defect"),
    ("AESDISAB", _C, "Persist or Signif Disability/Incapacity"),
    ("AESDTH", _C, "Results in Death"),
    ("AESHOSP", _C, "Requires or Prolongs Hospitalization"),
    ("AESLIFE", _C, "Is Life Threatening"),
    ("AESOD", _C, "Occurred with Overdose"),
    ("EPOCH", _C, "Epoch"),
    ("AEDTC", _C, "Date/Time of Collection"),
    ("AESTDTC", _C, "Start Date/Time of Adverse Event"),
    ("AEENDTC", _C, "End Date/Time of Adverse Event"),
    ("AEDY", _N, "Study Day of Visit/Collection/Exam"),
    ("AESTDY", _N, "Study Day of Start of Adverse Event"),
    ("AEENDY", _N, "Study Day of End of Adverse Event"),
)

_GENERAL = "GENERAL DISORDERS AND ADMINISTRATION SITE CONDITIONS"
_SKIN = "SKIN AND SUBCUTANEOUS TISSUE DISORDERS"
_NERVOUS = "NERVOUS SYSTEM DISORDERS"
_CARDIAC = "CARDIAC DISORDERS"
_GI = "GASTROINTESTINAL DISORDERS"
_INFECTIONS = "INFECTIONS AND INFESTATIONS"
_PSYCHIATRIC = "PSYCHIATRIC DISORDERS"
_MUSCULOSKELETAL = "MUSCULOSKELETAL AND CONNECTIVE TISSUE DISORDERS"

# (AEDECOD = AETERM, AELLT, SOC, weight on placebo, weight on xanomeline)
_AE_TERMS: tuple[tuple[str, str, str, float, float], ...] = (
    ("APPLICATION SITE PRURITUS", "APPLICATION SITE ITCHING", _GENERAL, 3.0, 10.0),
    ("APPLICATION SITE ERYTHEMA", "APPLICATION SITE REDNESS", _GENERAL, 2.0, 8.0),
    ("APPLICATION SITE DERMATITIS", "APPLICATION SITE DERMATITIS", _GENERAL, 2.0, 5.0),
    ("APPLICATION SITE IRRITATION", "APPLICATION SITE IRRITATION", _GENERAL, 1.0, 4.0),
    ("FATIGUE", "FATIGUE", _GENERAL, 2.0, 3.0),
    ("PRURITUS", "ITCHING", _SKIN, 3.0, 6.0),
    ("ERYTHEMA", "LOCALIZED ERYTHEMA", _SKIN, 3.0, 5.0),
    ("RASH", "RASH", _SKIN, 2.0, 4.0),
    ("HYPERHIDROSIS", "SWEATING INCREASED", _SKIN, 1.0, 3.0),
    ("DIZZINESS", "DIZZINESS", _NERVOUS, 2.0, 5.0),
    ("HEADACHE", "HEADACHE", _NERVOUS, 3.0, 3.0),
    ("SYNCOPE", "SYNCOPE", _NERVOUS, 1.0, 2.0),
    ("SINUS BRADYCARDIA", "SINUS BRADYCARDIA", _CARDIAC, 1.0, 3.0),
    ("ATRIOVENTRICULAR BLOCK FIRST DEGREE", "AV BLOCK FIRST DEGREE", _CARDIAC, 1.0, 1.0),
    ("MYOCARDIAL INFARCTION", "MYOCARDIAL INFARCTION", _CARDIAC, 0.5, 1.0),
    ("DIARRHOEA", "DIARRHEA", _GI, 3.0, 3.0),
    ("NAUSEA", "NAUSEA", _GI, 2.0, 3.0),
    ("VOMITING", "VOMITING", _GI, 1.0, 2.0),
    ("NASOPHARYNGITIS", "NASOPHARYNGITIS", _INFECTIONS, 2.0, 2.0),
    ("UPPER RESPIRATORY TRACT INFECTION", "UPPER RESPIRATORY INFECTION", _INFECTIONS, 2.0, 2.0),
    ("URINARY TRACT INFECTION", "URINARY TRACT INFECTION", _INFECTIONS, 1.0, 1.0),
    ("COUGH", "COUGH", "RESPIRATORY, THORACIC AND MEDIASTINAL DISORDERS", 1.0, 2.0),
    ("AGITATION", "AGITATION", _PSYCHIATRIC, 1.0, 1.0),
    ("CONFUSIONAL STATE", "CONFUSION", _PSYCHIATRIC, 1.0, 1.0),
    ("INSOMNIA", "INSOMNIA", _PSYCHIATRIC, 1.0, 1.0),
    ("BACK PAIN", "BACK PAIN", _MUSCULOSKELETAL, 1.0, 1.0),
    ("ARTHRALGIA", "JOINT PAIN", _MUSCULOSKELETAL, 1.0, 1.0),
    ("FALL", "FALL", "INJURY, POISONING AND PROCEDURAL COMPLICATIONS", 1.0, 1.0),
    ("HYPOTENSION", "HYPOTENSION", "VASCULAR DISORDERS", 1.0, 1.0),
)
_AE_FATAL_TERM = 14  # MYOCARDIAL INFARCTION
# Placeholder MedDRA group terms in the pilot's style (HLT_0617); the codes stay missing.
_AE_GROUPS = tuple(
    (f"HLT_{(37 * i + 101) % 1000:04d}", f"HLGT_{(53 * i + 211) % 1000:04d}")
    for i in range(len(_AE_TERMS))
)
_AE_COUNT_WEIGHTS = {
    "Pbo": (30.0, 22.0, 17.0, 11.0, 8.0, 5.0, 4.0, 2.0, 1.0),
    "Xan": (14.0, 15.0, 17.0, 15.0, 12.0, 10.0, 8.0, 5.0, 4.0),
}
_AE_SEVERITIES = ("MILD", "MODERATE", "SEVERE")
_AE_SEVERITY_WEIGHTS = (60.0, 32.0, 8.0)
_AE_CAUSALITY = ("NONE", "REMOTE", "POSSIBLE", "PROBABLE")
_AE_CAUSALITY_WEIGHTS = (30.0, 20.0, 30.0, 20.0)


def _ae_rows(subjects: Iterable[_Subject], study: str, rng: random.Random) -> Iterator[Row]:
    """0-8 treatment-emergent AEs per randomised subject, plus the fatal AE of each death.

    Starts lie between first and last dose; ~2% are partial (YYYY-MM or YYYY) like the pilot.
    """
    random_, randint, choices = rng.random, rng.randint, rng.choices
    term_indexes = range(len(_AE_TERMS))
    weights_pbo = [t[3] for t in _AE_TERMS]
    weights_xan = [t[4] for t in _AE_TERMS]
    for s in subjects:
        if s.rfst is None or s.end is None:
            continue
        placebo = s.armcd == "Pbo"
        count = choices(range(9), weights=_AE_COUNT_WEIGHTS["Pbo" if placebo else "Xan"])[0]
        if count == 0 and s.disposition == "ADVERSE EVENT":
            count = 1
        span = (s.end - s.rfst).days
        # (start, end or None, term index, severity, serious, outcome, fatal)
        events: list[tuple[date, date | None, int, str, bool, str, bool]] = []
        for _ in range(count):
            term = choices(term_indexes, weights=weights_pbo if placebo else weights_xan)[0]
            start = s.rfst + timedelta(days=randint(0, span))
            severity = choices(_AE_SEVERITIES, weights=_AE_SEVERITY_WEIGHTS)[0]
            serious = random_() < 0.01
            if random_() < 0.35:
                events.append((start, None, term, severity, serious,
                               "NOT RECOVERED/NOT RESOLVED", False))  # fmt: skip
            else:
                end = start + timedelta(days=randint(0, 45))
                events.append((start, end, term, severity, serious, "RECOVERED/RESOLVED", False))
        if s.death is not None:
            start = max(s.rfst, s.death - timedelta(days=randint(0, 5)))
            events.append((start, s.death, _AE_FATAL_TERM, "SEVERE", True, "FATAL", True))
        events.sort(key=itemgetter(0))
        collection_days = [v.day for v in s.visits[1:]]
        for seq, (start, end, term, severity, serious, outcome, fatal) in enumerate(events, 1):
            decod, llt, soc, _, _ = _AE_TERMS[term]
            hlt, hlgt = _AE_GROUPS[term]
            collected = next((d for d in collection_days if d >= start), s.end)
            partial = random_()
            if partial < 0.014:
                start_text, start_day = start.isoformat()[:7], None
            elif partial < 0.02:
                start_text, start_day = start.isoformat()[:4], None
            else:
                start_text, start_day = start.isoformat(), _study_day(start, s.rfst)
            yield (
                study, "AE", s.usubjid, seq, f"E{seq:02d}", decod, llt, None, decod, None, hlt,
                None, hlgt, None, soc, None, soc, None, severity, "Y" if serious else "N", "",
                choices(_AE_CAUSALITY, weights=_AE_CAUSALITY_WEIGHTS)[0], outcome, "N", "N", "N",
                "Y" if fatal else "N", "Y" if serious and not fatal else "N", "N", "N",
                "TREATMENT", collected.isoformat(), start_text,
                end.isoformat() if end is not None else "", _study_day(collected, s.rfst),
                start_day, _study_day(end, s.rfst) if end is not None else None,
            )  # fmt: skip


# --------------------------------------------------------------------------- DS


_DS_COLUMNS: Columns = (
    ("STUDYID", _C, "Study Identifier"),
    ("DOMAIN", _C, "Domain Abbreviation"),
    ("USUBJID", _C, "Unique Subject Identifier"),
    ("DSSEQ", _N, "Sequence Number"),
    ("DSSPID", _C, "Sponsor-Defined Identifier"),
    ("DSTERM", _C, "Reported Term for the Disposition Event"),
    ("DSDECOD", _C, "Standardized Disposition Term"),
    ("DSCAT", _C, "Category for Disposition Event"),
    ("VISITNUM", _N, "Visit Number"),
    ("VISIT", _C, "Visit Name"),
    ("EPOCH", _C, "Epoch"),
    ("DSDTC", _C, "Date/Time of Collection"),
    ("DSSTDTC", _C, "Start Date/Time of Disposition Event"),
    ("DSDY", _N, "Study Day of Visit/Collection/Exam"),
    ("DSSTDY", _N, "Study Day of Start of Disposition Event"),
)


def _ds_rows(subjects: Iterable[_Subject], study: str) -> Iterator[Row]:
    """One DISPOSITION EVENT per subject plus the pilot's FINAL LAB / RETRIEVAL OTHER EVENTs."""
    for s in subjects:
        last = s.visits[-1]
        if s.rfst is None:
            text = last.day.isoformat()
            yield (
                study, "DS", s.usubjid, 1, "", "SCREEN FAILURE", "SCREEN FAILURE",
                "DISPOSITION EVENT", last.num, last.name, "SCREENING", text, text, None, None,
            )  # fmt: skip
            continue
        text = last.day.isoformat()
        day = last.study_day
        yield (
            study, "DS", s.usubjid, 1, "", s.disposition_term, s.disposition,
            "DISPOSITION EVENT", last.num, last.name, "FOLLOW-UP", text, text, day, day,
        )  # fmt: skip
        yield (
            study, "DS", s.usubjid, 2, "", "FINAL LAB VISIT", "FINAL LAB VISIT", "OTHER EVENT",
            last.num, last.name, "TREATMENT", f"{text}T{last.lab_time}", text, day, day,
        )  # fmt: skip
        if s.retrieval is not None:
            text = s.retrieval.isoformat()
            day = _study_day(s.retrieval, s.rfst)
            yield (
                study, "DS", s.usubjid, 3, "", "FINAL RETRIEVAL VISIT", "FINAL RETRIEVAL VISIT",
                "OTHER EVENT", 201.0, "RETRIEVAL", "FOLLOW-UP", text, text, day, day,
            )  # fmt: skip


_DATASETS: tuple[tuple[str, str, Columns], ...] = (
    ("dm", "Demographics", _DM_COLUMNS),
    ("ae", "Adverse Events", _AE_COLUMNS),
    ("vs", "Vital Signs", _VS_COLUMNS),
    ("lbch", "Laboratory Test Results: Chemistry", _LB_COLUMNS),
    ("lbhe", "Laboratory Test Results: Hematology", _LB_COLUMNS),
    ("ex", "Exposure", _EX_COLUMNS),
    ("ds", "Disposition", _DS_COLUMNS),
    ("sv", "Subject Visits", _SV_COLUMNS),
)
