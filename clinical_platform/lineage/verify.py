"""Prove a delivery unchanged since it was committed: landing files, data files and records.

Every lineage record lists the sha256 of its partition's data files, and is chained: raw names
the sha256 of the delivery manifest, every other record the sha256 of each record it read.
Verifying re-hashes what the lake holds now and compares:

- each landed file against the manifest (size and sha256), and the landing folder against the
  manifest's list (missing and extra files);
- each record against its own recorded sha256 (an edited record);
- each data file a record lists against its sha256 (modified or missing), and the partition's
  current files in the table against the record (an extra file committed without a record);
- each link of the chain: the manifest raw read, and each input record another record read
  (a record that exists in no version of that partition is a broken chain).

Nothing here starts Spark: records and table metadata are read through pyiceberg, files from
the local disk or S3. Iceberg's metadata holds file sizes and statistics, not content hashes,
so the hashes come from the records.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clinical_platform.catalog import LineageIndex
from clinical_platform.lake import bucket_key, lineage_index, read_manifest
from spark_jobs.contracts.layout import MANIFEST_NAME, Delivery, LakeLayout, local_path
from spark_jobs.contracts.outputs import (
    DatasetOutput,
    Zone,
    asset_outputs,
    every_asset_output,
    family_outputs,
)
from spark_jobs.contracts.protocol import record_sha256
from spark_jobs.contracts.tables import PARTITION_COLUMNS

_CHUNK = 1 << 20


@dataclass
class Verification:
    """What verifying a delivery found: one line per problem, and what was checked."""

    delivery: Delivery
    problems: list[str] = field(default_factory=list)
    landing_files: int = 0
    records: int = 0
    data_files: int = 0

    @property
    def holds(self) -> bool:
        return not self.problems

    @property
    def summary(self) -> str:
        checked = (
            f"{self.landing_files} landing file(s), {self.records} record(s) and "
            f"{self.data_files} data file(s)"
        )
        if self.holds:
            return f"{self.delivery.key}: verified {checked}: all unchanged, chain intact"
        return f"{self.delivery.key}: {len(self.problems)} problem(s) in {checked}"


def digest_of(uri: str) -> tuple[int, str] | None:
    """Size and sha256 of a local or S3 file; None when it does not exist. An S3 object that
    was stored with a whole-object SHA-256 checksum (as `land` uploads) is not read: S3
    checked that checksum against the bytes it received."""
    if "://" in uri and not uri.startswith("file:"):
        stored = _s3_checksum(uri)
        if stored is not None:
            return stored
    size, digest = 0, hashlib.sha256()
    try:
        for chunk in _chunks(uri):
            size += len(chunk)
            digest.update(chunk)
    except FileNotFoundError:
        return None
    return size, digest.hexdigest()


def _s3_checksum(uri: str) -> tuple[int, str] | None:
    """(size, sha256) from the object's stored SHA-256 checksum, None where it has none."""
    import boto3
    from botocore.exceptions import ClientError

    bucket, key = bucket_key(uri)
    try:
        head = boto3.client("s3").head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    except ClientError:
        return None  # missing or unreadable: reading it says which
    checksum = head.get("ChecksumSHA256")
    if not checksum or "-" in checksum or head.get("ChecksumType") == "COMPOSITE":
        return None  # none, or one of a multipart upload's parts: not the file's sha256
    return int(head["ContentLength"]), base64.b64decode(checksum).hex()


def _chunks(uri: str) -> Iterator[bytes]:
    if "://" not in uri or uri.startswith("file:"):
        with Path(local_path(uri) if uri.startswith("file:") else uri).open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                yield chunk
        return
    import boto3
    from botocore.exceptions import ClientError

    bucket, key = bucket_key(uri)
    try:
        body = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"]
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            raise FileNotFoundError(uri) from None
        raise
    yield from body.iter_chunks(_CHUNK)


def record_digest(record: Mapping[str, Any]) -> str:
    """The sha256 of a record as read back, without the sha256 it was stored beside."""
    return record_sha256({k: v for k, v in record.items() if k != "record_sha256"})


def verify_delivery(
    layout: LakeLayout,
    delivery: Delivery,
    asset: str | None = None,
    index: LineageIndex | None = None,
) -> Verification:
    """Verify the delivery's landing files and every committed partition of it (or of `asset`
    and what it was computed from)."""
    found = Verification(delivery)
    manifest_sha = _verify_landing(layout, delivery, found)
    index = index or lineage_index(layout)
    catalog = index.catalog

    def records_of(table: str, partition: str) -> list[dict[str, Any]]:
        return index.records(table, Delivery.from_key(partition))

    for output in _outputs_to_verify(asset, layout.family):
        versions = records_of(output.table, delivery.key)
        if not versions:
            continue
        found.records += 1
        _verify_record(catalog, output, versions[-1], manifest_sha, records_of, found)
    return found


def _outputs_to_verify(asset: str | None, family: str) -> list[DatasetOutput]:
    """Every asset (and quarantine) of the family, or `asset` and its inputs."""
    if asset is None:
        return [*asset_outputs(family), *family_outputs(family, Zone.QUARANTINE)]
    return computed_from(asset)


def asset_output(asset: str) -> DatasetOutput:
    """The declared output of an asset key; a ValueError naming every asset when none is."""
    outputs = every_asset_output()
    keys = [o.asset_key for o in outputs]
    if asset not in keys:
        raise ValueError(f"no asset {asset!r}; assets are {', '.join(keys)}")
    return outputs[keys.index(asset)]


def computed_from(asset: str) -> list[DatasetOutput]:
    """The asset's output and that of every asset it is computed from (its contract's inputs,
    transitively), in zone order."""
    outputs = list(every_asset_output())
    by_key = {o.asset_key: o for o in outputs}
    chosen: list[DatasetOutput] = []
    pending = [asset_output(asset).asset_key]
    while pending:
        key = pending.pop()
        if key in by_key and by_key[key] not in chosen:
            chosen.append(by_key[key])
            pending += by_key[key].inputs
    return [o for o in outputs if o in chosen]


def verify_landing(layout: LakeLayout, delivery: Delivery) -> Verification:
    """The landed files alone against the delivery's manifest."""
    found = Verification(delivery)
    _verify_landing(layout, delivery, found)
    return found


def _verify_landing(layout: LakeLayout, delivery: Delivery, found: Verification) -> str | None:
    """Landed files against the manifest; the manifest's own sha256 (None without one)."""
    landing = layout.landing(delivery)
    manifest_uri = layout.manifest(delivery)
    manifest = read_manifest(layout, delivery)
    if manifest is None:
        found.problems.append(f"{manifest_uri}: missing (no delivery manifest)")
        return None
    listed = {f["name"]: f for f in manifest.get("files", [])}
    for name, entry in listed.items():
        found.landing_files += 1
        problem = _changed(
            f"{landing}/{name}", entry, "listed in the manifest", "the manifest says"
        )
        if problem:
            found.problems.append(problem)
    for name in _landing_names(layout, delivery):
        if name not in listed and name != MANIFEST_NAME:
            found.problems.append(f"{landing}/{name}: extra file (not in the manifest)")
    manifest_digest = digest_of(manifest_uri)
    return manifest_digest[1] if manifest_digest else None


def _changed(uri: str, recorded: Mapping[str, Any], what: str, said: str) -> str | None:
    """One line when the file is missing, or its size or sha256 is not what was recorded."""
    now = digest_of(uri)
    if now is None:
        return f"{uri}: missing ({what})"
    if now == (recorded["size"], recorded["sha256"]):
        return None
    return (
        f"{uri}: modified ({what}; {now[0]} bytes, sha256 {now[1][:16]}…; {said} "
        f"{recorded['size']} bytes, {str(recorded['sha256'])[:16]}…)"
    )


def _landing_names(layout: LakeLayout, delivery: Delivery) -> list[str]:
    landing = layout.landing(delivery)
    if landing.startswith("file:"):
        folder = Path(local_path(landing))
        return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    from clinical_platform.lake import s3_keys_under

    return sorted(s3_keys_under(landing.rstrip("/") + "/"))


def _verify_record(
    catalog: Any,
    output: DatasetOutput,
    record: dict[str, Any],
    manifest_sha: str | None,
    records_of: Any,
    found: Verification,
) -> None:
    where = f"{output.asset_key} {record.get('partition')}"
    if record_digest(record) != record.get("record_sha256"):
        found.problems.append(
            f"lineage record of {where} ({output.table} in system.lineage): modified (its "
            f"sha256 is {record_digest(record)[:16]}…, committed as "
            f"{str(record.get('record_sha256'))[:16]}…)"
        )
    files = record.get("data_files")
    if files is None:
        found.problems.append(
            f"lineage record of {where}: lists no data files (committed before records were "
            "verifiable); materialize the partition again"
        )
        files = []
    for entry in files:
        found.data_files += 1
        problem = _changed(entry["path"], entry, f"a data file of {where}", "committed as")
        if problem:
            found.problems.append(problem)
    if files or record.get("data_files") is not None:
        recorded = {e["path"] for e in files}
        for path in _current_files(catalog, output, Delivery.from_key(record["partition"])):
            if path not in recorded:
                found.problems.append(f"{path}: extra file in the committed partition {where}")
    _verify_chain(output, record, manifest_sha, records_of, found, where)


def _current_files(catalog: Any, output: DatasetOutput, delivery: Delivery) -> list[str]:
    """The data files the table reads for the partition now (its current snapshot)."""
    from pyiceberg.exceptions import NoSuchTableError

    try:
        table = catalog.load_table(output.table)
    except NoSuchTableError:
        return []
    study, day = PARTITION_COLUMNS
    condition = f"{study} = '{delivery.study}' AND {day} = '{delivery.delivery}'"
    return sorted({task.file.file_path for task in table.scan(row_filter=condition).plan_files()})


def _verify_chain(
    output: DatasetOutput,
    record: Mapping[str, Any],
    manifest_sha: str | None,
    records_of: Any,
    found: Verification,
    where: str,
) -> None:
    if "manifest_sha256" in record and record["manifest_sha256"] != manifest_sha:
        found.problems.append(
            f"{where}: broken chain: it read a delivery manifest with sha256 "
            f"{str(record['manifest_sha256'])[:16]}…, landing's is {str(manifest_sha)[:16]}…"
        )
    for upstream in record.get("inputs", []):
        expected = upstream.get("record_sha256")
        if expected is None:
            continue  # read before records were chained
        table = upstream.get("table") or ""
        versions: Sequence[Mapping[str, Any]] = records_of(table, upstream["partition"])
        if not any(
            v.get("record_sha256") == expected and record_digest(v) == expected for v in versions
        ):
            found.problems.append(
                f"{where}: broken chain: it read the {upstream.get('asset')} record "
                f"{expected[:16]}… of {upstream['partition']}, which no record in {table} "
                "holds unchanged"
            )
