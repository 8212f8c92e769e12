"""AWS plumbing shared by the EMR launchers: clients, S3 URIs, the staged code bundle, Dagster
Pipes over S3, step logs and the secret references a driver may receive.

Kept apart from the launchers so each launcher reads as its protocol (submit, poll, cancel) and
the S3 details are written, and tested, once.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from dagster_aws.pipes import PipesS3ContextInjector, PipesS3MessageReader
from dagster_pipes import PipesBlobStoreMessageWriter, PipesParams

from clinical_platform.launchers.base import SecretUnavailable
from clinical_platform.launchers.bundle import ENTRY_POINTS, CodeBundle
from spark_jobs.contracts.protocol import SECRET_ID_SUFFIX

# Standard mode retries throttling and 5xx answers with backoff; adaptive would also rate-limit
# the client, which a single poller does not need.
_RETRIES = Config(retries={"mode": "standard", "max_attempts": 10})
# Failures worth another attempt: lost (spot) capacity and AWS throttling, never a job's own error.
TRANSIENT_FAILURE_PATTERNS = (
    "spot instance",
    "spot interruption",
    "instance was terminated",
    "released on a *lost* node",
    "lost node",
    "executorlostfailure",
    "decommission",
    "throttlingexception",
    "throttling",
    "slowdown",
    "requestlimitexceeded",
    "rate exceeded",
    "serviceunavailable",
    "503 service unavailable",
)
# Fast polling after the job closed Pipes lasts this long; a driver that hangs on its way out
# then goes back to backoff rather than spend the account's polling rate (DescribeStep, GetJobRun).
FINISHING_WINDOW_S = 120.0
_S3_URI = re.compile(r"^s3[an]?://(?P<bucket>[^/]+)/?(?P<key>.*)$")


class AwsConfigError(ValueError):
    """An AWS setting the launcher cannot use; the message names it."""


@dataclass(frozen=True)
class S3Uri:
    """An S3 location; `key` has no leading or trailing slash (empty for a bucket root)."""

    bucket: str
    key: str = ""

    @classmethod
    def parse(cls, uri: str) -> S3Uri:
        """Accept s3://, and the s3n:// and s3a:// forms EMR reports for log URIs."""
        match = _S3_URI.match(uri.strip())
        if not match:
            raise AwsConfigError(f"{uri!r} is not an S3 URI (expected s3://bucket/prefix)")
        return cls(match["bucket"], match["key"].strip("/"))

    def join(self, *parts: str) -> S3Uri:
        names = [self.key, *[p.strip("/") for p in parts]]
        return S3Uri(self.bucket, "/".join(n for n in names if n))

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def aws_client(service: str, region: str, endpoint_url: str | None = None) -> Any:
    """A boto3 client with retries; `endpoint_url` is for emulators and private endpoints.

    Without it boto3 still honours AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_<SERVICE>.
    """
    return boto3.client(service, region_name=region, endpoint_url=endpoint_url, config=_RETRIES)


def _object_metadata(s3: Any, uri: S3Uri) -> Mapping[str, str] | None:
    try:
        return s3.head_object(Bucket=uri.bucket, Key=uri.key).get("Metadata", {})
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


@dataclass(frozen=True)
class StagedCode:
    """Where one job's code lies in S3, and whether this launch had to upload it."""

    archive: S3Uri
    entry_script: S3Uri
    uploaded: bool


def stage_code(s3: Any, staging: S3Uri, bundle: CodeBundle, entry_point: str) -> StagedCode:
    """Upload the bundle under `code/<sha256>/` unless that exact bundle is already there.

    The archive is written last and carries its hash, so its presence means a complete upload
    and a second launch with unchanged code costs one HEAD request.
    """
    folder = staging.join("code", bundle.sha256)
    archive = folder.join("spark_jobs.zip")
    entry_script = folder.join(f"{entry_point}.py")
    existing = _object_metadata(s3, archive)
    if existing is not None and existing.get("sha256") == bundle.sha256:
        return StagedCode(archive, entry_script, uploaded=False)
    for name in ENTRY_POINTS:
        target = folder.join(f"{name}.py")
        s3.put_object(
            Bucket=target.bucket,
            Key=target.key,
            Body=bundle.entry_script(name),
            Metadata={"bundle-sha256": bundle.sha256},
        )
    s3.put_object(
        Bucket=archive.bucket,
        Key=archive.key,
        Body=bundle.archive,
        Metadata={"sha256": bundle.sha256},
    )
    return StagedCode(archive, entry_script, uploaded=True)


def write_submission(s3: Any, target: S3Uri, facts: Mapping[str, str]) -> str | None:
    """Tell the submitted application where it runs (`SUBMISSION_URI_ENV`); None when written,
    else why not (the application then records that it could not read it; the run goes on)."""
    try:
        s3.put_object(
            Bucket=target.bucket,
            Key=target.key,
            Body=json.dumps(dict(facts), sort_keys=True).encode(),
            ContentType="application/json",
        )
    except (ClientError, BotoCoreError) as error:
        return f"could not write {target}: {error}"
    return None


def stage_file(s3: Any, source: Path, target: S3Uri) -> bool:
    """Upload a small file (the bootstrap script) unless the same content is there already."""
    content = source.read_bytes()
    digest = hashlib.sha256(content).hexdigest()
    existing = _object_metadata(s3, target)
    if existing is not None and existing.get("sha256") == digest:
        return False
    s3.put_object(Bucket=target.bucket, Key=target.key, Body=content, Metadata={"sha256": digest})
    return True


# --------------------------------------------------------------------------- Pipes over S3


class StagedS3MessageReader(PipesS3MessageReader):
    """Pipes messages under the launcher's staging prefix, deleted once the session ends.

    Also tells the Spark side how often to upload (`interval`), so a short job's results are
    not held back by dagster_pipes' 10 s default.
    """

    def __init__(
        self, *, client: Any, prefix: S3Uri, read_interval_s: int, upload_interval_s: int
    ) -> None:
        # Dagster's reader loop ticks every second and reads when more than `interval` seconds
        # have passed, so interval N means a read every N+1 s.
        super().__init__(bucket=prefix.bucket, client=client, interval=max(0, read_interval_s - 1))
        self._prefix = prefix
        self._upload_interval = max(0, upload_interval_s - 1)

    @contextmanager
    def get_params(self) -> Iterator[PipesParams]:
        prefix = self._prefix.join("messages", uuid.uuid4().hex)
        try:
            yield {
                "bucket": prefix.bucket,
                "key_prefix": prefix.key,
                "interval": self._upload_interval,
                PipesBlobStoreMessageWriter.INCLUDE_STDIO_IN_MESSAGES_KEY: False,
            }
        finally:
            delete_prefix(self.client, prefix)


def pipes_channel(
    s3: Any, staging: S3Uri, run_id: str, *, read_interval_s: int = 1, upload_interval_s: int = 1
) -> tuple[PipesS3ContextInjector, StagedS3MessageReader]:
    """Context in and messages out through `<staging>/pipes/<run_id>/`."""
    prefix = staging.join("pipes", run_id)
    injector = PipesS3ContextInjector(
        bucket=prefix.bucket, client=s3, key_prefix=f"{prefix.join('context').key}/"
    )
    reader = StagedS3MessageReader(
        client=s3,
        prefix=prefix,
        read_interval_s=read_interval_s,
        upload_interval_s=upload_interval_s,
    )
    return injector, reader


def delete_prefix(s3: Any, prefix: S3Uri) -> None:
    """Best-effort clean-up of transient objects; a failure here never fails a run."""
    try:
        keys = list_keys(s3, prefix)
        for start in range(0, len(keys), 1000):
            s3.delete_objects(
                Bucket=prefix.bucket,
                Delete={
                    "Objects": [{"Key": key} for key in keys[start : start + 1000]],
                    "Quiet": True,
                },
            )
    except ClientError:
        pass


def list_keys(s3: Any, prefix: S3Uri) -> list[str]:
    keys: list[str] = []
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=prefix.bucket, Prefix=f"{prefix.key}/"):
        keys += [item["Key"] for item in page.get("Contents", [])]
    return sorted(keys)


# --------------------------------------------------------------------------- logs


def read_gzip_lines(s3: Any, uri: S3Uri) -> list[str] | None:
    """Lines of a gzipped log object (EMR writes stderr.gz), or None if it is not there yet."""
    try:
        body = s3.get_object(Bucket=uri.bucket, Key=uri.key)["Body"].read()
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise
    try:
        text = gzip.decompress(body).decode("utf-8", errors="replace")
    except OSError:  # not gzipped after all
        text = body.decode("utf-8", errors="replace")
    return text.splitlines()


def wait_for_gzip_lines(
    s3: Any, uri: S3Uri, deadline: float, interval_s: float = 5.0
) -> list[str] | None:
    """EMR copies logs to S3 some time after a step ends: wait for them until `deadline`."""
    while True:
        lines = read_gzip_lines(s3, uri)
        if lines is not None or time.monotonic() >= deadline:
            return lines
        time.sleep(min(interval_s, max(0.0, deadline - time.monotonic())))


@dataclass
class PollPacer:
    """Backoff between polls of a remote job, and fast polls once its driver is finishing.

    The driver closes its Pipes channel just before it exits, so from then on the job is
    seconds from its end state and a short interval keeps Dagster close behind it.
    """

    initial_s: float
    max_s: float
    finishing_s: float
    finishing: Callable[[], bool]  # True once the driver has closed its Pipes channel
    interval_s: float = field(init=False)
    closed_at: float | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.interval_s = self.initial_s

    def restart(self) -> None:
        """The state changed: poll at the initial pace again."""
        self.interval_s = self.initial_s

    def sleep(self) -> None:
        if self.finishing():
            self.closed_at = self.closed_at or time.monotonic()
            if time.monotonic() - self.closed_at < FINISHING_WINDOW_S:
                time.sleep(self.finishing_s)
                return
        deadline = time.monotonic() + self.interval_s
        while time.monotonic() < deadline and (self.closed_at is not None or not self.finishing()):
            time.sleep(min(0.25, max(0.0, deadline - time.monotonic())))
        self.interval_s = min(self.interval_s * 1.5, self.max_s)


def wait_for_state(
    poll: Callable[[], str], done: Collection[str], timeout_s: float, interval_s: float = 1.0
) -> str | None:
    """Poll a job's state until it is one of `done`; None if that takes over `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = poll()
        if state in done:
            return state
        time.sleep(interval_s)
    return None


def tail_block(title: str, lines: Sequence[str], count: int) -> str:
    shown = [line.rstrip() for line in lines if line.strip()][-count:]
    return f"last {len(shown)} lines of {title}:\n" + "\n".join(shown)


def is_transient_failure(texts: Sequence[str], patterns: Sequence[str]) -> str | None:
    """The first transient-failure pattern found in the failure's texts, if any."""
    haystack = "\n".join(texts).lower()
    for pattern in patterns:
        if pattern.lower() in haystack:
            return pattern
    return None


# --------------------------------------------------------------------------- secrets


def secret_references(
    secret_names: Collection[str], secret_ids: Mapping[str, str], where: str
) -> dict[str, str]:
    """`<NAME>_SECRET_ID=<secret id>` for each secret, for the driver to resolve itself.

    Raises SecretUnavailable (one line) when a secret has no Secrets Manager mapping: a secret
    is never sent to a cluster in clear, so the job cannot run without one. The value never
    has to exist on the Dagster side.
    """
    missing = sorted(name for name in secret_names if name not in secret_ids)
    if missing:
        names = ", ".join(missing)
        raise SecretUnavailable(
            f"{names} must not travel to {where} in clear; map it to an AWS Secrets Manager "
            f"secret in the launcher's secret_ids (env {missing[0]}{SECRET_ID_SUFFIX})"
        )
    return {f"{name}{SECRET_ID_SUFFIX}": secret_ids[name] for name in sorted(secret_names)}
