"""The `spark_jobs` code bundle shipped to Spark: a deterministic, content-hashed zip.

The same bytes give the same hash on every machine, so the hash is the code version recorded
in lineage, the folder a bundle is stored under, and the reason an unchanged bundle is never
uploaded twice.
"""

from __future__ import annotations

import ast
import hashlib
import io
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import spark_jobs
from spark_jobs.contracts.protocol import EntryPoint

PACKAGE_DIR = Path(spark_jobs.__file__).resolve().parent
ENTRY_POINTS = tuple(e.value for e in EntryPoint)
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class CodeBundle:
    """The zipped package plus the entry scripts spark-submit runs."""

    sha256: str
    archive: bytes

    @property
    def version(self) -> str:
        """Short form used as Dagster code_version."""
        return self.sha256[:12]

    def entry_script(self, entry_point: str) -> bytes:
        if entry_point not in ENTRY_POINTS:
            raise ValueError(f"unknown Spark entry point {entry_point!r}; known: {ENTRY_POINTS}")
        return (PACKAGE_DIR / f"{entry_point}.py").read_bytes()

    def write_to(self, directory: Path) -> Path:
        """Store the bundle under `<directory>/<sha256>/` once; return that folder.

        Each writer stages in its own temporary folder, so two runs storing the same new
        bundle at once cannot disturb each other; the loser keeps the winner's copy.
        """
        target = directory / self.sha256
        if self._complete(target):
            return target
        directory.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{self.sha256[:12]}-", dir=directory))
        try:
            (staging / "spark_jobs.zip").write_bytes(self.archive)
            for entry_point in ENTRY_POINTS:
                (staging / f"{entry_point}.py").write_bytes(self.entry_script(entry_point))
            if target.exists() and not self._complete(target):
                shutil.rmtree(target, ignore_errors=True)
            try:
                staging.rename(target)
            except OSError:
                if not self._complete(target):
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target

    def _complete(self, target: Path) -> bool:
        archive = target / "spark_jobs.zip"
        return (
            archive.exists()
            and hashlib.sha256(archive.read_bytes()).hexdigest() == self.sha256
            and all((target / f"{e}.py").exists() for e in ENTRY_POINTS)
        )


def _source_files() -> list[Path]:
    return sorted(p for p in PACKAGE_DIR.rglob("*.py") if "__pycache__" not in p.parts)


@cache
def build_bundle() -> CodeBundle:
    """Zip `spark_jobs` with fixed timestamps and order, so the hash depends on content only."""
    buffer = io.BytesIO()
    # Stored, not deflated: the bytes then depend on our files only, not on the zlib build.
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for path in _source_files():
            name = "spark_jobs/" + path.relative_to(PACKAGE_DIR).as_posix()
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_STORED
            archive.writestr(info, path.read_bytes())
    data = buffer.getvalue()
    return CodeBundle(sha256=hashlib.sha256(data).hexdigest(), archive=data)


def code_version() -> str:
    """The version of the whole bundle, short form (each record keeps the full hash)."""
    return build_bundle().version


def stage_code_version(entry_point: str, package_dir: Path = PACKAGE_DIR) -> str:
    """The Dagster code version of one stage's assets: a hash of the `spark_jobs` modules its
    entry point imports, directly or not. A change to features.py then makes only the feature
    partitions stale in the UI; a change to a module every stage imports, all of them."""
    digest = hashlib.sha256()
    for path in sorted(imported_modules(package_dir / f"{entry_point}.py", package_dir)):
        digest.update(path.relative_to(package_dir).as_posix().encode("utf-8") + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def imported_modules(script: Path, package_dir: Path = PACKAGE_DIR) -> set[Path]:
    """`script` and every module of the package it imports, with their packages' __init__."""
    found: set[Path] = set()
    pending = [script]
    while pending:
        path = pending.pop()
        if path in found:
            continue
        found.add(path)
        for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for name in names:
                pending += _module_files(name, package_dir)
    return found


def _module_files(name: str, package_dir: Path) -> list[Path]:
    """The files importing `name` runs inside the package (none outside it)."""
    parts = name.split(".")
    if parts[0] != package_dir.name:
        return []
    files: list[Path] = []
    for depth in range(1, len(parts) + 1):
        base = package_dir.joinpath(*parts[1:depth])
        for candidate in (base / "__init__.py", base.with_suffix(".py")):
            if candidate.is_file() and candidate != package_dir.with_suffix(".py"):
                files.append(candidate)
    return files
