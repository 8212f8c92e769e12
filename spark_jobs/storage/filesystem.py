"""File operations through Hadoop's FileSystem API, so the same code works on file:, hdfs: and
s3: (EMRFS) lakes without boto3 on the cluster.

Only the Spark driver calls these; executors never touch the JVM gateway.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pyspark.sql import SparkSession


@dataclass(frozen=True)
class FileStatus:
    uri: str
    name: str
    size: int
    is_dir: bool


class LakeStorage:
    """Thin, typed wrapper over `org.apache.hadoop.fs.FileSystem` for one Spark session."""

    def __init__(self, spark: SparkSession) -> None:
        jvm = spark.sparkContext._jvm  # pyright: ignore[reportPrivateUsage]
        assert jvm is not None, "the Spark JVM gateway is not running"
        self._jvm: Any = jvm
        jsc: Any = spark.sparkContext._jsc  # pyright: ignore[reportPrivateUsage]
        self._conf = jsc.hadoopConfiguration()

    def _path(self, uri: str) -> tuple[Any, Any]:
        path = self._jvm.org.apache.hadoop.fs.Path(uri)
        return path.getFileSystem(self._conf), path

    def exists(self, uri: str) -> bool:
        fs, path = self._path(uri)
        return bool(fs.exists(path))

    def list(self, uri: str) -> list[FileStatus]:
        """Direct children of a directory, sorted by name; empty if it does not exist."""
        fs, path = self._path(uri)
        if not fs.exists(path):
            return []
        statuses = [
            FileStatus(
                uri=str(s.getPath().toString()),
                name=str(s.getPath().getName()),
                size=int(s.getLen()),
                is_dir=bool(s.isDirectory()),
            )
            for s in fs.listStatus(path)
        ]
        return sorted(statuses, key=lambda s: s.name)

    def read_bytes(self, uri: str) -> bytes:
        fs, path = self._path(uri)
        stream = fs.open(path)
        try:
            return bytes(self._jvm.org.apache.commons.io.IOUtils.toByteArray(stream))
        finally:
            stream.close()

    def read_json(self, uri: str) -> Any:
        return json.loads(self.read_bytes(uri).decode("utf-8"))

    def sha256(self, uri: str) -> str:
        """The file's sha256, computed in the JVM as it streams (no bytes cross to Python)."""
        fs, path = self._path(uri)
        digest = self._jvm.java.security.MessageDigest.getInstance("SHA-256")
        stream = self._jvm.java.security.DigestInputStream(fs.open(path), digest)
        try:
            self._jvm.org.apache.commons.io.IOUtils.consume(stream)
        finally:
            stream.close()
        return bytes(digest.digest()).hex()
