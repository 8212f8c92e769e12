"""Landing a delivery (`clinical_platform.lake.land_delivery`): copy, manifest, immutability."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from clinical_platform.lake import LandedFile, LandingError, land_delivery
from spark_jobs.contracts.layout import MANIFEST_NAME, Delivery, LakeLayout, local_path

DELIVERY = Delivery("S01", "2024-01-15")
FILES = {
    "dm.csv": b"STUDYID,USUBJID\nS01,S01-001\n",
    "ae.xpt": bytes(range(256)) * 10,
    "vs.csv": b"",
}


def delivery_folder(parent: Path, files: dict[str, bytes] | None = None) -> Path:
    folder = parent / "incoming"
    folder.mkdir()
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

    (source / ".DS_Store").write_bytes(b"finder noise")  # hidden files do not count
    again = land_delivery(source, DELIVERY, layout)
    assert again.already_landed
    assert [f.name for f in again.files] == sorted(FILES)
    assert (landing_dir(layout) / MANIFEST_NAME).read_bytes() == manifest
    assert study_dir_entries(layout) == ["2024-01-15"]


@pytest.mark.parametrize("change", ["content", "extra file", "missing file"])
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
    """A delivery is one flat folder; visible sub-folders are refused, hidden ones ignored."""
    source = delivery_folder(tmp_path)
    (source / "extra").mkdir()
    (source / ".git").mkdir()  # hidden folders are ignored like hidden files
    with pytest.raises(
        LandingError,
        match=r"contains sub-folders \['extra'\]; a delivery is one "
        "flat folder",
    ):
        land_delivery(source, DELIVERY, layout)
    assert study_dir_entries(layout) == []


@pytest.mark.parametrize("hidden", [[], [".DS_Store", "._dm.csv"]])
def test_empty_folder_is_refused(tmp_path: Path, layout: LakeLayout, hidden: list[str]) -> None:
    """A folder with nothing (or only hidden files) is not a delivery."""
    source = delivery_folder(tmp_path, {name: b"x" for name in hidden})
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


def test_hidden_files_are_not_landed(tmp_path: Path, layout: LakeLayout) -> None:
    """Hidden files (.DS_Store, editor locks) are neither copied nor in the manifest."""
    source = delivery_folder(tmp_path, {**FILES, ".DS_Store": b"x", ".~lock.dm.csv#": b"y"})
    result = land_delivery(source, DELIVERY, layout)
    assert [f.name for f in result.files] == sorted(FILES)
    assert sorted(p.name for p in landing_dir(layout).iterdir()) == sorted([*FILES, MANIFEST_NAME])


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
