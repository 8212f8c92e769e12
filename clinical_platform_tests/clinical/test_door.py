"""Level 2: deliveries as a CRO might really send them, through `land` and `materialize`.

The first delivery of a generated study is usable but odd: DM as CSV with a patient-name and
an e-mail column, a 1 MiB cell and a leading-blank value, and AE without EPOCH. The second
carries only a PNG named `vs.xpt`, EX without USUBJID, a good SV, a hidden file and a
transfer's temporary file. Every problem must be named where a user looks (the command's
output, checks, tables, the dossier), every file accounted for, and the good rows curated.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from clinical_platform.generators.sdtm import generate_sdtm
from clinical_platform_tests.clinical.test_bad_delivery import tiny_png
from clinical_platform_tests.clinical.test_data_quality import Table
from clinical_platform_tests.conftest import TEST_PSEUDONYM_KEY
from clinical_platform_tests.helpers import lineage, read_table, run_command
from spark_jobs.contracts.layout import Delivery

pytestmark = pytest.mark.slow

DELIVERY = Delivery("SYNTH01", "2024-02-01")
BROKEN = Delivery("SYNTH01", "2024-03-01")
HUGE = "x" * (1 << 20)
LEADING = " 7"


@dataclass
class DoorRun:
    lake: Path
    materialize: tuple[int, str, str]
    dossier: str
    broken: tuple[int, str, str]
    broken_dossier: str
    huge_subject: str
    leading_subject: str


def door_delivery(folder: Path) -> tuple[str, str]:
    """The odd delivery; returns the subjects given the huge cell and the leading blank."""
    generate_sdtm(folder, 20, study=DELIVERY.study)
    dm = Table.read(folder / "dm.xpt")
    dm.add("PATNAME", "")
    dm.add("EMAIL", "")
    for i in range(len(dm.rows)):
        dm.set(i, "PATNAME", f"Anna{'bcdefghijklmnopqrstu'[i % 20]} Berg")
        dm.set(i, "EMAIL", f"patient{i}@example.org")
    dm.set(3, "ARM", HUGE)
    dm.set(4, "SITEID", LEADING)
    dm.write_csv(folder / "dm.csv")
    (folder / "dm.xpt").unlink()
    ae = Table.read(folder / "ae.xpt")
    ae.drop("EPOCH")
    ae.write_xpt(folder / "ae.xpt")
    return str(dm.get(3, "USUBJID")), str(dm.get(4, "USUBJID"))


def broken_delivery(generated: Path, folder: Path) -> None:
    """VS a PNG, EX without USUBJID, SV good, plus a hidden and a temporary file."""
    folder.mkdir()
    (folder / "vs.xpt").write_bytes(tiny_png())
    ex = Table.read(generated / "ex.xpt")
    ex.drop("USUBJID")
    ex.write_csv(folder / "ex.csv")
    shutil.copyfile(generated / "sv.xpt", folder / "sv.xpt")
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (folder / "sv.xpt._COPYING_").write_bytes(b"half a file")


@pytest.fixture(scope="module")
def door(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("door")
    huge_subject, leading_subject = door_delivery(root / "transfer")
    broken_delivery(root / "transfer", root / "broken")
    lake = root / "lake"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DAGSTER_HOME", str(root / "dagster_home"))
        patch.setenv("CLINICAL_PSEUDONYM_KEY", TEST_PSEUDONYM_KEY)
        patch.delenv("CLINICAL_ENV", raising=False)
        # The log's width is the terminal's, or 120 columns without one; the workers of
        # `make test` (pytest-xdist, via execnet) run with COLUMNS=80 in their environment,
        # which would cut the lines these tests read.
        patch.delenv("COLUMNS", raising=False)
        runs = []
        for delivery, folder in ((DELIVERY, "transfer"), (BROKEN, "broken")):
            where = ["--study", delivery.study, "--delivery", delivery.delivery]
            where += ["--lake", str(lake)]
            assert run_command(["land", str(root / folder), *where])[0] == 0
            runs.append(run_command(["materialize", *where]))
            runs.append(run_command(["dossier", *where]))
    yield DoorRun(lake, runs[0], runs[1][1], runs[2], runs[3][1], huge_subject, leading_subject)
    shutil.rmtree(root, ignore_errors=True)


def test_the_last_line_names_the_broken_files_and_why(door: DoorRun) -> None:
    code, _, err = door.broken
    assert code == 1
    last = err.splitlines()[-1]
    assert last.startswith("clinical-platform: materialize SYNTH01/2024-03-01 failed: "), last
    assert "vs.xpt: not a SAS XPORT v5 file (bad header; looks like a PNG image)" in last
    assert "ex.csv: lacks required column(s) USUBJID" in last
    # No line of Dagster's log wider than a terminal (120 columns when there is none).
    logged = [line for line in err.splitlines() if line[:2].isdigit() and line[2] == ":"]
    assert logged and max(len(line) for line in logged) <= 120


def test_features_are_skipped_naming_the_rejected_domains(door: DoorRun) -> None:
    _, out, err = door.broken
    skipped = [line for line in err.splitlines() if "features_subject_profile skipped" in line]
    assert len(skipped) == 1, err
    assert "VS of SYNTH01/2024-03-01 was rejected (vs.xpt: not a SAS XPORT v5 file" in skipped[0]
    assert "EX of SYNTH01/2024-03-01 was rejected" in skipped[0]
    with pytest.raises(AssertionError, match="no lineage record"):
        lineage(door.lake, "features", "subject_profile", BROKEN)
    status = {line.split()[0]: line.split()[-1] for line in out.splitlines()[2:-1]}
    assert status["raw_vs"] == "rejected" and status["raw_ex"] == "rejected", out
    assert status["curated_sv"] == "accepted", out
    # The domains it does not carry keep their current data: the first delivery's.
    assert "carries no AE, DM, DS, LB file: not materialized" in out


def test_every_file_is_accounted_for(door: DoorRun) -> None:
    files = lineage(door.lake, "raw", "vs", BROKEN)["delivery_files"]
    assert files["landed"] == 5
    assert files["landed"] == len(files["accepted"]) + len(files["rejected"]) + len(
        files["skipped"]
    )
    assert files["accepted"] == ["sv.xpt"]
    rejected = {r["file"]: r["reason"] for r in files["rejected"]}
    assert rejected == {
        "ex.csv": "lacks required column(s) USUBJID",
        "vs.xpt": "not a SAS XPORT v5 file (bad header; looks like a PNG image)",
    }
    skipped = {r["file"]: r["reason"] for r in files["skipped"]}
    assert skipped[".DS_Store"].startswith("hidden file")
    assert skipped["sv.xpt._COPYING_"].startswith("temporary file")
    summary = "5 files landed = 1 accepted + 2 rejected + 2 skipped"
    assert summary in door.broken_dossier and summary in door.broken[2]
    assert "| .DS_Store | skipped | hidden file" in door.broken_dossier
    assert "| ex.csv | rejected | lacks required column(s) USUBJID |" in door.broken_dossier


def test_a_file_without_a_required_column_is_rejected_and_listed(door: DoorRun, spark) -> None:
    raw_ex = lineage(door.lake, "raw", "ex", BROKEN)
    assert raw_ex["status"] == "rejected"
    rejected = read_table(spark, door.lake, "quarantine", "rejected_files", BROKEN)
    reasons = {r["file"]: r["reason"] for r in rejected.collect()}
    assert reasons == {
        "ex.csv": "lacks required column(s) USUBJID",
        "vs.xpt": "not a SAS XPORT v5 file (bad header; looks like a PNG image)",
    }


def test_a_huge_cell_quarantines_only_its_row(door: DoorRun, spark) -> None:
    curated = lineage(door.lake, "curated", "dm", DELIVERY)
    assert curated["rows"] == {"in": 20, "out": 19, "quarantined": 1, "collapsed": 0}
    quarantined = read_table(spark, door.lake, "quarantine", "dm", DELIVERY).collect()
    assert [r["USUBJID"] for r in quarantined] == [door.huge_subject]
    assert quarantined[0]["_reject_reasons"] == ["max_length"]
    assert len(quarantined[0]["ARM"]) == len(HUGE)  # kept exactly as delivered


def test_a_leading_blank_survives_curation(door: DoorRun, spark) -> None:
    dm = read_table(spark, door.lake, "curated", "dm", DELIVERY)
    [row] = dm.where(dm["USUBJID"] == door.leading_subject).collect()
    assert row["SITEID"] == LEADING


def test_missing_contract_columns_are_named(door: DoorRun) -> None:
    check = next(c for c in lineage(door.lake, "raw", "ae", DELIVERY)["checks"] if not c["passed"])
    assert check["check"] == "contract_columns"
    assert check["metadata"]["missing_columns"] == {"ae.xpt": ["EPOCH"]}
    _, _, err = door.materialize
    assert "ae.xpt lacks contract column(s) EPOCH, curated with nulls" in err
    assert lineage(door.lake, "curated", "ae", DELIVERY)["rows"]["out"] > 0


def test_the_odd_delivery_is_materialized_whole(door: DoorRun) -> None:
    code, _, err = door.materialize
    assert code == 0, err
    profile = lineage(door.lake, "features", "subject_profile", DELIVERY)
    assert profile["rows"]["out"] == 19  # DM's 20 subjects but the one quarantined


def test_identifiers_are_named_at_the_door_and_go_no_further(door: DoorRun, spark) -> None:
    checks = {c["check"]: c for c in lineage(door.lake, "raw", "dm", DELIVERY)["checks"]}
    found = checks["direct_identifiers"]
    assert not found["passed"]
    assert found["metadata"]["identifier_columns"] == {
        "EMAIL": "e-mail address",
        "PATNAME": "patient name",
    }
    _, _, err = door.materialize
    assert "raw_dm SYNTH01/2024-02-01: columns that look like direct identifiers" in err
    assert (
        "direct_identifiers: columns that look like direct identifiers, kept in raw only: "
        "EMAIL (e-mail address), PATNAME (patient name)"
    ) in door.dossier
    curated = read_table(spark, door.lake, "curated", "dm", DELIVERY)
    assert not {"PATNAME", "EMAIL"} & set(curated.columns)
    profile = read_table(spark, door.lake, "features", "subject_profile", DELIVERY)
    assert profile.count() == 19
    assert not {"PATNAME", "EMAIL"} & set(profile.columns)
    values = {str(v) for row in profile.collect() for v in row.asDict().values()}
    assert not any("@example.org" in v or " Berg" in v for v in values)
