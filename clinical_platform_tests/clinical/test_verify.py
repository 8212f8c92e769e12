"""Level 2: tamper evidence on the CDISC pilot as materialized (issue 13).

The shared pilot lake is verified clean, then one byte is flipped at a time (a landed file, a
committed curated data file, a curated lineage record) and put back: each time `verify` exits
non-zero naming what changed, and the dossier marks it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from clinical_platform import cli
from clinical_platform.catalog import lineage_records
from clinical_platform.lineage.dossier import render_dossier
from clinical_platform.lineage.verify import record_digest, verify_delivery
from clinical_platform_tests.clinical.test_pilot_end_to_end import readme_checksums
from clinical_platform_tests.conftest import PilotRun
from clinical_platform_tests.helpers import lake_catalog, lineage
from spark_jobs.contracts.layout import LakeLayout, local_path
from spark_jobs.contracts.outputs import asset_outputs
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
    assert raw["record_sha256"] == record_digest(raw)
    # Each record names the sha256 of a record (this version or an earlier one) of its input.
    catalog = lake_catalog(pilot_run.lake)
    raw_versions = lineage_records(catalog, "raw.clinical_vs", pilot_run.delivery)
    curated_versions = lineage_records(catalog, "curated.clinical_vs", pilot_run.delivery)
    assert curated["inputs"][0]["record_sha256"] in {r["record_sha256"] for r in raw_versions}
    by_asset = {i["asset"]: i["record_sha256"] for i in features["inputs"]}
    assert by_asset["curated_vs"] in {r["record_sha256"] for r in curated_versions}
    for entry in curated["data_files"]:
        data = Path(local_path(entry["path"])).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (entry["size"], entry["sha256"])
    assert sum(1 for _ in curated["data_files"]) >= 1
    # Who, when, where: a run with no user or sensor tag (Dagster OSS records no user).
    assert curated["started_by"] == "dagster:no-user-recorded"
    assert curated["spark_application_id"].startswith("local-") and curated["produced_at"]


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
    assert "/vs.xpt: modified (listed in the manifest; 7355760 bytes, sha256 " in line
    assert line.endswith("; the manifest says 7355760 bytes, ce2c17eeb807e2a3…)")
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
        dossier = render_dossier(LakeLayout(str(pilot_run.lake)), pilot_run.delivery)
    assert code == 1
    [line] = out.splitlines()
    assert line.startswith(f"{path}: modified (a data file of curated_vs CDISCPILOT01/2024-01-15; ")
    size, digest = curated["data_files"][0]["size"], curated["data_files"][0]["sha256"]
    assert line.endswith(f"; committed as {size} bytes, {digest[:16]}…)")
    assert found.problems == out.splitlines()
    assert f"- {line}" in dossier


def test_a_flipped_byte_in_a_lineage_record_is_named(
    pilot_run: PilotRun, capsys: pytest.CaptureFixture[str]
) -> None:
    """The curated VS records rewritten in place with one byte of their text changed (the
    row count), as an edit of the lineage table would leave them; the catalog is put back
    after. Every version is edited, the one features read among them."""
    layout = LakeLayout(str(pilot_run.lake))
    catalog_file = Path(local_path(layout.catalog_db))
    saved = catalog_file.read_bytes()
    table = lake_catalog(pilot_run.lake).load_table(LINEAGE_TABLE)
    condition = (
        "table_name = 'curated.clinical_vs' AND study = 'CDISCPILOT01' AND delivery = '2024-01-15'"
    )
    rows = table.scan(row_filter=condition).to_arrow().to_pylist()
    assert rows and all('"out": 29643' in row["record"] for row in rows)
    for row in rows:
        row["record"] = row["record"].replace('"out": 29643', '"out": 29642')
    try:
        table.overwrite(pa.Table.from_pylist(rows, schema=table.schema().as_arrow()), condition)
        code, out, _ = run_verify(pilot_run, capsys)
        dossier = render_dossier(layout, pilot_run.delivery)
    finally:
        catalog_file.write_bytes(saved)
    assert code == 1
    assert out.splitlines()[0].startswith(
        "lineage record of curated_vs CDISCPILOT01/2024-01-15 (curated.clinical_vs in "
        "system.lineage): modified"
    )
    assert f"- {out.splitlines()[0]}" in dossier
    # Features read the record as it was committed: their link to it is broken too.
    assert any(
        line.startswith(
            "features_subject_profile CDISCPILOT01/2024-01-15: broken chain: it "
            "read the curated_vs record"
        )
        for line in out.splitlines()
    ), out
    assert run_verify(pilot_run, capsys)[0] == 0


def test_the_json_dossier_of_the_features_names_every_file_and_partition_behind_them(
    pilot_run: PilotRun, pilot_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The SDTM files the feature table was computed from (SV is landed but not read by it,
    define.xml is not ingested), every intermediate partition with its code version and
    checks, and the verify result."""
    key = pilot_run.delivery
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        where = ["--study", key.study, "--delivery", key.delivery, "--lake", str(pilot_run.lake)]
        cli.main(["dossier", *where, "--format", "json"])
    assert exited.value.code == 0
    dossier = json.loads(capsys.readouterr().out)
    published = readme_checksums(pilot_dir)
    read = ["ae.xpt", "dm.xpt", "ds.xpt", "ex.xpt", "lbch.xpt", "lbhe.xpt", "vs.xpt"]
    assert {f["file"]: f["sha256"] for f in dossier["computed_from"]} == {
        name: published[name] for name in read
    }
    # The 8 SDTM files of the delivery were ingested (SV too, which the features do not
    # read); define.xml and the README were landed and kept, not ingested.
    landed = {f["name"]: f for f in dossier["landed_files"]}
    assert {n: f["sha256"] for n, f in landed.items() if f["ingested"]} == {
        name: published[name] for name in [*read, "sv.xpt"]
    }
    assert {n: f["disposition"] for n, f in landed.items() if not f["ingested"]} == {
        "README.md": "skipped",
        "define.xml": "skipped",
    }
    assert sorted(n for n, f in landed.items() if not f["computed_from"]) == [
        "README.md",
        "define.xml",
        "sv.xpt",
    ]
    domains = ["dm", "ae", "vs", "lb", "ex", "ds"]
    assert sorted(a["asset"] for a in dossier["assets"]) == sorted(
        ["features_subject_profile"] + [f"{z}_{d}" for z in ("raw", "curated") for d in domains]
    )
    declared = {o.asset_key: o.check_names for o in asset_outputs()}
    for hop in dossier["assets"]:
        assert hop["partition"] == key.key and hop["status"] == "accepted", hop["asset"]
        assert len(hop["code_version"]) == 64, hop["asset"]
        # Every check the contract declares for the asset, each with its result.
        assert sorted(c["check"] for c in hop["checks"]) == sorted(declared[hop["asset"]])
        assert all(check["passed"] for check in hop["checks"]), hop["asset"]
    assert dossier["verification"]["holds"] is True


@contextlib.contextmanager
def moved_away(path: Path) -> Iterator[None]:
    """The file gone for the duration (to a folder outside the lake), then put back."""
    aside = Path(tempfile.mkdtemp()) / path.name
    shutil.move(path, aside)
    try:
        yield
    finally:
        shutil.move(aside, path)


def test_a_missing_landed_file_and_a_missing_data_file_are_named(
    pilot_run: PilotRun, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = LakeLayout(str(pilot_run.lake))
    landed = Path(local_path(layout.landing(pilot_run.delivery))) / "dm.xpt"
    with moved_away(landed):
        code, out, _ = run_verify(pilot_run, capsys, "--asset", "raw_dm")
    assert code == 1
    assert out.splitlines() == [
        f"{layout.landing(pilot_run.delivery)}/dm.xpt: missing (listed in the manifest)"
    ]

    curated = lineage(pilot_run.lake, "curated", "ae", pilot_run.delivery)
    path = curated["data_files"][0]["path"]
    with moved_away(Path(local_path(path))):
        code, out, _ = run_verify(pilot_run, capsys)
    assert code == 1
    assert out.splitlines() == [
        f"{path}: missing (a data file of curated_ae CDISCPILOT01/2024-01-15)"
    ]
    assert run_verify(pilot_run, capsys)[0] == 0


def test_a_file_added_to_a_committed_partition_is_named(
    pilot_run: PilotRun, capsys: pytest.CaptureFixture[str]
) -> None:
    """A data file appended to the curated DM partition through the catalog (one row copied),
    as an edit of the table would leave it: the table now reads a file no record lists."""
    layout = LakeLayout(str(pilot_run.lake))
    catalog_file = Path(local_path(layout.catalog_db))
    saved = catalog_file.read_bytes()
    table = lake_catalog(pilot_run.lake).load_table("curated.clinical_dm")
    condition = "study = 'CDISCPILOT01' AND delivery = '2024-01-15'"
    before = {t.file.file_path for t in table.scan(row_filter=condition).plan_files()}
    try:
        table.append(table.scan(row_filter=condition, limit=1).to_arrow())
        after = {t.file.file_path for t in table.refresh().scan(row_filter=condition).plan_files()}
        [added] = sorted(after - before)
        code, out, _ = run_verify(pilot_run, capsys, "--asset", "curated_dm")
    finally:
        catalog_file.write_bytes(saved)
    assert code == 1
    assert out.splitlines() == [
        f"{added}: extra file in the committed partition curated_dm CDISCPILOT01/2024-01-15"
    ]
    assert run_verify(pilot_run, capsys)[0] == 0


def test_the_markdown_dossier_of_one_asset_shows_it_and_what_it_was_computed_from(
    pilot_run: PilotRun,
) -> None:
    layout = LakeLayout(str(pilot_run.lake))
    dossier = render_dossier(layout, pilot_run.delivery, "curated_vs")
    sections = [line for line in dossier.splitlines() if line.startswith("### ")]
    # Curated VS reads raw VS, and raw DM for its subjects.
    assert sections == ["### raw_dm", "### raw_vs", "### curated_vs"]
    assert dossier.startswith("# Audit dossier — CDISCPILOT01/2024-01-15, curated_vs")
    assert "all unchanged, chain intact" in dossier
    with pytest.raises(ValueError, match="no asset 'curated_xx'"):
        render_dossier(layout, pilot_run.delivery, "curated_xx")


def test_an_edited_manifest_breaks_the_chain_at_raw(
    pilot_run: PilotRun, capsys: pytest.CaptureFixture[str]
) -> None:
    """The manifest is the chain's first link: each raw record names the sha256 of the
    manifest it read. One byte of it changed (in its landing timestamp, so that every file
    still matches its entry) breaks every raw record's link, and only those."""
    layout = LakeLayout(str(pilot_run.lake))
    manifest = Path(local_path(layout.manifest(pilot_run.delivery)))
    at = manifest.read_bytes().index(b'"landed_at"') + len(b'"landed_at": "20')
    with flipped(manifest, at):
        code, out, _ = run_verify(pilot_run, capsys)
    assert code == 1
    broken = [line.split(":")[0] for line in out.splitlines()]
    raw = [f"raw_{d} CDISCPILOT01/2024-01-15" for d in ("ae", "dm", "ds", "ex", "lb", "sv", "vs")]
    assert sorted(broken) == sorted(raw), out
    assert all(
        "broken chain: it read a delivery manifest with sha256" in line for line in out.splitlines()
    )
    assert run_verify(pilot_run, capsys)[0] == 0
