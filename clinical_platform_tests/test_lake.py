"""Landing a delivery (`clinical_platform.lake.land_delivery`): copy, manifest, immutability."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import boto3
import dagster as dg
import pytest

from clinical_platform.lake import (
    LandedFile,
    LandingError,
    find_duplicate,
    land_delivery,
    landed_deliveries,
    read_manifest,
)
from clinical_platform.lineage.verify import verify_landing
from clinical_platform_tests.conftest import LAKE_BUCKET
from clinical_platform_tests.helpers import run_command
from clinical_platform_tests.launchers.emulator import AwsEmulator
from spark_jobs.contracts.layout import MANIFEST_NAME, Delivery, LakeLayout, local_path

DELIVERY = Delivery("S01", "2024-01-15")
FILES = {
    "dm.csv": b"STUDYID,USUBJID\nS01,S01-001\n",
    "ae.xpt": bytes(range(256)) * 10,
    "vs.csv": b"",
}


def delivery_folder(parent: Path, files: dict[str, bytes] | None = None) -> Path:
    folder = parent / "incoming"
    folder.mkdir(parents=True)
    for name, content in (FILES if files is None else files).items():
        (folder / name).write_bytes(content)
    return folder


def landing_dir(layout: LakeLayout, delivery: Delivery = DELIVERY) -> Path:
    return Path(local_path(layout.landing(delivery)))


def study_dir_entries(layout: LakeLayout) -> list[str]:
    """Everything in the study's landing folder, hidden staging folders included."""
    folder = landing_dir(layout).parent
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.fixture
def layout(tmp_path: Path) -> LakeLayout:
    return LakeLayout(str(tmp_path / "lake"))


def test_landing_copies_files_and_writes_manifest(tmp_path: Path, layout: LakeLayout) -> None:
    """Files arrive byte for byte; the manifest lists names, sizes and sha256 in name order."""
    source = delivery_folder(tmp_path)
    result = land_delivery(source, DELIVERY, layout)

    target = landing_dir(layout)
    assert result.uri == layout.landing(DELIVERY)
    assert not result.already_landed
    assert sorted(p.name for p in target.iterdir()) == sorted([*FILES, MANIFEST_NAME])
    for name, content in FILES.items():
        assert (target / name).read_bytes() == content
    expected = [
        LandedFile(name, len(FILES[name]), hashlib.sha256(FILES[name]).hexdigest())
        for name in sorted(FILES)
    ]
    assert list(result.files) == expected

    manifest = json.loads((target / MANIFEST_NAME).read_text())
    assert manifest["files"] == [
        {"name": f.name, "size": f.size, "sha256": f.sha256} for f in expected
    ]
    assert {
        k: manifest[k] for k in ("manifest_version", "study", "delivery", "source_folder_name")
    } == {
        "manifest_version": 1,
        "study": "S01",
        "delivery": "2024-01-15",
        "source_folder_name": "incoming",
    }
    assert manifest["landed_at"].endswith("+00:00")
    assert study_dir_entries(layout) == ["2024-01-15"]  # no staging folder left


def test_landing_same_files_again_is_a_no_op(tmp_path: Path, layout: LakeLayout) -> None:
    """Re-landing identical content reports it and leaves the manifest untouched."""
    source = delivery_folder(tmp_path)
    land_delivery(source, DELIVERY, layout)
    manifest = (landing_dir(layout) / MANIFEST_NAME).read_bytes()

    again = land_delivery(source, DELIVERY, layout)
    assert again.already_landed
    assert [f.name for f in again.files] == sorted(FILES)
    assert (landing_dir(layout) / MANIFEST_NAME).read_bytes() == manifest
    assert study_dir_entries(layout) == ["2024-01-15"]


@pytest.mark.parametrize("change", ["content", "extra file", "missing file", "hidden file"])
def test_different_files_under_a_landed_delivery_are_refused(
    tmp_path: Path, layout: LakeLayout, change: str
) -> None:
    """Deliveries are immutable: different content must be landed as _2."""
    source = delivery_folder(tmp_path)
    land_delivery(source, DELIVERY, layout)
    before = {p.name: p.read_bytes() for p in landing_dir(layout).iterdir()}
    if change == "content":
        (source / "dm.csv").write_bytes(b"STUDYID,USUBJID\nS01,S01-002\n")
    elif change == "extra file":
        (source / "lb.csv").write_bytes(b"STUDYID\nS01\n")
    elif change == "hidden file":
        (source / ".DS_Store").write_bytes(b"finder noise")  # it arrived, so it counts
    else:
        (source / "vs.csv").unlink()

    with pytest.raises(LandingError) as raised:
        land_delivery(source, DELIVERY, layout)
    assert str(raised.value) == (
        "delivery S01/2024-01-15 is already landed with different files; deliveries are "
        "immutable — land this one as S01/2024-01-15_2"
    )
    assert {p.name: p.read_bytes() for p in landing_dir(layout).iterdir()} == before

    second = Delivery("S01", "2024-01-15_2")
    assert not land_delivery(source, second, layout).already_landed
    assert study_dir_entries(layout) == ["2024-01-15", "2024-01-15_2"]


def test_refusal_suggests_a_valid_delivery_id(tmp_path: Path, layout: LakeLayout) -> None:
    """The suggested id must be one the user can actually land (here 2024-01-15_3)."""
    second = Delivery("S01", "2024-01-15_2")
    source = delivery_folder(tmp_path)
    land_delivery(source, second, layout)
    (source / "dm.csv").write_bytes(b"STUDYID,USUBJID\nS01,S01-002\n")
    with pytest.raises(LandingError) as raised:
        land_delivery(source, second, layout)
    suggested = str(raised.value).rsplit(" as ", 1)[1]
    assert Delivery.from_key(suggested) == Delivery("S01", "2024-01-15_3")


def test_folder_with_subfolders_is_refused(tmp_path: Path, layout: LakeLayout) -> None:
    """A delivery is one flat folder; sub-folders are refused, hidden ones too (their files
    arrived and could not be accounted for)."""
    source = delivery_folder(tmp_path)
    (source / "extra").mkdir()
    (source / ".git").mkdir()
    with pytest.raises(
        LandingError,
        match=r"contains sub-folders \['\.git', 'extra'\]; a delivery is one "
        "flat folder",
    ):
        land_delivery(source, DELIVERY, layout)
    assert study_dir_entries(layout) == []


def test_empty_folder_is_refused(tmp_path: Path, layout: LakeLayout) -> None:
    """A folder with nothing in it is not a delivery."""
    source = delivery_folder(tmp_path, {})
    with pytest.raises(LandingError, match="the folder is empty"):
        land_delivery(source, DELIVERY, layout)
    assert study_dir_entries(layout) == []


def test_folder_with_a_manifest_is_refused(tmp_path: Path, layout: LakeLayout) -> None:
    """The manifest is written by landing; a delivered one would be trusted blindly."""
    source = delivery_folder(tmp_path, {**FILES, MANIFEST_NAME: b"{}"})
    with pytest.raises(LandingError, match=f"already contains {MANIFEST_NAME}"):
        land_delivery(source, DELIVERY, layout)
    assert study_dir_entries(layout) == []


def test_missing_source_is_refused(tmp_path: Path, layout: LakeLayout) -> None:
    """A path that is missing or is a file is not a delivery folder."""
    with pytest.raises(LandingError, match="not a folder of delivery files"):
        land_delivery(tmp_path / "nowhere", DELIVERY, layout)
    (tmp_path / "file.csv").write_bytes(b"A\n1\n")
    with pytest.raises(LandingError, match="not a folder of delivery files"):
        land_delivery(tmp_path / "file.csv", DELIVERY, layout)


NOISE = {
    ".DS_Store": b"finder",
    ".~lock.dm.csv#": b"editor lock",
    "lb.csv.tmp": b"STUDYID\n",
    "lb.csv._COPYING_": b"STUDYID\nS0",
    "~$report.xlsx": b"office lock",
    "vs.xpt.part": b"HEADER RECORD",
}


def test_hidden_and_temporary_files_are_landed(tmp_path: Path, layout: LakeLayout) -> None:
    """Every file that arrived is copied and in the manifest, hidden and temporary ones too:
    the ingest job reports them as skipped, so nothing that arrived goes unaccounted for."""
    source = delivery_folder(tmp_path, {**FILES, **NOISE})
    result = land_delivery(source, DELIVERY, layout)

    everything = {**FILES, **NOISE}
    assert [f.name for f in result.files] == sorted(everything)
    target = landing_dir(layout)
    assert sorted(p.name for p in target.iterdir()) == sorted([*everything, MANIFEST_NAME])
    for name, content in NOISE.items():
        assert (target / name).read_bytes() == content
    manifest = json.loads((target / MANIFEST_NAME).read_text())
    assert manifest["files"] == [
        {"name": name, "size": len(content), "sha256": hashlib.sha256(content).hexdigest()}
        for name, content in sorted(everything.items())
    ]


def test_folder_of_only_hidden_files_is_landed(tmp_path: Path, layout: LakeLayout) -> None:
    """Only .DS_Store arrived: that is what the delivery holds, and the manifest says so."""
    source = delivery_folder(tmp_path, {".DS_Store": b"x", "._dm.csv": b"y"})
    result = land_delivery(source, DELIVERY, layout)
    assert [f.name for f in result.files] == sorted([".DS_Store", "._dm.csv"])


def test_special_files_are_refused(tmp_path: Path, layout: LakeLayout) -> None:
    """A named pipe would block the hash forever; it is refused, naming it, before any copy."""
    source = delivery_folder(tmp_path)
    os.mkfifo(source / "dm.fifo")
    with pytest.raises(LandingError, match=r"\['dm\.fifo'\] are not regular files"):
        land_delivery(source, DELIVERY, layout)
    assert study_dir_entries(layout) == []


def test_file_changing_during_copy_leaves_nothing_behind(
    tmp_path: Path, layout: LakeLayout, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file rewritten by the sender while it is copied is detected by its hash, and the
    staging folder is removed: no partial delivery becomes visible.

    Simulated by a copy that appends a byte, as a sender still writing would.
    """
    source = delivery_folder(tmp_path)
    real_copyfile = shutil.copyfile

    def copy_while_sender_writes(src: os.PathLike[str], dst: os.PathLike[str]) -> object:
        copied = real_copyfile(src, dst)
        if Path(src).name == "dm.csv":
            with open(dst, "ab") as handle:
                handle.write(b"S01,S01-002\n")
        return copied

    monkeypatch.setattr(shutil, "copyfile", copy_while_sender_writes)
    with pytest.raises(
        LandingError, match=re.escape("dm.csv: changed while it was being copied; land it again")
    ):
        land_delivery(source, DELIVERY, layout)
    assert study_dir_entries(layout) == []


def test_failed_copy_leaves_nothing_behind(
    tmp_path: Path, layout: LakeLayout, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disk that fills up mid-copy leaves no staging folder and no delivery.

    chmod cannot make a file unreadable for root, so the failure is injected into the copy.
    """
    source = delivery_folder(tmp_path)
    real_copyfile = shutil.copyfile

    def copy_until_disk_full(src: os.PathLike[str], dst: os.PathLike[str]) -> object:
        if Path(src).name == "dm.csv":
            Path(dst).write_bytes(b"STUDY")
            raise OSError(28, "No space left on device")
        return real_copyfile(src, dst)

    monkeypatch.setattr(shutil, "copyfile", copy_until_disk_full)
    with pytest.raises(LandingError, match=r"cannot be copied \(No space left on device\)"):
        land_delivery(source, DELIVERY, layout)
    assert study_dir_entries(layout) == []

    monkeypatch.setattr(shutil, "copyfile", real_copyfile)
    assert not land_delivery(source, DELIVERY, layout).already_landed


def test_stale_staging_folder_of_this_process_is_replaced(
    tmp_path: Path, layout: LakeLayout
) -> None:
    """A staging folder left by a killed landing with the same pid does not leak into this one."""
    stale = landing_dir(layout).parent / f".{DELIVERY.delivery}.landing-{os.getpid()}"
    stale.mkdir(parents=True)
    (stale / "leftover.csv").write_bytes(b"old")
    land_delivery(delivery_folder(tmp_path), DELIVERY, layout)
    assert study_dir_entries(layout) == ["2024-01-15"]
    assert not (landing_dir(layout) / "leftover.csv").exists()


def test_broken_symlink_leaves_nothing_behind(tmp_path: Path, layout: LakeLayout) -> None:
    """A delivered file that cannot be read (a dangling link) stops landing before any copy."""
    source = delivery_folder(tmp_path)
    (source / "lb.csv").symlink_to(tmp_path / "gone.csv")
    with pytest.raises((LandingError, OSError)):
        land_delivery(source, DELIVERY, layout)
    assert study_dir_entries(layout) == []


def test_unreadable_file_is_a_landing_error_naming_it(tmp_path: Path, layout: LakeLayout) -> None:
    """An unreadable delivered file is a LandingError naming it, so the CLI prints one line."""
    source = delivery_folder(tmp_path)
    (source / "lb.csv").symlink_to(tmp_path / "gone.csv")
    with pytest.raises(LandingError, match=r"lb\.csv"):
        land_delivery(source, DELIVERY, layout)


# ---------------------------------------------------------------------------- duplicates

LATER = Delivery("S01", "2024-02-01")


def test_duplicate_of_a_landed_delivery_is_refused(tmp_path: Path, layout: LakeLayout) -> None:
    """The same files under a new delivery id are refused, naming the earlier delivery."""
    source = delivery_folder(tmp_path)
    land_delivery(source, DELIVERY, layout)
    with pytest.raises(LandingError) as raised:
        land_delivery(source, LATER, layout)
    assert str(raised.value) == (
        "delivery S01/2024-02-01 carries the same 3 files, byte for byte, as S01/2024-01-15; "
        "not landed (land it anyway with --allow-duplicate)"
    )
    assert study_dir_entries(layout) == ["2024-01-15"]


def test_duplicate_is_landed_when_allowed_and_recorded(tmp_path: Path, layout: LakeLayout) -> None:
    """allow_duplicate lands a full copy whose manifest names the delivery it repeats."""
    source = delivery_folder(tmp_path)
    first = land_delivery(source, DELIVERY, layout)
    assert first.duplicate_of is None
    assert "duplicate_of" not in json.loads((landing_dir(layout) / MANIFEST_NAME).read_text())

    result = land_delivery(source, LATER, layout, allow_duplicate=True)
    assert (result.already_landed, result.duplicate_of) == (False, DELIVERY)
    manifest = json.loads((landing_dir(layout, LATER) / MANIFEST_NAME).read_text())
    assert manifest["duplicate_of"] == "S01/2024-01-15"
    assert manifest["files"] == [
        {"name": f.name, "size": f.size, "sha256": f.sha256} for f in first.files
    ]
    for name, content in FILES.items():
        assert (landing_dir(layout, LATER) / name).read_bytes() == content


def test_relanding_a_duplicate_under_its_own_id_is_a_no_op(
    tmp_path: Path, layout: LakeLayout
) -> None:
    """Landing the same files again under the same id stays a no-op, without the flag, and
    still says which delivery it duplicates."""
    source = delivery_folder(tmp_path)
    land_delivery(source, DELIVERY, layout)
    land_delivery(source, LATER, layout, allow_duplicate=True)
    manifest = (landing_dir(layout, LATER) / MANIFEST_NAME).read_bytes()

    for delivery, duplicate_of in ((DELIVERY, None), (LATER, DELIVERY)):
        again = land_delivery(source, delivery, layout)
        assert (again.already_landed, again.duplicate_of) == (True, duplicate_of)
    assert (landing_dir(layout, LATER) / MANIFEST_NAME).read_bytes() == manifest
    assert study_dir_entries(layout) == ["2024-01-15", "2024-02-01"]


def test_duplicate_names_the_oldest_delivery_with_those_files(
    tmp_path: Path, layout: LakeLayout
) -> None:
    """With the original and an allowed copy landed, a third copy names the original, also
    when its own id is older than both (it is a duplicate of what is already there)."""
    source = delivery_folder(tmp_path)
    land_delivery(source, DELIVERY, layout)
    land_delivery(source, LATER, layout, allow_duplicate=True)
    for third in (Delivery("S01", "2024-03-01"), Delivery("S01", "2024-01-10")):
        with pytest.raises(LandingError, match=r"as S01/2024-01-15; not landed"):
            land_delivery(source, third, layout)
    assert study_dir_entries(layout) == ["2024-01-15", "2024-02-01"]


@pytest.mark.parametrize("change", ["content", "extra file", "missing file", "renamed file"])
def test_delivery_differing_by_one_file_is_not_a_duplicate(
    tmp_path: Path, layout: LakeLayout, change: str
) -> None:
    """One file more, less, changed or renamed: a new delivery, landed without the flag."""
    source = delivery_folder(tmp_path)
    land_delivery(source, DELIVERY, layout)
    if change == "content":
        (source / "vs.csv").write_bytes(b"STUDYID\n")
    elif change == "extra file":
        (source / ".DS_Store").write_bytes(b"finder noise")
    elif change == "missing file":
        (source / "vs.csv").unlink()
    else:
        (source / "vs.csv").rename(source / "vs2.csv")
    result = land_delivery(source, LATER, layout)
    assert (result.already_landed, result.duplicate_of) == (False, None)
    assert "duplicate_of" not in json.loads(
        (landing_dir(layout, LATER) / MANIFEST_NAME).read_text()
    )


def test_same_files_in_another_study_are_not_a_duplicate(
    tmp_path: Path, layout: LakeLayout
) -> None:
    """Duplicates are looked for within the study only."""
    source = delivery_folder(tmp_path)
    land_delivery(source, DELIVERY, layout)
    other_study = Delivery("S02", DELIVERY.delivery)
    assert land_delivery(source, other_study, layout).duplicate_of is None


def test_find_duplicate_skips_incomplete_and_malformed_deliveries(
    tmp_path: Path, layout: LakeLayout
) -> None:
    """Folders without a manifest (a staging folder, a half copy, a stray) and a manifest that
    cannot be read are never taken for the delivery being landed."""
    source = delivery_folder(tmp_path)
    files = [
        LandedFile(name, len(content), hashlib.sha256(content).hexdigest())
        for name, content in FILES.items()
    ]
    study = landing_dir(layout).parent
    for name in (".2024-01-15.landing-123", "2024-01-15", "notes"):
        shutil.copytree(source, study / name)
    (study / "2024-01-16").mkdir()
    (study / "2024-01-16" / MANIFEST_NAME).write_text("{not json")
    (study / "2024-01-17").mkdir()
    (study / "2024-01-17" / MANIFEST_NAME).write_text('{"files": [{"name": "dm.csv"}]}')

    assert landed_deliveries(layout, "S01") == [
        Delivery("S01", "2024-01-16"),
        Delivery("S01", "2024-01-17"),
    ]
    assert find_duplicate(layout, LATER, files) is None
    assert find_duplicate(layout, LATER, reversed(files)) is None
    assert land_delivery(source, LATER, layout).duplicate_of is None
    assert find_duplicate(layout, Delivery("S01", "2024-03-01"), reversed(files)) == LATER
    assert find_duplicate(layout, LATER, files) is None  # a delivery is not its own duplicate


# ---------------------------------------------------------------------------- S3 lake (moto)


def bucket_key(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def s3_keys(aws: AwsEmulator, layout: LakeLayout, delivery: Delivery) -> list[str]:
    """The keys under a delivery's landing prefix, relative to it."""
    prefix = bucket_key(layout.landing(delivery))[1] + "/"
    listed = aws.client("s3").list_objects_v2(Bucket=LAKE_BUCKET, Prefix=prefix)
    return sorted(o["Key"][len(prefix) :] for o in listed.get("Contents", []))


def test_s3_duplicate_is_refused_then_allowed_and_recorded(
    tmp_path: Path, aws_s3: AwsEmulator, s3_layout: LakeLayout
) -> None:
    """On an S3 lake the same files under a new id are refused naming the earlier delivery;
    allowed, they land with duplicate_of in the manifest; hidden files are uploaded too."""
    source = delivery_folder(tmp_path, {**FILES, ".DS_Store": b"x"})
    land_delivery(source, DELIVERY, s3_layout)
    assert s3_keys(aws_s3, s3_layout, DELIVERY) == sorted([*FILES, ".DS_Store", MANIFEST_NAME])

    with pytest.raises(LandingError) as raised:
        land_delivery(source, LATER, s3_layout)
    assert str(raised.value) == (
        "delivery S01/2024-02-01 carries the same 4 files, byte for byte, as S01/2024-01-15; "
        "not landed (land it anyway with --allow-duplicate)"
    )
    assert s3_keys(aws_s3, s3_layout, LATER) == []

    result = land_delivery(source, LATER, s3_layout, allow_duplicate=True)
    assert result.duplicate_of == DELIVERY
    manifest = read_manifest(s3_layout, LATER)
    assert manifest is not None and manifest["duplicate_of"] == "S01/2024-01-15"
    again = land_delivery(source, LATER, s3_layout)
    assert (again.already_landed, again.duplicate_of) == (True, DELIVERY)


def test_s3_find_duplicate_costs_one_listing_and_one_read_per_manifest(
    tmp_path: Path, s3_layout: LakeLayout, s3_calls: list[str]
) -> None:
    """What a landing sensor pays per new delivery: one ListObjectsV2 of the study's landing
    prefix, then one GetObject per other delivery's manifest (none for an incomplete one)."""
    for day in ("2024-01-15", "2024-01-16", "2024-01-17"):
        source = delivery_folder(tmp_path / day, {**FILES, "dm.csv": day.encode()})
        land_delivery(source, Delivery("S01", day), s3_layout)
    source = delivery_folder(tmp_path / "new")
    # An upload still under way: files, but no manifest yet.
    _, data_key = bucket_key(s3_layout.landing(Delivery("S01", "2024-01-20")) + "/dm.csv")
    boto3.client("s3").put_object(Bucket=LAKE_BUCKET, Key=data_key, Body=FILES["dm.csv"])
    files = [
        LandedFile(name, len(content), hashlib.sha256(content).hexdigest())
        for name, content in FILES.items()
    ]
    s3_calls.clear()
    assert find_duplicate(s3_layout, LATER, files) is None
    assert s3_calls == ["ListObjectsV2", "GetObject", "GetObject", "GetObject"]

    land_delivery(source, Delivery("S01", "2024-01-18"), s3_layout)
    s3_calls.clear()
    assert find_duplicate(s3_layout, LATER, files) == Delivery("S01", "2024-01-18")
    assert s3_calls.count("ListObjectsV2") == 1


def test_land_command_uploads_to_an_s3_lake(
    tmp_path: Path, aws_s3: AwsEmulator, s3_layout: LakeLayout, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`clinical-platform land` writes the same landing layout and manifest on S3 as locally
    (files first, manifest last) and registers the partition."""
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    source = delivery_folder(tmp_path)
    where = ["--study", DELIVERY.study, "--delivery", DELIVERY.delivery, "--lake", s3_layout.root]
    code, out, err = run_command(["land", str(source), *where])
    assert code == 0, err
    assert out.splitlines()[0] == (
        f"{DELIVERY.key}: landed, {len(FILES)} files -> {s3_layout.landing(DELIVERY)}"
    )
    assert s3_keys(aws_s3, s3_layout, DELIVERY) == sorted([*FILES, MANIFEST_NAME])
    manifest = read_manifest(s3_layout, DELIVERY)
    assert manifest is not None
    assert {f["name"]: f["sha256"] for f in manifest["files"]} == {
        name: hashlib.sha256(content).hexdigest() for name, content in FILES.items()
    }
    with dg.DagsterInstance.from_config(str(tmp_path / "dagster_home")) as instance:
        assert instance.has_dynamic_partition("clinical_deliveries", DELIVERY.key)
    assert run_command(["land", str(source), *where])[1].startswith(
        f"{DELIVERY.key}: already landed (same files)"
    )


def test_s3_landing_verifies_from_the_checksums_s3_keeps(
    tmp_path: Path, s3_layout: LakeLayout, s3_calls: list[str]
) -> None:
    """`land` uploads with SHA-256 checksums, so verifying a landed S3 delivery reads no
    file (HeadObject only); an object replaced without one is re-read and found modified, and
    an object the manifest does not list is an extra file."""
    land_delivery(delivery_folder(tmp_path), DELIVERY, s3_layout)
    s3_calls.clear()
    clean = verify_landing(s3_layout, DELIVERY)
    assert (clean.holds, clean.landing_files) == (True, len(FILES))
    # The manifest is read (GetObject); each landed file and the manifest answer HeadObject.
    assert s3_calls.count("GetObject") == 1
    assert s3_calls.count("HeadObject") == len(FILES) + 1
    landing = s3_layout.landing(DELIVERY)
    s3 = boto3.client("s3")
    s3.put_object(Bucket=LAKE_BUCKET, Key=bucket_key(f"{landing}/dm.csv")[1], Body=b"changed")
    s3.put_object(Bucket=LAKE_BUCKET, Key=bucket_key(f"{landing}/extra.csv")[1], Body=b"x")
    found = verify_landing(s3_layout, DELIVERY)
    assert found.problems == [
        f"{landing}/dm.csv: modified (listed in the manifest; 7 bytes, sha256 "
        f"{hashlib.sha256(b'changed').hexdigest()[:16]}…; the manifest says "
        f"{len(FILES['dm.csv'])} bytes, {hashlib.sha256(FILES['dm.csv']).hexdigest()[:16]}…)",
        f"{landing}/extra.csv: extra file (not in the manifest)",
    ]
