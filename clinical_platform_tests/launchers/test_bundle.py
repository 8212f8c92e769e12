"""The content-hashed `spark_jobs` bundle: deterministic bytes, exact contents, atomic storage."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from clinical_platform.launchers import bundle
from clinical_platform.launchers.bundle import (
    ENTRY_POINTS,
    PACKAGE_DIR,
    build_bundle,
    code_version,
    imported_modules,
    stage_code_version,
)


@pytest.fixture(autouse=True)
def fresh_bundle_cache() -> Iterator[None]:
    """Every test builds its own bundle and leaves no bundle of a patched package cached."""
    build_bundle.cache_clear()
    yield
    build_bundle.cache_clear()


@pytest.fixture
def package_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of `spark_jobs` that the bundle is built from, so a test may change files."""
    copy = tmp_path / "spark_jobs"
    shutil.copytree(PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(bundle, "PACKAGE_DIR", copy)
    return copy


def expected_names(package: Path) -> set[str]:
    return {
        "spark_jobs/" + p.relative_to(package).as_posix()
        for p in package.rglob("*.py")
        if "__pycache__" not in p.parts
    }


def test_two_builds_are_byte_identical() -> None:
    """The hash depends on content only: rebuilding gives the very same bytes."""
    first = build_bundle()
    build_bundle.cache_clear()
    second = build_bundle()
    assert first is not second
    assert first.archive == second.archive
    assert first.sha256 == second.sha256 == hashlib.sha256(first.archive).hexdigest()
    assert first.version == first.sha256[:12] == code_version()


def test_zip_holds_every_python_file_and_nothing_else() -> None:
    """Every spark_jobs/**/*.py, with its exact bytes; no caches, folders or other files."""
    archive = zipfile.ZipFile(io.BytesIO(build_bundle().archive))
    names = archive.namelist()
    assert names == sorted(names)
    assert set(names) == expected_names(PACKAGE_DIR)
    assert "spark_jobs/quality/conform.py" in names
    assert "spark_jobs/contracts/__init__.py" in names
    for info in archive.infolist():
        assert info.date_time == (1980, 1, 1, 0, 0, 0)
        assert info.compress_type == zipfile.ZIP_STORED
        relative = info.filename.removeprefix("spark_jobs/")
        assert archive.read(info) == (PACKAGE_DIR / relative).read_bytes()


def test_non_python_files_and_caches_are_left_out(package_copy: Path) -> None:
    """Caches, notes and data files beside the code never enter the bundle."""
    (package_copy / "__pycache__").mkdir(exist_ok=True)
    (package_copy / "__pycache__" / "ingest.cpython-311.py").write_text("# cache\n")
    (package_copy / "notes.md").write_text("not code\n")
    (package_copy / "quality" / "data.json").write_text("{}\n")
    names = set(zipfile.ZipFile(io.BytesIO(build_bundle().archive)).namelist())
    assert names == expected_names(package_copy)
    assert not any("__pycache__" in n or not n.endswith(".py") for n in names)


def test_hash_changes_with_content_and_not_with_timestamps(package_copy: Path) -> None:
    """Touching a file keeps the hash; changing one byte of code changes it."""
    original = build_bundle().sha256
    build_bundle.cache_clear()

    curate = package_copy / "curate.py"
    stat = curate.stat()
    os.utime(curate, (stat.st_atime + 3600, stat.st_mtime + 3600))
    assert build_bundle().sha256 == original
    build_bundle.cache_clear()

    curate.write_bytes(curate.read_bytes() + b"\n# changed\n")
    changed = build_bundle()
    assert changed.sha256 != original
    assert changed.entry_script("curate").endswith(b"# changed\n")


def test_added_module_changes_the_hash(package_copy: Path) -> None:
    """A new module is shipped and gives the bundle a new hash."""
    original = build_bundle().sha256
    build_bundle.cache_clear()
    (package_copy / "quality" / "extra.py").write_text("VALUE = 1\n")
    rebuilt = build_bundle()
    assert rebuilt.sha256 != original
    assert "spark_jobs/quality/extra.py" in zipfile.ZipFile(io.BytesIO(rebuilt.archive)).namelist()


def test_write_to_stores_bundle_and_entry_scripts(tmp_path: Path) -> None:
    """The bundle folder holds the zip and the entry scripts, named by the hash."""
    code = build_bundle()
    target = code.write_to(tmp_path / "code")
    assert target == tmp_path / "code" / code.sha256
    assert sorted(p.name for p in target.iterdir()) == sorted(
        ["spark_jobs.zip", *(f"{e}.py" for e in ENTRY_POINTS)]
    )
    assert (target / "spark_jobs.zip").read_bytes() == code.archive
    for entry_point in ENTRY_POINTS:
        assert (target / f"{entry_point}.py").read_bytes() == (
            PACKAGE_DIR / f"{entry_point}.py"
        ).read_bytes()
    assert sorted(p.name for p in (tmp_path / "code").iterdir()) == [code.sha256]


def test_write_to_is_idempotent(tmp_path: Path) -> None:
    """A second write finds the bundle in place and rewrites nothing; no temp folder remains."""
    code = build_bundle()
    target = code.write_to(tmp_path)
    archive = target / "spark_jobs.zip"
    written = archive.stat().st_mtime_ns
    assert code.write_to(tmp_path) == target
    assert archive.stat().st_mtime_ns == written
    assert sorted(p.name for p in tmp_path.iterdir()) == [code.sha256]


def test_write_to_repairs_a_damaged_bundle(tmp_path: Path) -> None:
    """A stored zip whose bytes no longer match its hash is replaced, without leftovers."""
    code = build_bundle()
    target = code.write_to(tmp_path)
    (target / "spark_jobs.zip").write_bytes(b"damaged")
    (target / "stray.txt").write_text("left by hand\n")
    assert code.write_to(tmp_path) == target
    assert (target / "spark_jobs.zip").read_bytes() == code.archive
    assert not (target / "stray.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [code.sha256]


def test_unknown_entry_point_is_refused() -> None:
    """Only ingest, curate and features can be submitted."""
    with pytest.raises(ValueError, match="unknown Spark entry point 'train'"):
        build_bundle().entry_script("train")


def test_concurrent_writers_of_one_bundle_both_succeed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs launched together after a code change both store the bundle and go on.

    The interleaving is made deterministic: while this writer is staging its entry scripts,
    another writer (a second run's step) stores the same bundle completely.
    """
    code = build_bundle()
    original = bundle.CodeBundle.entry_script
    other_run: dict[str, Path] = {}

    def entry_script_while_another_run_writes(self: bundle.CodeBundle, entry_point: str) -> bytes:
        if "started" not in other_run:
            other_run["started"] = tmp_path  # the other writer must not interleave again
            other_run["target"] = self.write_to(tmp_path)
        return original(self, entry_point)

    monkeypatch.setattr(bundle.CodeBundle, "entry_script", entry_script_while_another_run_writes)
    target = code.write_to(tmp_path)
    assert target == other_run["target"] == tmp_path / code.sha256
    assert (target / "spark_jobs.zip").read_bytes() == code.archive
    assert sorted(p.name for p in tmp_path.iterdir()) == [code.sha256]


def test_each_stage_has_the_code_version_of_the_modules_its_job_imports(tmp_path: Path) -> None:
    """Editing features.py changes only the features stage's version (so only feature
    partitions turn stale in the UI); editing a module every job imports changes them all."""
    package = tmp_path / "spark_jobs"
    shutil.copytree(PACKAGE_DIR, package, ignore=shutil.ignore_patterns("__pycache__"))
    stages = ("ingest", "curate", "features")

    def versions() -> dict[str, str]:
        return {s: stage_code_version(s, package) for s in stages}

    before = versions()
    assert before == {s: stage_code_version(s) for s in stages} and len(set(before.values())) == 3
    assert package / "subject_profile.py" in imported_modules(package / "features.py", package)
    assert package / "subject_profile.py" not in imported_modules(package / "ingest.py", package)
    with (package / "features.py").open("a") as script:
        script.write("\n# an edit\n")
    edited = versions()
    assert [s for s in stages if edited[s] != before[s]] == ["features"]
    with (package / "contracts" / "outputs.py").open("a") as shared:
        shared.write("\n# an edit\n")
    assert all(versions()[s] != edited[s] for s in stages)
