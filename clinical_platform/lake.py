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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from clinical_platform.catalog import (
    LineageIndex,
    catalog_settings,
    latest_record,
    open_catalog,
    rows_of,
)
from spark_jobs.contracts.layout import (
    MANIFEST_NAME,
    Delivery,
    LakeLayout,
    PartitionKeyError,
    delivery_order,
    local_path,
    next_delivery,
)
from spark_jobs.contracts.outputs import (
    Zone,
    asset_outputs,
    family_outputs,
    rejected_files_output,
)
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
    duplicate_of: Delivery | None = None


Fingerprint = frozenset[tuple[str, int, str]]


def fingerprint(files: Iterable[LandedFile]) -> Fingerprint:
    """What makes two deliveries the same: their (name, size, sha256), in any order."""
    return frozenset((f.name, f.size, f.sha256) for f in files)


def manifest_files(manifest: dict[str, Any]) -> tuple[LandedFile, ...]:
    """The files a `_delivery.json` lists (KeyError, TypeError or ValueError if malformed)."""
    return tuple(
        LandedFile(str(f["name"]), int(f["size"]), str(f["sha256"])) for f in manifest["files"]
    )


def manifest_text(
    delivery: Delivery,
    files: Iterable[LandedFile],
    source_name: str,
    duplicate_of: Delivery | None = None,
) -> str:
    """The `_delivery.json` of a delivery, as `land` and the landing sensor write it."""
    manifest: dict[str, Any] = {
        "manifest_version": 1,
        "study": delivery.study,
        "delivery": delivery.delivery,
        "landed_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "source_folder_name": source_name,
        "files": [{"name": f.name, "size": f.size, "sha256": f.sha256} for f in files],
    }
    if duplicate_of is not None:
        manifest["duplicate_of"] = duplicate_of.key
    return json.dumps(manifest, indent=2) + "\n"


def land_delivery(
    source: Path, delivery: Delivery, layout: LakeLayout, *, allow_duplicate: bool = False
) -> LandingResult:
    """Copy a folder of delivered files into landing with a `_delivery.json` manifest.

    Locally the files are copied to a hidden staging folder, hashed, described in the manifest
    and only then renamed into place, so a half-copied delivery is never visible. On S3 the
    files are uploaded first and the manifest last: a delivery without its manifest is
    incomplete, to the platform as to a landing sensor. Landing the same content again is a
    no-op; different content under an existing delivery id is refused, because deliveries are
    immutable (use a `_2` suffix for a second transfer on one day). The same content as another
    landed delivery of the study is refused unless `allow_duplicate`, and then recorded as
    `duplicate_of` that delivery in the manifest.
    """
    entries = delivery_files(source)
    files = [_describe(p) for p in entries]
    existing = read_manifest(layout, delivery)
    if existing is not None:
        if fingerprint(manifest_files(existing)) != fingerprint(files):
            raise LandingError(
                f"delivery {delivery.key} is already landed with different files; deliveries "
                f"are immutable — land this one as {delivery.study}/"
                f"{next_delivery(delivery.delivery)}"
            )
        earlier = existing.get("duplicate_of")
        return LandingResult(
            delivery,
            layout.landing(delivery),
            tuple(files),
            True,
            Delivery.from_key(earlier) if isinstance(earlier, str) else None,
        )
    duplicate_of = find_duplicate(layout, delivery, files)
    if duplicate_of is not None and not allow_duplicate:
        count = f"{len(files)} file{'' if len(files) == 1 else 's'}"
        raise LandingError(
            f"delivery {delivery.key} carries the same {count}, byte for byte, as "
            f"{duplicate_of.key}; not landed (land it anyway with --allow-duplicate)"
        )
    manifest = manifest_text(delivery, files, source.name, duplicate_of)
    if layout.root.startswith("file:"):
        _copy_locally(entries, files, manifest, delivery, layout)
    else:
        _upload(entries, manifest, delivery, layout)
    return LandingResult(delivery, layout.landing(delivery), tuple(files), False, duplicate_of)


def delivery_files(source: Path) -> list[Path]:
    """Every file of a delivery folder, hidden and temporary ones included.

    The platform accounts for each file that arrived (ingest reports the ones it skips), so
    none may be left behind unlisted; sub-folders, hidden or not, are refused.
    """
    if not source.is_dir():
        raise LandingError(f"{source}: not a folder of delivery files")
    entries = sorted(source.iterdir())
    subfolders = [p.name for p in entries if p.is_dir()]
    if subfolders:
        raise LandingError(
            f"{source}: contains sub-folders {subfolders}; a delivery is one flat folder of files"
        )
    special = [p.name for p in entries if p.exists() and not p.is_file()]
    if special:
        raise LandingError(
            f"{source}: {special} are not regular files (pipes, sockets or devices); "
            "a delivery is one flat folder of files"
        )
    if not entries:
        raise LandingError(f"{source}: the folder is empty")
    if any(p.name == MANIFEST_NAME for p in entries):
        raise LandingError(
            f"{source}: already contains {MANIFEST_NAME}; the manifest is written by landing"
        )
    return entries


def find_duplicate(
    layout: LakeLayout, delivery: Delivery, files: Iterable[LandedFile]
) -> Delivery | None:
    """The oldest other landed delivery of the study with the same files, byte for byte.

    Costs one listing of the study's landing folder (or S3 prefix) and at most one read per
    other delivery's manifest, so a landing sensor can call it for each new delivery.
    Deliveries without a manifest (incomplete) or with a malformed one are never a match.
    """
    wanted = fingerprint(files)
    for other in landed_deliveries(layout, delivery.study):
        if other == delivery:
            continue
        manifest = read_manifest(layout, other)
        try:
            same = manifest is not None and fingerprint(manifest_files(manifest)) == wanted
        except (KeyError, TypeError, ValueError):
            continue  # a malformed manifest is reported by the ingest job, not matched here
        if same:
            return other
    return None


def landed_deliveries(layout: LakeLayout, study: str) -> list[Delivery]:
    """The study's deliveries that have a manifest, oldest first, from one listing.

    Staging folders and anything not named like a delivery are skipped.
    """
    study_folder = layout.study_landing(study) + "/"
    manifest_suffix = "/" + MANIFEST_NAME
    if layout.root.startswith("file:"):
        folder = Path(local_path(study_folder))
        names = [p.name for p in folder.iterdir() if p.is_dir()] if folder.is_dir() else []
        candidates = _deliveries_named(study, names)
        return [d for d in candidates if Path(local_path(layout.manifest(d))).is_file()]
    with_manifest = [
        key.removesuffix(manifest_suffix)
        for key in s3_keys_under(study_folder)
        if key.endswith(manifest_suffix)
    ]
    return _deliveries_named(study, with_manifest)


def _deliveries_named(study: str, names: Iterable[str]) -> list[Delivery]:
    deliveries: set[Delivery] = set()
    for name in names:
        try:
            deliveries.add(Delivery(study, name))
        except PartitionKeyError:
            continue
    return sorted(deliveries, key=lambda d: delivery_order(d.delivery))


def s3_keys_under(prefix_uri: str) -> list[str]:
    """Every key under an S3 prefix, relative to it: one paginated ListObjectsV2."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, prefix = bucket_key(prefix_uri)
    pages = (
        boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    )
    try:
        return [o["Key"][len(prefix) :] for page in pages for o in page.get("Contents", [])]
    except (BotoCoreError, ClientError) as error:
        raise LandingError(f"{prefix_uri}: cannot list the landed deliveries ({error})") from None


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
            bucket, key = bucket_key(f"{landing}/{entry.name}")
            with entry.open("rb") as body:
                s3.put_object(Bucket=bucket, Key=key, Body=body, ChecksumAlgorithm="SHA256")
        bucket, key = bucket_key(layout.manifest(delivery))
        s3.put_object(
            Bucket=bucket, Key=key, Body=manifest.encode("utf-8"), ChecksumAlgorithm="SHA256"
        )
    except (BotoCoreError, ClientError) as error:
        raise LandingError(f"{landing}: upload failed ({error})") from None


def bucket_key(uri: str) -> tuple[str, str]:
    """(bucket, key) of an s3:// (or s3a://) URI, without importing boto3."""
    bucket, _, key = uri.split("://", 1)[1].partition("/")
    return bucket, key


def read_manifest(layout: LakeLayout, delivery: Delivery) -> dict[str, Any] | None:
    """The landed delivery's manifest, from a local or an S3 lake; None if there is none."""
    uri = layout.manifest(delivery)
    if layout.root.startswith("file:"):
        return _read_manifest(Path(local_path(uri)))
    import boto3
    from botocore.exceptions import ClientError

    bucket, key = bucket_key(uri)
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


def lineage_index(layout: LakeLayout) -> LineageIndex:
    """The lake's lineage records, each study's read once, for one command."""
    return LineageIndex(open_catalog(catalog_settings(layout)))


def delivery_records(
    layout: LakeLayout, delivery: Delivery, index: LineageIndex | None = None
) -> dict[str, dict[str, Any]]:
    """The latest lineage record of each table's partition of the delivery, by table name."""
    index = index or lineage_index(layout)
    latest: dict[str, dict[str, Any]] = {}
    family = layout.family
    for output in (*asset_outputs(family), *family_outputs(family, Zone.QUARANTINE)):
        record = index.latest(output.table, delivery)
        if record is not None:
            latest[output.table] = record
    return latest


def same_data_elsewhere(
    layout: LakeLayout,
    delivery: Delivery,
    records: Mapping[str, Mapping[str, Any]],
    index: LineageIndex | None = None,
) -> dict[str, list[str]]:
    """Per table, the study's other deliveries whose partition holds the same data (equal
    data hash, provenance left out), from the tables' lineage records."""
    index = index or lineage_index(layout)
    found: dict[str, list[str]] = {}
    for table, record in records.items():
        digest = record.get("data_hash")
        if not digest:
            continue
        latest: dict[str, Mapping[str, Any]] = {}
        for other in index.records(table, study=delivery.study):
            latest[other["partition"]] = other
        same = [
            key
            for key, other in latest.items()
            if key != delivery.key and other.get("data_hash") == digest
        ]
        if same:
            found[table] = sorted(same)
    return found


def read_lineage(
    layout: LakeLayout, zone: str, dataset: str, delivery: Delivery
) -> dict[str, Any] | None:
    """The lineage record of one committed partition, or None if there is none."""
    catalog = open_catalog(catalog_settings(layout))
    return latest_record(catalog, table_name(zone, layout.family, dataset), delivery)


def rejected_files(layout: LakeLayout, delivery: Delivery) -> list[dict[str, Any]]:
    """Rows of quarantine.<family>_rejected_files for the delivery."""
    catalog = open_catalog(catalog_settings(layout))
    table = rejected_files_output(layout.family).table
    return sorted(rows_of(catalog, table, delivery), key=lambda r: r["file"])
