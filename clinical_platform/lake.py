"""The lake from the Dagster side: landing deliveries, zone paths, lineage records.

Spark jobs read and write the data; this module only lands files (copy plus manifest, then an
atomic rename) and reads the small `_lineage.json` records for commands and the dossier.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from clinical_platform.catalog import catalog_settings, latest_record, open_catalog, rows_of
from spark_jobs.contracts.layout import (
    MANIFEST_NAME,
    Delivery,
    LakeLayout,
    local_path,
    next_delivery,
)
from spark_jobs.contracts.outputs import QUARANTINE_OUTPUTS, REJECTED_FILES, asset_outputs
from spark_jobs.contracts.tables import table_name

CHUNK = 1 << 20


class LandingError(ValueError):
    """A delivery that cannot be landed; the message names the folder or file and the problem."""


class ClinicalLake(dg.ConfigurableResource):
    """Where the lake is; assets turn it into zone paths for the Spark jobs."""

    uri: str = Field(description="Lake root: a local path or s3://bucket/prefix")

    @property
    def layout(self) -> LakeLayout:
        return LakeLayout(self.uri)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class LandedFile:
    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class LandingResult:
    delivery: Delivery
    uri: str
    files: tuple[LandedFile, ...]
    already_landed: bool


def _manifest(delivery: Delivery, files: list[LandedFile], source: Path) -> dict[str, Any]:
    return {
        "manifest_version": 1,
        "study": delivery.study,
        "delivery": delivery.delivery,
        "landed_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "source_folder_name": source.name,
        "files": [{"name": f.name, "size": f.size, "sha256": f.sha256} for f in files],
    }


def land_delivery(source: Path, delivery: Delivery, layout: LakeLayout) -> LandingResult:
    """Copy a folder of delivered files into landing with a `_delivery.json` manifest.

    Locally the files are copied to a hidden staging folder, hashed, described in the manifest
    and only then renamed into place, so a half-copied delivery is never visible. On S3 the
    files are uploaded first and the manifest last: a delivery without its manifest is
    incomplete, to the platform as to a landing sensor. Landing the same content again is a
    no-op; different content under an existing delivery id is refused, because deliveries are
    immutable (use a `_2` suffix for a second transfer on one day).
    """
    entries = delivery_files(source)
    files = [_describe(p) for p in entries]
    existing = read_manifest(layout, delivery)
    if existing is not None:
        same = [(f["name"], f["size"], f["sha256"]) for f in existing["files"]] == [
            (f.name, f.size, f.sha256) for f in files
        ]
        if not same:
            raise LandingError(
                f"delivery {delivery.key} is already landed with different files; deliveries "
                f"are immutable — land this one as {delivery.study}/"
                f"{next_delivery(delivery.delivery)}"
            )
        return LandingResult(delivery, layout.landing(delivery), tuple(files), True)
    manifest = json.dumps(_manifest(delivery, files, source), indent=2) + "\n"
    if layout.root.startswith("file:"):
        _copy_locally(entries, files, manifest, delivery, layout)
    else:
        _upload(entries, manifest, delivery, layout)
    return LandingResult(delivery, layout.landing(delivery), tuple(files), False)


def delivery_files(source: Path) -> list[Path]:
    """The files of a delivery folder, refusing what cannot be one."""
    if not source.is_dir():
        raise LandingError(f"{source}: not a folder of delivery files")
    entries = sorted(p for p in source.iterdir() if not p.name.startswith("."))
    subfolders = [p.name for p in entries if p.is_dir()]
    if subfolders:
        raise LandingError(
            f"{source}: contains sub-folders {subfolders}; a delivery is one flat folder of files"
        )
    if not entries:
        raise LandingError(f"{source}: the folder is empty")
    if any(p.name == MANIFEST_NAME for p in entries):
        raise LandingError(
            f"{source}: already contains {MANIFEST_NAME}; the manifest is written by landing"
        )
    return entries


def _copy_locally(
    entries: list[Path],
    files: list[LandedFile],
    manifest: str,
    delivery: Delivery,
    layout: LakeLayout,
) -> None:
    target = Path(local_path(layout.landing(delivery)))
    staging = Path(local_path(layout.landing_staging(delivery, str(os.getpid()))))
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    expected = {f.name: f.sha256 for f in files}
    try:
        for entry in entries:
            try:
                shutil.copyfile(entry, staging / entry.name)
            except OSError as error:
                raise LandingError(f"{entry}: cannot be copied ({error.strerror})") from None
            if sha256_of(staging / entry.name) != expected[entry.name]:
                raise LandingError(f"{entry}: changed while it was being copied; land it again")
        (staging / MANIFEST_NAME).write_text(manifest)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _upload(entries: list[Path], manifest: str, delivery: Delivery, layout: LakeLayout) -> None:
    """Files first, the manifest last; S3 checks each upload's SHA-256 on arrival."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    s3 = boto3.client("s3")
    landing = layout.landing(delivery)
    try:
        for entry in entries:
            bucket, key = _bucket_key(f"{landing}/{entry.name}")
            with entry.open("rb") as body:
                s3.put_object(Bucket=bucket, Key=key, Body=body, ChecksumAlgorithm="SHA256")
        bucket, key = _bucket_key(layout.manifest(delivery))
        s3.put_object(Bucket=bucket, Key=key, Body=manifest.encode("utf-8"))
    except (BotoCoreError, ClientError) as error:
        raise LandingError(f"{landing}: upload failed ({error})") from None


def _bucket_key(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.split("://", 1)[1].partition("/")
    return bucket, key


def read_manifest(layout: LakeLayout, delivery: Delivery) -> dict[str, Any] | None:
    """The landed delivery's manifest, from a local or an S3 lake; None if there is none."""
    uri = layout.manifest(delivery)
    if layout.root.startswith("file:"):
        return _read_manifest(Path(local_path(uri)))
    import boto3
    from botocore.exceptions import ClientError

    bucket, key = _bucket_key(uri)
    try:
        body = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise
    return json.loads(body)


def _describe(path: Path) -> LandedFile:
    try:
        return LandedFile(path.name, path.stat().st_size, sha256_of(path))
    except OSError as error:
        raise LandingError(f"{path}: cannot be read ({error.strerror})") from None


def _read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def delivery_records(layout: LakeLayout, delivery: Delivery) -> dict[str, dict[str, Any]]:
    """The latest lineage record of each table's partition of the delivery, by table name."""
    catalog = open_catalog(catalog_settings(layout))
    latest: dict[str, dict[str, Any]] = {}
    for output in (*asset_outputs(), *QUARANTINE_OUTPUTS):
        record = latest_record(catalog, output.table, delivery)
        if record is not None:
            latest[output.table] = record
    return latest


def read_lineage(
    layout: LakeLayout, zone: str, dataset: str, delivery: Delivery
) -> dict[str, Any] | None:
    """The lineage record of one committed partition, or None if there is none."""
    catalog = open_catalog(catalog_settings(layout))
    return latest_record(catalog, table_name(zone, layout.family, dataset), delivery)


def rejected_files(layout: LakeLayout, delivery: Delivery) -> list[dict[str, Any]]:
    """Rows of quarantine.<family>_rejected_files for the delivery."""
    catalog = open_catalog(catalog_settings(layout))
    return sorted(rows_of(catalog, REJECTED_FILES.table, delivery), key=lambda r: r["file"])
