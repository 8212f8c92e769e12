"""One listing interface over a family's landing zone, on S3 or on the local lake.

The landing sensor sees landing only through `LandingZone`: keys relative to the family's
landing root (`STUDY/DELIVERY/file`), listed in key order after a cursor key, so a tick lists
only what it has not seen. On S3 that is ListObjectsV2 with `StartAfter` (one request per
1,000 new keys, whatever lies before the cursor); locally a sorted walk that skips every folder
wholly before the cursor.
"""

from __future__ import annotations

import base64
import hashlib
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from clinical_platform.lake import CHUNK
from spark_jobs.contracts.layout import MANIFEST_NAME, Delivery, LakeLayout, Zone, local_path


class LandingZoneError(OSError):
    """Landing cannot be listed or read; the message names the location and the cause."""


@dataclass(frozen=True)
class LandingObject:
    key: str  # STUDY/DELIVERY/name, relative to the family's landing root
    size: int
    version: str  # the S3 ETag, or the modification time locally: changes on rewrite


class LandingZone(ABC):
    """Where a family's deliveries arrive; the sensor's only view of them."""

    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/")

    @abstractmethod
    def studies(self) -> list[str]:
        """Names of the top-level folders (one per study), sorted."""

    @abstractmethod
    def objects(self, prefix: str, start_after: str = "") -> Iterator[LandingObject]:
        """Objects whose key starts with `prefix` and sorts after `start_after`, in key order."""

    @abstractmethod
    def read(self, key: str) -> bytes: ...

    @abstractmethod
    def write(self, key: str, data: bytes) -> None:
        """Write one small object (a manifest) so that readers see all of it or nothing."""

    @abstractmethod
    def stored_sha256(self, key: str) -> str | None:
        """The object's SHA-256 as the store keeps it (hex), without reading it; None if the
        store has none."""

    def sha256(self, key: str) -> str:
        """The object's SHA-256, read in full."""
        digest = hashlib.sha256()
        for chunk in self._chunks(key):
            digest.update(chunk)
        return digest.hexdigest()

    @abstractmethod
    def _chunks(self, key: str) -> Iterator[bytes]: ...

    def uri(self, key: str) -> str:
        return f"{self.root}/{key}"


def delivery_prefix(delivery: Delivery) -> str:
    """The key prefix of a delivery's files in its family's landing zone."""
    return f"{delivery.study}/{delivery.delivery}/"


def manifest_key(delivery: Delivery) -> str:
    return delivery_prefix(delivery) + MANIFEST_NAME


def landing_zone(layout: LakeLayout) -> LandingZone:
    """The landing zone of the layout's family, local or S3 by the lake's URI."""
    root = layout.zone(Zone.LANDING)
    return LocalLandingZone(root) if root.startswith("file:") else S3LandingZone(root)


class LocalLandingZone(LandingZone):
    def __init__(self, root: str) -> None:
        super().__init__(root)
        self.path = Path(local_path(self.root))

    def studies(self) -> list[str]:
        if not self.path.is_dir():
            return []
        return sorted(entry.name for entry in os.scandir(self.path) if entry.is_dir())

    def objects(self, prefix: str, start_after: str = "") -> Iterator[LandingObject]:
        folder, _, _ = prefix.rpartition("/")
        yield from (
            o
            for o in self._walk(folder, start_after)
            if o.key.startswith(prefix) and o.key > start_after
        )

    def _walk(self, folder: str, start_after: str) -> Iterator[LandingObject]:
        """Files under `folder` in key order ("a/b" sorts as "a/b/..." does on S3)."""
        path = self.path / folder if folder else self.path
        try:
            entries = list(os.scandir(path))
        except FileNotFoundError:
            return
        except OSError as error:
            raise LandingZoneError(f"{path}: cannot be listed ({error.strerror})") from None
        named = [(f"{folder}/{e.name}" if folder else e.name, e) for e in entries]
        for key, entry in sorted(named, key=lambda p: p[0] + ("/" if p[1].is_dir() else "")):
            if entry.is_dir(follow_symlinks=False):
                # Everything in a folder sorts before the cursor when "folder/\xff" does.
                if start_after and f"{key}/\U0010ffff" <= start_after:
                    continue
                yield from self._walk(key, start_after)
            elif entry.is_file(follow_symlinks=False):
                stat = entry.stat(follow_symlinks=False)
                yield LandingObject(key, stat.st_size, str(stat.st_mtime_ns))

    def read(self, key: str) -> bytes:
        try:
            return (self.path / key).read_bytes()
        except OSError as error:
            raise LandingZoneError(f"{self.uri(key)}: cannot be read ({error.strerror})") from None

    def write(self, key: str, data: bytes) -> None:
        target = self.path / key
        hidden = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            hidden.write_bytes(data)
            hidden.replace(target)
        except OSError as error:
            hidden.unlink(missing_ok=True)
            raise LandingZoneError(
                f"{self.uri(key)}: cannot be written ({error.strerror})"
            ) from None

    def stored_sha256(self, key: str) -> str | None:
        return None

    def _chunks(self, key: str) -> Iterator[bytes]:
        try:
            with (self.path / key).open("rb") as handle:
                while chunk := handle.read(CHUNK):
                    yield chunk
        except OSError as error:
            raise LandingZoneError(f"{self.uri(key)}: cannot be read ({error.strerror})") from None


class S3LandingZone(LandingZone):
    def __init__(self, root: str) -> None:
        super().__init__(root)
        import boto3

        from clinical_platform.launchers.aws import S3Uri

        location = S3Uri.parse(self.root)
        self.bucket, self.prefix = location.bucket, f"{location.key}/" if location.key else ""

        self.client = boto3.client("s3")

    def _fail(self, what: str, where: str, error: Exception) -> LandingZoneError:
        return LandingZoneError(f"{where}: cannot be {what} ({error})")

    def studies(self) -> list[str]:
        from botocore.exceptions import BotoCoreError, ClientError

        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix, Delimiter="/"
        )
        try:
            names = [
                p["Prefix"][len(self.prefix) :].rstrip("/")
                for page in pages
                for p in page.get("CommonPrefixes", [])
            ]
        except (BotoCoreError, ClientError) as error:
            raise self._fail("listed", self.root, error) from None
        return sorted(names)

    def objects(self, prefix: str, start_after: str = "") -> Iterator[LandingObject]:
        from botocore.exceptions import BotoCoreError, ClientError

        arguments = {"Bucket": self.bucket, "Prefix": self.prefix + prefix}
        if start_after:
            arguments["StartAfter"] = self.prefix + start_after
        pages = self.client.get_paginator("list_objects_v2").paginate(**arguments)
        try:
            for page in pages:
                for item in page.get("Contents", []):
                    yield LandingObject(
                        item["Key"][len(self.prefix) :],
                        int(item["Size"]),
                        str(item.get("ETag", "")).strip('"'),
                    )
        except (BotoCoreError, ClientError) as error:
            raise self._fail("listed", self.uri(prefix), error) from None

    def read(self, key: str) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"].read()
        except (BotoCoreError, ClientError) as error:
            raise self._fail("read", self.uri(key), error) from None

    def write(self, key: str, data: bytes) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.put_object(
                Bucket=self.bucket, Key=self.prefix + key, Body=data, ChecksumAlgorithm="SHA256"
            )
        except (BotoCoreError, ClientError) as error:
            raise self._fail("written", self.uri(key), error) from None

    def stored_sha256(self, key: str) -> str | None:
        """The full-object SHA-256 S3 checked on upload (`land` asks for it); multipart
        checksums (`...-N`) are of the parts, not of the object, and do not count."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            head = self.client.head_object(
                Bucket=self.bucket, Key=self.prefix + key, ChecksumMode="ENABLED"
            )
        except (BotoCoreError, ClientError) as error:
            raise self._fail("read", self.uri(key), error) from None
        stored = head.get("ChecksumSHA256")
        if not stored or "-" in stored or head.get("ChecksumType") == "COMPOSITE":
            return None
        return base64.b64decode(stored).hex()

    def _chunks(self, key: str) -> Iterator[bytes]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"]
            yield from body.iter_chunks(CHUNK)
        except (BotoCoreError, ClientError) as error:
            raise self._fail("read", self.uri(key), error) from None
