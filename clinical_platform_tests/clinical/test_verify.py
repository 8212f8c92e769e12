"""Level 2: tamper evidence on the CDISC pilot as materialized (issue 13).

The shared pilot lake is verified clean, then one byte is flipped at a time (a landed file, a
committed curated data file, a curated lineage record) and put back: each time `verify` exits
non-zero naming what changed, and the dossier marks it.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from clinical_platform import cli
from clinical_platform.lineage.dossier import render_dossier
from clinical_platform.lineage.verify import record_digest, verify_delivery
from clinical_platform_tests.conftest import PilotRun
from clinical_platform_tests.helpers import lake_catalog, lineage
from spark_jobs.contracts.layout import LakeLayout, local_path
from spark_jobs.contracts.tables import LINEAGE_TABLE

pytestmark = pytest.mark.slow


@contextlib.contextmanager
def flipped(path: Path, offset: int | None = None) -> Iterator[None]:
    """One byte of the file changed (the middle one by default), put back afterwards."""
    original = path.read_bytes()
    at = len(original) // 2 if offset is None else offset
    changed = bytearray(original)
    changed[at] ^= 0x01
    path.write_bytes(bytes(changed))
    try:
        yield
    finally:
        path.write_bytes(original)


def run_verify(
    pilot_run: PilotRun, capsys: pytest.CaptureFixture[str], *more: str
) -> tuple[int, str, str]:
    key = pilot_run.delivery
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        lake = str(pilot_run.lake)
        cli.main(
            ["verify", "--study", key.study, "--delivery", key.delivery, "--lake", lake, *more]
        )
    captured = capsys.readouterr()
    return int(exited.value.code or 0), captured.out, captured.err


def test_the_untouched_pilot_verifies_clean_and_its_records_are_chained(
    pilot_run: PilotRun, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_verify(pilot_run, capsys)
    assert code == 0, out + err
    assert out.count("\n") == 1 and out.startswith("CDISCPILOT01/2024-01-15: verified 10 landing")
    assert "all unchanged, chain intact" in out

    raw = lineage(pilot_run.lake, "raw", "vs", pilot_run.delivery)
    curated = lineage(pilot_run.lake, "curated", "vs", pilot_run.delivery)
    features = lineage(pilot_run.lake, "features", "subject_profile", pilot_run.delivery)
    manifest = Path(local_path(LakeLayout(str(pilot_run.lake)).manifest(pilot_run.delivery)))
    assert raw["manifest_sha256"] == hashlib.sha256(manifest.read_bytes()).hexdigest()
    assert curated["inputs"][0]["record_sha256"] == raw["record_sha256"] == record_digest(raw)
    by_asset = {i["asset"]: i["record_sha256"] for i in features["inputs"]}
    assert by_asset["curated_vs"] == curated["record_sha256"]
    for entry in curated["data_files"]:
        data = Path(local_path(entry["path"])).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (entry["size"], entry["sha256"])
    assert sum(1 for _ in curated["data_files"]) >= 1


def test_a_flipped_byte_in_a_landed_file_is_named(
    pilot_run: PilotRun, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = LakeLayout(str(pilot_run.lake))
    landed = Path(local_path(layout.landing(pilot_run.delivery))) / "vs.xpt"
    with flipped(landed):
        code, out, err = run_verify(pilot_run, capsys)
        dossier = render_dossier(layout, pilot_run.delivery)
    assert code == 1
    [line] = out.splitlines()
    assert line.endswith("/vs.xpt: modified (7355760 bytes, sha256 " + line.split("sha256 ")[1])
    assert "the manifest says 7355760 bytes, ce2c17eeb807e2a3…" in line
    assert err.startswith("clinical-platform: CDISCPILOT01/2024-01-15: 1 problem(s)")
    assert "**CDISCPILOT01/2024-01-15: 1 problem(s)" in dossier and f"- {line}" in dossier
    assert run_verify(pilot_run, capsys)[0] == 0  # put back: clean again


def test_a_flipped_byte_in_a_committed_data_file_is_named(
    pilot_run: PilotRun, capsys: pytest.CaptureFixture[str]
) -> None:
    curated = lineage(pilot_run.lake, "curated", "vs", pilot_run.delivery)
    path = curated["data_files"][0]["path"]
    with flipped(Path(local_path(path))):
        code, out, _ = run_verify(pilot_run, capsys, "--asset", "curated_vs")
        found = verify_delivery(LakeLayout(str(pilot_run.lake)), pilot_run.delivery)
    assert code == 1
    assert out.splitlines() == [
        f"{path}: modified (a data file of curated_vs CDISCPILOT01/2024-01-15; sha256 "
        + out.split("; sha256 ")[1].strip()
    ]
    assert found.problems == out.splitlines()


def test_a_flipped_byte_in_a_lineage_record_is_named(
    pilot_run: PilotRun, capsys: pytest.CaptureFixture[str]
) -> None:
    """The curated VS record rewritten in place with one byte of its text changed (its row
    count), as an edit of the lineage table would leave it; the catalog is put back after."""
    layout = LakeLayout(str(pilot_run.lake))
    catalog_file = Path(local_path(layout.catalog_db))
    saved = catalog_file.read_bytes()
    table = lake_catalog(pilot_run.lake).load_table(LINEAGE_TABLE)
    condition = (
        "table_name = 'curated.clinical_vs' AND study = 'CDISCPILOT01' AND delivery = '2024-01-15'"
    )
    rows = table.scan(row_filter=condition).to_arrow().to_pylist()
    assert len(rows) == 1 and '"out": 29643' in rows[0]["record"]
    rows[0]["record"] = rows[0]["record"].replace('"out": 29643', '"out": 29642')
    try:
        table.overwrite(pa.Table.from_pylist(rows, schema=table.schema().as_arrow()), condition)
        code, out, _ = run_verify(pilot_run, capsys)
    finally:
        catalog_file.write_bytes(saved)
    assert code == 1
    assert out.splitlines()[0].startswith(
        "lineage record of curated_vs CDISCPILOT01/2024-01-15 (curated.clinical_vs in "
        "system.lineage): modified"
    )
    # Features read the record as it was committed: their link to it is broken too.
    assert any(
        line.startswith(
            "features_subject_profile CDISCPILOT01/2024-01-15: broken chain: it "
            "read the curated_vs record"
        )
        for line in out.splitlines()
    ), out
    assert run_verify(pilot_run, capsys)[0] == 0
