"""Reading parts of a lake file from a Spark executor, where no Hadoop FileSystem is at hand.

Executors run Python without the JVM gateway, so byte ranges are read directly: local files
with `os.pread`, S3 objects with ranged GETs through boto3 (imported only then; EMR's bootstrap
installs it, and it finds region, credentials and an emulator's AWS_ENDPOINT_URL the usual
way). A lake on any other scheme is refused with a one-line reason.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from spark_jobs.contracts.layout import local_path

CHUNK_BYTES = 8 << 20
_S3 = re.compile(r"^s3[an]?://(?P<bucket>[^/]+)/(?P<key>.+)$")


class UnreadableUri(ValueError):
    """A lake URI whose bytes an executor cannot read."""


class RangeReader(Protocol):
    def read(self, offset: int, length: int) -> bytes: ...


class _LocalReader:
    def __init__(self, descriptor: int) -> None:
        self._descriptor = descriptor

    def read(self, offset: int, length: int) -> bytes:
        parts: list[bytes] = []
        while length > 0:
            part = os.pread(self._descriptor, length, offset)
            if not part:
                break
            parts.append(part)
            offset, length = offset + len(part), length - len(part)
        return b"".join(parts)


class _S3Reader:
    def __init__(self, client: Any, bucket: str, key: str) -> None:
        self._client, self._bucket, self._key = client, bucket, key

    def read(self, offset: int, length: int) -> bytes:
        if length <= 0:
            return b""
        answer = self._client.get_object(
            Bucket=self._bucket, Key=self._key, Range=f"bytes={offset}-{offset + length - 1}"
        )
        return answer["Body"].read()


def s3_location(uri: str) -> tuple[str, str] | None:
    """(bucket, key) of an s3://, s3a:// or s3n:// URI; None for any other."""
    match = _S3.match(uri)
    return (match["bucket"], match["key"]) if match else None


@contextmanager
def open_ranges(uri: str) -> Iterator[RangeReader]:
    """A reader of byte ranges of one lake file."""
    location = s3_location(uri)
    if location:
        import boto3

        yield _S3Reader(boto3.client("s3"), *location)
        return
    try:
        path = local_path(uri)
    except ValueError:
        raise UnreadableUri(f"{uri}: executors read only file: and s3:// lakes") from None
    descriptor = os.open(path, os.O_RDONLY)
    try:
        yield _LocalReader(descriptor)
    finally:
        os.close(descriptor)


def chunks(reader: RangeReader, size: int, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    """The whole file front to back, `chunk_bytes` at a time."""
    for offset in range(0, size, chunk_bytes):
        yield reader.read(offset, min(chunk_bytes, size - offset))
