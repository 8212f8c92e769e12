"""Level 2: a delivery with broken files still materializes its good domains (issue 3)."""

from __future__ import annotations

import hashlib
import shutil
import struct
import zlib
from pathlib import Path

import dagster as dg
import pytest

from clinical_platform.generators.sdtm import generate_sdtm
from clinical_platform.lake import rejected_files
from clinical_platform_tests.helpers import (
    checks,
    land,
    lineage,
    materializations,
    materialize,
    metadata_value,
    read_table,
    table_exists,
)
from spark_jobs.contracts.layout import Delivery, LakeLayout, local_path

pytestmark = pytest.mark.slow

DELIVERY = Delivery("SYNTH01", "2024-02-01")
NEXT = Delivery("SYNTH01", "2024-03-01")
GOOD = ("dm", "lb", "ds", "sv")
BAD = {"ae": "truncated", "ex": "empty file (0 bytes)", "vs": "looks like a PNG image"}


def tiny_png() -> bytes:
    """A real 1x1 PNG image."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("bad") / "delivery"
    generate_sdtm(folder, 20, study=DELIVERY.study)
    ae = (folder / "ae.xpt").read_bytes()
    (folder / "ae.xpt").write_bytes(ae[: len(ae) // 2 + 7])  # cut mid-observation
    (folder / "ex.xpt").write_bytes(b"")
    (folder / "vs.xpt").write_bytes(tiny_png())
    (folder / "notes.xpt").write_bytes((folder / "dm.xpt").read_bytes())  # unknown domain
    originals = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}
    lake = tmp_path_factory.mktemp("bad") / "lake"
    land(folder, DELIVERY, lake)
    instance = dg.DagsterInstance.ephemeral()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CLINICAL_PSEUDONYM_KEY", "test-key")
        result = materialize(lake, DELIVERY, instance=instance)
    yield lake, result, instance, originals
    shutil.rmtree(folder, ignore_errors=True)


def test_good_domains_are_raw_and_curated(bad_run) -> None:
    _, result, _, _ = bad_run
    found = materializations(result)
    for domain in GOOD:
        assert metadata_value(found[f"raw_{domain}"], "status") == "accepted"
        assert metadata_value(found[f"curated_{domain}"], "status") == "accepted"
        assert metadata_value(found[f"curated_{domain}"], "dagster/row_count") > 0
    # The bad domains' blocking checks failed: their curated assets yield nothing, so Dagster
    # skips features (which read AE, EX and VS); no step fails, the good domains commit.
    assert [e.step_key for e in result.all_events if e.is_step_failure] == []
    assert [e.step_key for e in result.all_events if e.is_step_skipped] == ["clinical_features"]
    assert "features_subject_profile" not in found


@pytest.fixture(scope="module")
def sv_refused(bad_run, tmp_path_factory: pytest.TempPathFactory):
    """The next delivery: AE, EX and VS again, good this time, and a truncated SV, which the
    feature table does not read (DM, LB and DS come from the first delivery)."""
    lake, _, instance, _ = bad_run
    generated = tmp_path_factory.mktemp("next") / "generated"
    generate_sdtm(generated, 20, study=DELIVERY.study)
    folder = generated.parent / "delivery"
    folder.mkdir()
    for name in ("ae.xpt", "ex.xpt", "vs.xpt"):
        shutil.copy(generated / name, folder / name)
    sv = (generated / "sv.xpt").read_bytes()
    (folder / "sv.xpt").write_bytes(sv[: len(sv) // 2 + 7])
    land(folder, NEXT, lake)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CLINICAL_PSEUDONYM_KEY", "test-key")
        yield lake, materialize(lake, NEXT, instance=instance)
    shutil.rmtree(generated.parent, ignore_errors=True)


def test_a_refused_domain_stops_only_what_reads_it(sv_refused, spark) -> None:
    """A bad SV file: curated SV is refused by its blocking check, and the rest of the delivery
    commits, features included, in the one run."""
    lake, result = sv_refused
    found = materializations(result)
    assert "curated_sv" not in found
    refused = checks(result)[("curated_sv", "files_readable")]
    assert not refused.passed and refused.blocking
    assert "truncated" in metadata_value(refused, "reason")
    for domain in ("ae", "ex", "vs"):
        assert metadata_value(found[f"curated_{domain}"], "status") == "accepted"
    assert metadata_value(found["features_subject_profile"], "dagster/row_count") == 20
    assert read_table(spark, lake, "features", "subject_profile", NEXT).count() == 20
    assert [e.step_key for e in result.all_events if e.is_step_failure or e.is_step_skipped] == []


def test_each_bad_file_is_rejected_with_its_reason(bad_run) -> None:
    _, result, _, _ = bad_run
    found = materializations(result)
    evaluations = checks(result)
    for domain, reason in BAD.items():
        raw = found[f"raw_{domain}"]
        assert metadata_value(raw, "status") == "rejected"
        assert metadata_value(raw, "dagster/row_count") == 0
        assert reason in metadata_value(raw, "reason")
        assert f"curated_{domain}" not in found
        raw_check = evaluations[(f"raw_{domain}", "files_readable")]
        curated_check = evaluations[(f"curated_{domain}", "files_readable")]
        assert not raw_check.passed and not curated_check.passed
        assert curated_check.blocking and curated_check.severity == dg.AssetCheckSeverity.ERROR
        assert f"{domain}.xpt" in metadata_value(curated_check, "reason")
        assert reason in metadata_value(curated_check, "reason")


def test_errors_in_the_event_log_name_file_and_problem(bad_run) -> None:
    _, result, instance, _ = bad_run
    messages = [entry.user_message for entry in instance.all_logs(result.run_id)]
    for name, reason in [
        ("ae.xpt", "truncated"),
        ("ex.xpt", "empty file (0 bytes)"),
        ("vs.xpt", "not a SAS XPORT v5 file"),
        ("notes.xpt", "unknown domain 'NOTES'"),
    ]:
        lines = [m for m in messages if name in m and reason in m]
        assert lines, f"no event-log line names {name} with {reason!r}"
        assert all("\n" not in line for line in lines)


def test_rejected_files_are_listed_in_quarantine_and_kept_in_landing(bad_run) -> None:
    lake, _, _, originals = bad_run
    layout = LakeLayout(str(lake))
    records = {r["file"].removesuffix(".xpt"): r for r in rejected_files(layout, DELIVERY)}
    assert sorted(records) == ["ae", "ex", "notes", "vs"]
    assert records["notes"]["dataset"] is None
    assert records["vs"]["sha256"] == originals["vs.xpt"]
    landing = Path(local_path(layout.landing(DELIVERY)))
    assert {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in landing.iterdir()
        if p.name != "_delivery.json"
    } == originals


def test_nothing_of_a_rejected_domain_reaches_curated(bad_run, spark) -> None:
    lake, _, _, _ = bad_run
    for domain in BAD:
        if table_exists(lake, "curated", domain):
            assert read_table(spark, lake, "curated", domain, DELIVERY).count() == 0
        assert read_table(spark, lake, "raw", domain, DELIVERY).count() == 0
        assert lineage(lake, "raw", domain, DELIVERY)["status"] in ("rejected", "absent")
