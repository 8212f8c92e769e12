"""Tests for the synthetic SDTM generator: determinism, pilot shape and internal consistency.

Files are read back with pyreadstat (plain lists, missing numbers as None) and checked value by
value, so a wrong flag, key or date fails a test rather than only a row count.
"""

from __future__ import annotations

import hashlib
import os
import re
import tracemalloc
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pyreadstat
import pytest

from clinical_platform.generators import xport_writer
from clinical_platform.generators.sdtm import GeneratedFile, generate_sdtm

PILOT_DIR = Path(
    os.environ.get(
        "CDISC_PILOT_DIR",
        Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "cdisc_pilot",
    )
)
STEMS = ("dm", "ae", "vs", "lbch", "lbhe", "ex", "ds", "sv")
TODAY = date(2024, 1, 15)
SMALL = 40
SCHEDULE = [(1.0, "SCREENING 1", -7.0), (3.0, "BASELINE", 1.0), (4.0, "WEEK 2", 14.0),
            (5.0, "WEEK 4", 28.0), (7.0, "WEEK 8", 56.0), (9.0, "WEEK 16", 112.0),
            (12.0, "WEEK 26", 182.0)]  # fmt: skip
EXPECTED_COLUMNS: dict[str, tuple[str, ...]] = {
    "dm": ("STUDYID", "DOMAIN", "USUBJID", "SUBJID", "RFSTDTC", "RFENDTC", "RFXSTDTC",
           "RFXENDTC", "RFICDTC", "RFPENDTC", "DTHDTC", "DTHFL", "SITEID", "AGE", "AGEU", "SEX",
           "RACE", "ETHNIC", "ARMCD", "ARM", "ACTARMCD", "ACTARM", "COUNTRY", "DMDTC", "DMDY"),
    "ae": ("STUDYID", "DOMAIN", "USUBJID", "AESEQ", "AESPID", "AETERM", "AELLT", "AELLTCD",
           "AEDECOD", "AEPTCD", "AEHLT", "AEHLTCD", "AEHLGT", "AEHLGTCD", "AEBODSYS", "AEBDSYCD",
           "AESOC", "AESOCCD", "AESEV", "AESER", "AEACN", "AEREL", "AEOUT", "AESCAN", "AESCONG",
           "AESDISAB", "AESDTH", "AESHOSP", "AESLIFE", "AESOD", "EPOCH", "AEDTC", "AESTDTC",
           "AEENDTC", "AEDY", "AESTDY", "AEENDY"),
    "vs": ("STUDYID", "DOMAIN", "USUBJID", "VSSEQ", "VSTESTCD", "VSTEST", "VSPOS", "VSORRES",
           "VSORRESU", "VSSTRESC", "VSSTRESN", "VSSTRESU", "VSSTAT", "VSLOC", "VSBLFL",
           "VISITNUM", "VISIT", "VISITDY", "EPOCH", "VSDTC", "VSDY", "VSTPT", "VSTPTNUM",
           "VSELTM", "VSTPTREF"),
    "lbch": ("STUDYID", "DOMAIN", "USUBJID", "LBSEQ", "LBTESTCD", "LBTEST", "LBCAT", "LBORRES",
             "LBORRESU", "LBORNRLO", "LBORNRHI", "LBSTRESC", "LBSTRESN", "LBSTRESU", "LBSTNRLO",
             "LBSTNRHI", "LBNRIND", "LBBLFL", "VISITNUM", "VISIT", "VISITDY", "EPOCH", "LBDTC",
             "LBDY"),
    "ex": ("STUDYID", "DOMAIN", "USUBJID", "EXSEQ", "EXTRT", "EXDOSE", "EXDOSU", "EXDOSFRM",
           "EXDOSFRQ", "EXROUTE", "VISITNUM", "VISIT", "VISITDY", "EPOCH", "EXSTDTC", "EXENDTC",
           "EXSTDY", "EXENDY"),
    "ds": ("STUDYID", "DOMAIN", "USUBJID", "DSSEQ", "DSSPID", "DSTERM", "DSDECOD", "DSCAT",
           "VISITNUM", "VISIT", "EPOCH", "DSDTC", "DSSTDTC", "DSDY", "DSSTDY"),
    "sv": ("STUDYID", "DOMAIN", "USUBJID", "VISITNUM", "VISIT", "VISITDY", "EPOCH", "SVSTDTC",
           "SVENDTC", "SVSTDY", "SVENDY", "SVUPDES"),
}  # fmt: skip
EXPECTED_COLUMNS["lbhe"] = EXPECTED_COLUMNS["lbch"]
NUMERIC_COLUMNS = {
    "AGE", "DMDY", "AESEQ", "AELLTCD", "AEPTCD", "AEHLTCD", "AEHLGTCD", "AEBDSYCD", "AESOCCD",
    "AEDY", "AESTDY", "AEENDY", "VSSEQ", "VSSTRESN", "VISITNUM", "VISITDY", "VSDY", "VSTPTNUM",
    "LBSEQ", "LBSTRESN", "LBSTNRLO", "LBSTNRHI", "LBDY", "EXSEQ", "EXDOSE", "EXSTDY", "EXENDY",
    "DSSEQ", "DSDY", "DSSTDY", "SVSTDY", "SVENDY",
}  # fmt: skip
NATURAL_KEYS = {
    "dm": ["USUBJID"],
    "ae": ["USUBJID", "AESEQ"],
    "vs": ["USUBJID", "VSSEQ"],
    "ex": ["USUBJID", "EXSEQ"],
    "ds": ["USUBJID", "DSSEQ"],
    "sv": ["USUBJID", "VISITNUM"],
}
ISO_DATE = re.compile(r"^\d{4}(-\d{2}(-\d{2}(T\d{2}:\d{2})?)?)?$")


Record = dict[str, Any]


class Table:
    """One XPORT file read back: column names, readstat types and one dict per row."""

    def __init__(self, path: Path) -> None:
        data, meta = pyreadstat.read_xport(str(path), encoding="iso-8859-1", output_format="dict")
        self.columns: tuple[str, ...] = tuple(data)
        self.types: dict[str, str] = dict(meta.readstat_variable_types)
        self.data: dict[str, list[Any]] = {name: list(values) for name, values in data.items()}
        self.rows: list[Record] = [
            dict(zip(self.columns, values, strict=True))
            for values in zip(*data.values(), strict=True)
        ]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, column: str) -> list[Any]:
        return self.data[column]

    def where(self, **equal: Any) -> list[Record]:
        return [r for r in self.rows if all(r[k] == v for k, v in equal.items())]


class Delivery:
    """One generated delivery, one Table per file."""

    def __init__(self, files: list[GeneratedFile]) -> None:
        self.files = {f.name.removesuffix(".xpt"): f for f in files}
        self.tables = {stem: Table(f.path) for stem, f in self.files.items()}
        self.dm = {r["USUBJID"]: r for r in self.tables["dm"].rows}

    def __getitem__(self, stem: str) -> Table:
        return self.tables[stem]

    @property
    def lb(self) -> list[Record]:
        return self.tables["lbch"].rows + self.tables["lbhe"].rows

    def treated(self) -> set[str]:
        return {u for u, r in self.dm.items() if r["ARMCD"] != "Scrnfail"}

    def screen_failures(self) -> set[str]:
        return {u for u, r in self.dm.items() if r["ARMCD"] == "Scrnfail"}


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Delivery:
    return Delivery(generate_sdtm(tmp_path_factory.mktemp("small"), SMALL, today=TODAY))


@pytest.fixture(scope="module")
def pilot_sized(tmp_path_factory: pytest.TempPathFactory) -> Delivery:
    return Delivery(generate_sdtm(tmp_path_factory.mktemp("pilot_sized"), 306, study="SYN306"))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def dtc_values(delivery: Delivery) -> Iterator[tuple[str, str, str]]:
    """(file, column, value) of every non-blank --DTC cell."""
    for stem, table in delivery.tables.items():
        for column in table.columns:
            if column.endswith("DTC"):
                for value in table[column]:
                    if value:
                        yield stem, column, value


def study_day(day: str, reference: str) -> int:
    delta = (date.fromisoformat(day[:10]) - date.fromisoformat(reference)).days
    return delta + 1 if delta >= 0 else delta


def assert_unique(keys: Iterable[tuple[Any, ...]], what: str) -> None:
    duplicated = [k for k, n in Counter(keys).items() if n > 1]
    assert not duplicated, f"{what}: duplicate keys {duplicated[:5]}"


def share(records: list[Record], predicate: Any) -> float:
    return sum(1 for r in records if predicate(r)) / len(records)


# --------------------------------------------------------------------------- API


def test_returns_one_file_per_domain_in_order(small: Delivery) -> None:
    assert list(small.files) == list(STEMS)
    for stem, generated in small.files.items():
        assert generated.name == f"{stem}.xpt"
        assert generated.path.is_file()
        assert generated.path.stat().st_size % 80 == 0
    assert not list(small.files["dm"].path.parent.glob("*.partial"))


def test_same_arguments_give_identical_bytes(tmp_path: Path) -> None:
    first = generate_sdtm(tmp_path / "a", SMALL, seed=7)
    second = generate_sdtm(tmp_path / "b", SMALL, seed=7)
    assert [f.name for f in first] == [f.name for f in second]
    assert [f.rows for f in first] == [f.rows for f in second]
    assert [sha256(f.path) for f in first] == [sha256(f.path) for f in second]


def test_other_seed_gives_other_bytes(tmp_path: Path) -> None:
    first = generate_sdtm(tmp_path / "a", SMALL, seed=7)
    other = generate_sdtm(tmp_path / "b", SMALL, seed=8)
    for a, b in zip(first, other, strict=True):
        assert sha256(a.path) != sha256(b.path), a.name


# sha256 of generate_sdtm(out, 5, study="ABC-123", seed=1) as the generator wrote it when it
# held every row in memory (git 6766b07): streaming must not change one byte of any delivery.
BEFORE_STREAMING = {
    "dm.xpt": "f35f34a769639c91952190cd3614796a2789fa72403fba0a358ed5afe1005786",
    "ae.xpt": "7fc7d90e2f953d1ee0cc19b344601e4f6d41e3fa508667866c9a8d2c91edf0ff",
    "vs.xpt": "ce241b02e5d43674e2a708a6e38d3c8cac7c2a142b507c7734c701595b3948a4",
    "lbch.xpt": "163dc76bef3f30f1a17c0f7e0c6d27c65ded4ea2fd1caef85e6c42117ef16fc0",
    "lbhe.xpt": "e773584484f43aa598022c086cdbc13246e90e0daf782065cee1cf6b31355da2",
    "ex.xpt": "c5bbf3d70f64add787e4d7231b6014c3745ac5a7d7e0b1781dfe29266bc9c74d",
    "ds.xpt": "5ff46db74d752620ed8fb76fbd2ebbd002d05b53ede6737c6ad88774699e2bce",
    "sv.xpt": "8ed09855b3005dfba743347e963ef245a13267ce5424e9898756b708e97a9686",
}


# The same for the demo's delivery, generate_sdtm(out, 120): deaths, retrievals and partial
# dates, which 5 subjects do not reach.
DEMO_BEFORE_STREAMING = {
    "dm.xpt": "322802e9130c9cadc48412cd9142f10da41c1f6d94f1fe073dfa99687b84f8ee",
    "ae.xpt": "e03c7f27a486d7f1e27bf1903158a6501bb2b2eacd570dcb982b9ce8a9feba3b",
    "vs.xpt": "2d2cdbd386c6e0a9bdecee7d5cf32780cd412080c86fe48bed91d9d9ea13b234",
    "lbch.xpt": "c4bdc745018cd60a832797dc82e3e8d27600d88e4f63e7f042c5e40b5780014d",
    "lbhe.xpt": "9d679c07a0011fb032d738c895b035b3ee6be74cdc801020f6bd49c7d3a617d0",
    "ex.xpt": "83e9b0e15fb14a5babaf0b633d3c6ea7ac1a540e5edea2d1bb36e5d02ad4b4d3",
    "ds.xpt": "21940091d19622f597d30f8771e1ba4917b865449cfc56747cfe0ff707c12925",
    "sv.xpt": "31cba8b9f6e603c9508f339fbfa794d7782a482ba47e738cd6bf08d9807f0164",
}


@pytest.mark.parametrize(
    ("subjects", "study", "seed", "expected"),
    [(5, "ABC-123", 1, BEFORE_STREAMING), (120, "SYNTH01", 20240115, DEMO_BEFORE_STREAMING)],
)
def test_streaming_writes_the_bytes_the_in_memory_generator_wrote(
    tmp_path: Path, subjects: int, study: str, seed: int, expected: dict[str, str]
) -> None:
    files = generate_sdtm(tmp_path, subjects, study=study, seed=seed)
    assert {f.name: sha256(f.path) for f in files} == expected


def peak_bytes(out: Path, subjects: int) -> int:
    tracemalloc.start()
    try:
        generate_sdtm(out, subjects)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_subjects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows are streamed twice (text lengths, then the file), never held: eight times the
    subjects need about the same memory (holding the rows needed about eight times as much).
    The writer's 1 MiB output buffer is made small, or it would be all that is measured."""
    monkeypatch.setattr(xport_writer, "_FLUSH_BYTES", 1 << 14)
    few, many = peak_bytes(tmp_path / "few", 4), peak_bytes(tmp_path / "many", 32)
    assert many < 1.25 * few


def test_header_timestamp_comes_from_today_not_the_clock(tmp_path: Path) -> None:
    dm = generate_sdtm(tmp_path, 3, today=date(2020, 2, 29))[0]
    assert b"29FEB20:00:00:00" in dm.path.read_bytes()[:400]


@pytest.mark.parametrize("subjects", [0, -1])
def test_rejects_fewer_than_one_subject(tmp_path: Path, subjects: int) -> None:
    with pytest.raises(ValueError, match="subjects") as error:
        generate_sdtm(tmp_path / "out", subjects)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "out").exists()


def test_one_subject_writes_readable_files(tmp_path: Path) -> None:
    delivery = Delivery(generate_sdtm(tmp_path, 1))
    assert len(delivery["dm"]) == 1
    for stem, generated in delivery.files.items():
        assert len(delivery[stem]) == generated.rows, stem


# --------------------------------------------------------------------------- shape


def test_row_counts_match_returned_counts(small: Delivery) -> None:
    for stem, generated in small.files.items():
        assert len(small[stem]) == generated.rows, stem
    assert small.files["vs"].rows > SMALL * 20


@pytest.mark.parametrize("stem", STEMS)
def test_columns_and_types(small: Delivery, stem: str) -> None:
    table = small[stem]
    assert table.columns == EXPECTED_COLUMNS[stem]
    for column in EXPECTED_COLUMNS[stem]:
        expected = "double" if column in NUMERIC_COLUMNS else "string"
        assert table.types[column] == expected, column


@pytest.mark.skipif(not PILOT_DIR.is_dir(), reason="CDISC pilot files not available")
@pytest.mark.parametrize("stem", STEMS)
def test_columns_and_types_match_the_pilot(small: Delivery, stem: str) -> None:
    _, pilot = pyreadstat.read_xport(
        str(PILOT_DIR / f"{stem}.xpt"), encoding="iso-8859-1", metadataonly=True
    )
    assert list(small[stem].columns) == list(pilot.column_names)
    assert small[stem].types == dict(pilot.readstat_variable_types)


def test_identifiers(small: Delivery) -> None:
    domains = {"dm": "DM", "ae": "AE", "vs": "VS", "lbch": "LB", "lbhe": "LB", "ex": "EX",
               "ds": "DS", "sv": "SV"}  # fmt: skip
    for stem, table in small.tables.items():
        assert set(table["STUDYID"]) <= {"SYNTH01"}, stem
        assert set(table["DOMAIN"]) <= {domains[stem]}, stem
        assert len(table) == 0 or set(table["DOMAIN"]) == {domains[stem]}, stem
    for usubjid, row in small.dm.items():
        assert re.fullmatch(r"01-\d{3}-\d{4}", usubjid)
        assert usubjid == f"01-{row['SITEID']}-{row['SUBJID']}"
    assert 2 <= len({r["SITEID"] for r in small.dm.values()}) <= 10


def test_study_argument_is_used_everywhere(tmp_path: Path) -> None:
    delivery = Delivery(generate_sdtm(tmp_path, 5, study="ABC-123"))
    for stem, table in delivery.tables.items():
        assert set(table["STUDYID"]) <= {"ABC-123"}, stem
    assert set(delivery["dm"]["STUDYID"]) == {"ABC-123"}


# --------------------------------------------------------------------------- keys


def test_dm_has_one_row_per_subject(small: Delivery) -> None:
    assert len(small["dm"]) == SMALL
    assert len(small.dm) == SMALL


def test_natural_keys_are_unique(small: Delivery) -> None:
    for stem, key in NATURAL_KEYS.items():
        assert_unique((tuple(r[k] for k in key) for r in small[stem].rows), stem)
    lb = small.lb
    assert len(lb) == small.files["lbch"].rows + small.files["lbhe"].rows
    assert_unique(((r["USUBJID"], r["LBSEQ"]) for r in lb), "lbch + lbhe")
    assert all(r["LBSEQ"] == int(r["LBSEQ"]) for r in lb)


def test_sequence_numbers_run_from_one(small: Delivery) -> None:
    checks = [
        (stem, column, small[stem].rows)
        for stem, column in (("ae", "AESEQ"), ("vs", "VSSEQ"), ("ex", "EXSEQ"), ("ds", "DSSEQ"))
    ]
    checks.append(("lb", "LBSEQ", small.lb))
    for stem, column, rows in checks:
        per_subject: dict[str, list[float]] = {}
        for r in rows:
            per_subject.setdefault(r["USUBJID"], []).append(r[column])
        for usubjid, seq in per_subject.items():
            assert sorted(seq) == list(range(1, len(seq) + 1)), (stem, usubjid)


def test_every_subject_exists_in_dm(small: Delivery) -> None:
    subjects = set(small.dm)
    for stem, table in small.tables.items():
        assert set(table["USUBJID"]) <= subjects, stem
    for stem in ("sv", "vs", "lbch", "lbhe", "ds"):
        assert set(small[stem]["USUBJID"]) == subjects, stem


# --------------------------------------------------------------------------- dates


def test_dates_are_iso_8601_and_before_today(small: Delivery) -> None:
    seen = 0
    for stem, column, value in dtc_values(small):
        assert ISO_DATE.match(value), (stem, column, value)
        if len(value) >= 10:
            assert datetime.fromisoformat(value).date() < TODAY, (stem, column, value)
        else:
            assert value < TODAY.isoformat()[: len(value)], (stem, column, value)
        seen += 1
    assert seen > 1000


def test_early_today_moves_all_dates_before_it(tmp_path: Path) -> None:
    today = date(2013, 3, 1)
    delivery = Delivery(generate_sdtm(tmp_path, 30, today=today))
    latest = max(value[:10] for _, _, value in dtc_values(delivery))
    assert latest < today.isoformat()


def test_default_enrolment_window(small: Delivery) -> None:
    starts = [r["RFSTDTC"] for r in small.dm.values() if r["RFSTDTC"]]
    assert starts
    assert all("2012-07-01" <= d <= "2014-09-30" for d in starts)


def test_end_never_before_start(small: Delivery) -> None:
    pairs = (("dm", "RFSTDTC", "RFENDTC"), ("dm", "RFXSTDTC", "RFXENDTC"),
             ("dm", "RFENDTC", "RFPENDTC"), ("ae", "AESTDTC", "AEENDTC"),
             ("ex", "EXSTDTC", "EXENDTC"), ("sv", "SVSTDTC", "SVENDTC"),
             ("ds", "DSSTDTC", "DSDTC"))  # fmt: skip
    for stem, start_column, end_column in pairs:
        for r in small[stem].rows:
            start, end = r[start_column], r[end_column]
            if start and end:
                shared = min(len(start), len(end), 10)
                assert end[:shared] >= start[:shared], (stem, start, end)


def test_study_days_follow_rfstdtc_without_day_zero(small: Delivery) -> None:
    checks = (("sv", "SVSTDTC", "SVSTDY"), ("sv", "SVENDTC", "SVENDY"), ("vs", "VSDTC", "VSDY"),
              ("lbch", "LBDTC", "LBDY"), ("lbhe", "LBDTC", "LBDY"), ("ex", "EXSTDTC", "EXSTDY"),
              ("ex", "EXENDTC", "EXENDY"), ("ae", "AEDTC", "AEDY"), ("ae", "AEENDTC", "AEENDY"),
              ("ds", "DSSTDTC", "DSSTDY"), ("dm", "DMDTC", "DMDY"))  # fmt: skip
    for stem, dtc, dy in checks:
        for r in small[stem].rows:
            reference = small.dm[r["USUBJID"]]["RFSTDTC"]
            if reference and r[dtc]:
                assert r[dy] == study_day(r[dtc], reference), (stem, r["USUBJID"], r[dtc])
                assert r[dy] != 0
            else:
                assert r[dy] is None, (stem, r["USUBJID"])


# --------------------------------------------------------------------------- domains


def test_dm_values(small: Delivery) -> None:
    arms = {"Pbo": "Placebo", "Xan_Lo": "Xanomeline Low Dose", "Xan_Hi": "Xanomeline High Dose",
            "Scrnfail": "Screen Failure"}  # fmt: skip
    races = {"WHITE", "BLACK OR AFRICAN AMERICAN", "ASIAN", "AMERICAN INDIAN OR ALASKA NATIVE"}
    for r in small.dm.values():
        assert arms[r["ARMCD"]] == r["ARM"]
        assert (r["ACTARMCD"], r["ACTARM"]) == (r["ARMCD"], r["ARM"])
        assert r["SEX"] in {"M", "F"} and r["RACE"] in races
        assert (r["AGEU"], r["COUNTRY"]) == ("YEARS", "USA")
        assert 50 <= r["AGE"] <= 99 and r["AGE"] == int(r["AGE"])
        reference = (r["RFSTDTC"], r["RFENDTC"], r["RFXSTDTC"], r["RFXENDTC"])
        if r["ARMCD"] == "Scrnfail":
            assert reference == ("", "", "", "")
            assert r["DMDY"] is None
        else:
            assert all(reference)
            assert r["RFXSTDTC"] == r["RFSTDTC"]
            assert r["DMDY"] < 0
        assert (r["DTHFL"] == "Y") == bool(r["DTHDTC"])


def test_screen_failures_only_have_screening_records(small: Delivery) -> None:
    failures = small.screen_failures()
    assert failures
    assert not failures & set(small["ex"]["USUBJID"])
    assert not failures & set(small["ae"]["USUBJID"])
    for stem in ("sv", "vs", "lbch", "lbhe"):
        rows = [r for r in small[stem].rows if r["USUBJID"] in failures]
        assert {r["USUBJID"] for r in rows} == failures, stem
        assert {r["VISITNUM"] for r in rows} == {1.0}, stem
    ds = [r for r in small["ds"].rows if r["USUBJID"] in failures]
    assert len(ds) == len(failures)
    assert {r["DSDECOD"] for r in ds} == {"SCREEN FAILURE"}


def test_visits_follow_the_schedule(small: Delivery) -> None:
    per_subject: dict[str, list[Record]] = {}
    for r in small["sv"].rows:
        assert r["SVSTDTC"] == r["SVENDTC"]
        per_subject.setdefault(r["USUBJID"], []).append(r)
    assert set(per_subject) == set(small.dm)
    for usubjid, visits in per_subject.items():
        attended = [(v["VISITNUM"], v["VISIT"], v["VISITDY"]) for v in visits]
        assert attended == SCHEDULE[: len(attended)], usubjid  # dropouts stop early
        dates = [v["SVSTDTC"] for v in visits]
        assert dates == sorted(set(dates)), usubjid
        if usubjid in small.treated():
            assert len(attended) >= 3, usubjid
            assert visits[1]["SVSTDY"] == 1 and visits[0]["SVSTDY"] < 0
            assert visits[-1]["SVSTDTC"] == small.dm[usubjid]["RFENDTC"]
    lengths = Counter(len(v) for u, v in per_subject.items() if u in small.treated())
    assert lengths[len(SCHEDULE)] > 0 and len(lengths) > 1  # completers and dropouts


def test_vs_baseline_flag_is_exactly_the_baseline_visit(small: Delivery) -> None:
    vs = small["vs"].rows
    treated = small.treated()
    flagged = [r for r in vs if r["VSBLFL"] == "Y"]
    assert flagged
    for r in vs:
        at_baseline = r["VISITNUM"] == 3.0 and r["USUBJID"] in treated
        assert (r["VSBLFL"] == "Y") == at_baseline, r
        assert r["VSBLFL"] in {"Y", ""}
    assert {r["VSTESTCD"] for r in flagged} == {"SYSBP", "DIABP", "PULSE", "TEMP", "WEIGHT"}
    per_subject_test = Counter((r["USUBJID"], r["VSTESTCD"]) for r in flagged)
    assert {(u, t) for u, t in per_subject_test} == {
        (u, t) for u in treated for t in ("SYSBP", "DIABP", "PULSE", "TEMP", "WEIGHT")
    }


def test_vs_values(small: Delivery) -> None:
    ranges = {"SYSBP": (95, 180, "mmHg"), "DIABP": (55, 105, "mmHg"),
              "PULSE": (50, 110, "beats/min"), "TEMP": (35.8, 37.6, "C"),
              "WEIGHT": (45, 110, "kg"), "HEIGHT": (145, 195, "cm")}  # fmt: skip
    done = small["vs"].where(VSSTAT="")
    assert {r["VSTESTCD"] for r in done} == set(ranges)
    for r in done:
        low, high, unit = ranges[r["VSTESTCD"]]
        assert low <= r["VSSTRESN"] <= high, r
        assert r["VSSTRESU"] == unit and r["VSORRESU"] == unit, r
        assert float(r["VSSTRESC"]) == r["VSSTRESN"] and r["VSORRES"] == r["VSSTRESC"], r
    positional = [r for r in small["vs"].rows if r["VSTESTCD"] in {"SYSBP", "DIABP", "PULSE"}]
    assert {(r["VSPOS"], r["VSTPTNUM"], r["VSELTM"]) for r in positional} == {
        ("SUPINE", 815.0, "PT5M"),
        ("STANDING", 816.0, "PT1M"),
        ("STANDING", 817.0, "PT3M"),
    }
    heights = small["vs"].where(VSTESTCD="HEIGHT")
    assert {r["VISITNUM"] for r in heights} == {1.0}
    assert sorted(r["USUBJID"] for r in heights) == sorted(small.dm)
    for r in small["vs"].where(VSSTAT="NOT DONE"):
        assert r["VSSTRESN"] is None and r["VSORRES"] == "" and r["VISITNUM"] != 3.0


def test_lb_files_and_baseline_flag(small: Delivery) -> None:
    chemistry, hematology = small["lbch"], small["lbhe"]
    assert set(chemistry["LBCAT"]) == {"CHEMISTRY"}
    assert set(hematology["LBCAT"]) == {"HEMATOLOGY"}
    chem_tests, hema_tests = set(chemistry["LBTESTCD"]), set(hematology["LBTESTCD"])
    assert {"ALB", "ALP", "ALT", "AST", "BILI", "CREAT", "GLUC", "K", "SODIUM"} <= chem_tests
    assert {"HGB", "HCT", "PLAT", "WBC"} <= hema_tests
    assert not chem_tests & hema_tests
    treated = small.treated()
    flagged = 0
    for r in small.lb:
        assert r["VISITNUM"] in {1.0, 4.0, 5.0, 7.0, 9.0, 12.0}
        assert (r["LBBLFL"] == "Y") == (r["VISITNUM"] == 1.0 and r["USUBJID"] in treated), r
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}", r["LBDTC"]), r["LBDTC"]
        flagged += r["LBBLFL"] == "Y"
    assert flagged == len(treated) * (len(chem_tests) + len(hema_tests))


def test_lb_indicator_matches_the_numbers(small: Delivery) -> None:
    for r in small.lb:
        value, low, high = r["LBSTRESN"], r["LBSTNRLO"], r["LBSTNRHI"]
        expected = "LOW" if value < low else "HIGH" if value > high else "NORMAL"
        assert r["LBNRIND"] == expected, r
        assert low < high
        assert float(r["LBSTRESC"]) == value and r["LBORRES"] != "", r


def test_ex_intervals(small: Delivery) -> None:
    per_subject: dict[str, list[Record]] = {}
    for r in small["ex"].rows:
        per_subject.setdefault(r["USUBJID"], []).append(r)
    assert set(per_subject) == small.treated()
    placebo = small["ex"].where(EXTRT="PLACEBO")
    assert placebo
    assert all(r["EXDOSE"] == 0.0 for r in placebo)  # true zeros, not 5.4e-79
    assert {r["EXDOSE"] for r in small["ex"].where(EXTRT="XANOMELINE")} <= {54.0, 81.0}
    for r in small["ex"].rows:
        assert (r["EXDOSU"], r["EXDOSFRM"], r["EXDOSFRQ"], r["EXROUTE"]) == (
            "mg",
            "PATCH",
            "QD",
            "TRANSDERMAL",
        )
    for usubjid, intervals in per_subject.items():
        assert 1 <= len(intervals) <= 3, usubjid
        subject = small.dm[usubjid]
        treatment = "PLACEBO" if subject["ARMCD"] == "Pbo" else "XANOMELINE"
        assert {r["EXTRT"] for r in intervals} == {treatment}
        if subject["ARMCD"] == "Xan_Lo":
            assert {r["EXDOSE"] for r in intervals} == {54.0}
        starts = [date.fromisoformat(r["EXSTDTC"]) for r in intervals]
        ends = [date.fromisoformat(r["EXENDTC"]) for r in intervals]
        assert starts[0].isoformat() == subject["RFSTDTC"]
        assert ends[-1].isoformat() == subject["RFXENDTC"]
        for end, next_start in zip(ends, starts[1:], strict=False):
            assert (next_start - end).days == 1, usubjid


def test_ae_values(small: Delivery) -> None:
    ae = small["ae"].rows
    assert ae
    assert {r["USUBJID"] for r in ae} <= small.treated()
    assert max(Counter(r["USUBJID"] for r in ae).values()) <= 9  # 8 plus a fatal event
    outcomes = {"RECOVERED/RESOLVED", "NOT RECOVERED/NOT RESOLVED", "FATAL"}
    for r in ae:
        assert r["AESEV"] in {"MILD", "MODERATE", "SEVERE"} and r["AESER"] in {"Y", "N"}
        assert r["AEOUT"] in outcomes
        assert r["AETERM"] == r["AEDECOD"] and r["AEBODSYS"] == r["AESOC"] != ""
        assert r["AELLTCD"] is None and r["AEPTCD"] is None and r["AESOCCD"] is None
        if r["AEENDTC"] == "":
            assert r["AEOUT"] == "NOT RECOVERED/NOT RESOLVED" and r["AEENDY"] is None
        subject = small.dm[r["USUBJID"]]
        start = r["AESTDTC"]
        first, last = subject["RFXSTDTC"][: len(start)], subject["RFXENDTC"][: len(start)]
        assert first <= start <= last, r
        assert r["AEDTC"][: len(start)] >= start
        assert (r["AESTDY"] is None) == (len(start) < 10)


def test_ds_values(small: Delivery) -> None:
    ds = small["ds"]
    events = ds.where(DSCAT="DISPOSITION EVENT")
    assert sorted(r["USUBJID"] for r in events) == sorted(small.dm)
    assert set(ds["DSCAT"]) == {"DISPOSITION EVENT", "OTHER EVENT"}
    other = ds.where(DSCAT="OTHER EVENT")
    assert {r["DSDECOD"] for r in other} <= {"FINAL LAB VISIT", "FINAL RETRIEVAL VISIT"}
    final_lab = [r["USUBJID"] for r in other if r["DSDECOD"] == "FINAL LAB VISIT"]
    assert sorted(final_lab) == sorted(small.treated())
    for r in events:
        subject = small.dm[r["USUBJID"]]
        if subject["ARMCD"] == "Scrnfail":
            assert r["DSDECOD"] == "SCREEN FAILURE"
        else:
            assert r["DSSTDTC"] == subject["RFENDTC"]
            assert r["DSDECOD"] != "SCREEN FAILURE"
            assert (r["DSDECOD"] == "DEATH") == (subject["DTHFL"] == "Y")


# --------------------------------------------------------------------------- proportions


def test_pilot_sized_proportions(pilot_sized: Delivery) -> None:
    dm = list(pilot_sized.dm.values())
    assert len(dm) == 306
    arms = Counter(r["ARMCD"] for r in dm)
    assert arms["Scrnfail"] == 46  # round(15% of 306)
    assert all(80 <= arms[a] <= 95 for a in ("Pbo", "Xan_Lo", "Xan_Hi"))
    assert 1 <= sum(r["AGE"] >= 90 for r in dm) <= 20
    assert Counter(r["RACE"] for r in dm).most_common(1)[0][0] == "WHITE"
    events = pilot_sized["ds"].where(DSCAT="DISPOSITION EVENT")
    completed = share(events, lambda r: r["DSDECOD"] == "COMPLETED") * 306 / (306 - 46)
    assert 0.35 <= completed <= 0.55
    lb = pilot_sized.lb
    assert 0.05 <= share(lb, lambda r: r["LBNRIND"] != "NORMAL") <= 0.08
    assert any(r["LBSTRESN"] == 0.0 for r in lb)  # true zeros (basophils) survive
    assert 0.002 <= share(pilot_sized["vs"].rows, lambda r: r["VSSTAT"] == "NOT DONE") <= 0.01
    ae = pilot_sized["ae"].rows
    assert 0.5 <= share(ae, lambda r: r["AESEV"] == "MILD") <= 0.7
    assert 0.03 <= share(ae, lambda r: r["AESEV"] == "SEVERE") <= 0.15
    assert share(ae, lambda r: r["AESER"] == "Y") <= 0.05
    assert 0 < share(ae, lambda r: len(r["AESTDTC"]) < 10) <= 0.06


def test_arms_drift_from_baseline(pilot_sized: Delivery) -> None:
    sums: dict[tuple[str, str], list[float]] = {}
    for r in pilot_sized["vs"].where(VSTESTCD="SYSBP", VSSTAT=""):
        arm = pilot_sized.dm[r["USUBJID"]]["ARMCD"]
        if r["VSBLFL"] == "Y":
            sums.setdefault((arm, "baseline"), []).append(r["VSSTRESN"])
        elif r["VISITNUM"] == 12.0:
            sums.setdefault((arm, "week26"), []).append(r["VSSTRESN"])

    def change(arm: str) -> float:
        week26, baseline = sums[(arm, "week26")], sums[(arm, "baseline")]
        return sum(week26) / len(week26) - sum(baseline) / len(baseline)

    assert change("Xan_Hi") < change("Pbo") - 2
