"""The one interface assets use to run Spark, whatever runs it (local, EMR, ...).

An asset describes a `SparkJob` (entry point and arguments); the launcher ships the code
bundle, starts Spark, streams results back through Dagster Pipes and returns them. Asset code
never knows where Spark ran.
"""

from __future__ import annotations

import getpass
import os
import subprocess
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import dagster as dg

from clinical_platform.launchers.bundle import PACKAGE_DIR, build_bundle
from spark_jobs.contracts.protocol import (
    BATCH_FAILURE,
    BATCH_MESSAGE,
    BATCH_PARTITION,
    CODE_VERSION_ENV,
    FAILURE_PREFIX,
    GIT_SHA_ENV,
    LAUNCHER_ENV,
    STAGE,
    STARTED_BY_ENV,
)

Result = dg.MaterializeResult | dg.AssetCheckResult


@dataclass(frozen=True)
class DeliveryResult:
    """A result a job run on several deliveries reported for one of them (its partition)."""

    partition: str
    result: Result


@dataclass(frozen=True)
class DeliveryFailure:
    """A delivery of a batch that failed, with the job's one-line reason."""

    partition: str
    reason: str


@dataclass(frozen=True)
class StagedMessage:
    """A message a later stage of a pipeline application reported, for that stage's step."""

    stage: str
    payload: Mapping[str, Any]


Reported = Result | DeliveryResult | DeliveryFailure | StagedMessage


@dataclass(frozen=True)
class SparkJob:
    """One spark-submit of a `spark_jobs` entry point."""

    entry_point: str  # "ingest", "curate", "features"
    arguments: Sequence[str]
    # Environment variables holding secrets the driver needs, each with what it is for. Only
    # names travel here; the launcher decides how a value reaches the driver (locally from
    # this process's environment, on AWS as a Secrets Manager reference), never on a command
    # line or in a step definition.
    secrets: Mapping[str, str] = field(default_factory=dict)
    # The (asset, check) pairs to report, when not this step's own (a pipeline's later stages).
    checks: Sequence[Sequence[str]] | None = None


class SecretUnavailable(ValueError):
    """A secret the job needs cannot be handed to its driver; the message says why."""


@dataclass
class SparkRun:
    """What came back from one Spark application."""

    results: Sequence[Reported]
    failure: str | None  # one line, set when the application failed
    details: Mapping[str, Any] = field(default_factory=dict)
    # What the launcher adds to every materialization (code version, git sha, launcher, log).
    provenance: Mapping[str, Any] = field(default_factory=dict)

    def outputs(self) -> Iterator[Result]:
        """Yield every reported result, then fail the step if the application failed.

        Results come first: a partition committed before a later failure is real and must be
        recorded as materialized. (A batch's results are per delivery: see `launchers.batch`.)
        """
        yield from (r for r in self.results if isinstance(r, Result))
        if self.failure:
            raise dg.Failure(
                description=self.failure, metadata=dict(self.details), allow_retries=False
            )


@cache
def git_revision() -> str:
    """Git commit of the project code (suffixed -dirty with local changes), or "unknown"."""
    root = PACKAGE_DIR.parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha


def selected_checks(context: dg.AssetExecutionContext) -> list[list[str]]:
    """The (asset, check) pairs this step must report, for the Spark side to filter on."""
    return [
        [key.asset_key.to_user_string(), key.name]
        for key in sorted(context.selected_asset_check_keys, key=str)
    ]


class SparkLauncher(dg.ConfigurableResource, ABC):
    """Runs `spark_jobs` entry points and returns their results through Dagster Pipes."""

    @abstractmethod
    def launch(
        self,
        context: dg.AssetExecutionContext,
        job: SparkJob,
        extras: Mapping[str, Any],
        env: Mapping[str, str],
    ) -> SparkRun:
        """Start the application, wait for it, and collect what it reported."""

    @property
    @abstractmethod
    def description(self) -> str:
        """Where Spark runs, for lineage ("local[*]", "emr j-123 step s-456")."""

    def secret_environment(self, job: SparkJob) -> dict[str, str]:
        """How the job's secrets reach the driver; here, copied from this process's env."""
        values: dict[str, str] = {}
        for name, purpose in sorted(job.secrets.items()):
            value = os.environ.get(name, "")
            if not value:
                raise SecretUnavailable(f"{name} is not set: {purpose}; export {name}")
            values[name] = value
        return values

    def run(self, context: dg.AssetExecutionContext, job: SparkJob) -> SparkRun:
        try:
            secrets = self.secret_environment(job)
        except SecretUnavailable as error:
            return SparkRun(results=[], failure=str(error))
        bundle = build_bundle()
        provenance = {
            "code_version": bundle.sha256,
            "git_sha": git_revision(),
            "launcher": self.description,
            "started_by": started_by(context.run.tags),
        }
        env = {
            CODE_VERSION_ENV: bundle.sha256,
            GIT_SHA_ENV: provenance["git_sha"],
            LAUNCHER_ENV: self.description,
            STARTED_BY_ENV: provenance["started_by"],
            **secrets,
        }
        checks = selected_checks(context) if job.checks is None else [list(c) for c in job.checks]
        extras = {"selected_checks": checks, "run_id": context.run.run_id}
        run = self.launch(context, job, extras, env)
        run.provenance = {**provenance, **run.details}
        run.results = [with_metadata(r, run.provenance) for r in run.results]
        return run


# How the platform tags the runs it starts itself: "cli" (materialize, backfill, demo) or
# "sensor" (the landing sensor).
ENTRY_TAG = "clinical/entry"


def started_by(tags: Mapping[str, str]) -> str:
    """Who started a run, from its tags, for every lineage record it writes: the user where
    Dagster knows one (Dagster+), the sensor or schedule, the OS user of a command-line run;
    Dagster OSS records no user for a launch from the UI."""
    for tag, kind in (
        ("dagster/user", "user"),
        ("dagster/sensor_name", "sensor"),
        ("dagster/schedule_name", "schedule"),
    ):
        if tags.get(tag):
            return f"{kind}:{'_'.join(tags[tag].split())}"
    if tags.get(ENTRY_TAG) == "cli":
        return f"cli:{'_'.join(getpass.getuser().split())}"
    if tags.get("dagster/backfill"):
        return f"backfill:{tags['dagster/backfill']}"
    return "dagster:no-user-recorded"


def reported_results(session: dg.PipesSession) -> list[Reported]:
    """Exactly what the job reported: an asset it did not report was not materialized.

    Pipes would otherwise invent a materialization for every selected asset, which would
    mark a rejected domain as materialized. A job run on several deliveries reports each
    delivery's results as custom messages instead (`BATCH_PARTITION` in the protocol).
    """
    reported: list[Reported] = [
        r
        for r in session.get_results(implicit_materializations=False)
        if isinstance(r, (dg.MaterializeResult, dg.AssetCheckResult))
    ]
    payloads = [p for p in session.get_custom_messages() if isinstance(p, dict)]
    staged = [StagedMessage(str(p[STAGE]), p) for p in payloads if STAGE in p]
    return [*reported, *replayed(session.context, [p for p in payloads if STAGE not in p]), *staged]


class _AlreadyRead(dg.PipesMessageReader):
    """The reader of a handler given messages the session has already read."""

    @contextmanager
    def read_messages(self, handler: dg.PipesMessageHandler) -> Iterator[dg.PipesParams]:
        raise NotImplementedError("messages of a batch are replayed, never read")
        yield {}

    def no_messages_debug_text(self) -> str:
        return "Replays a batch job's per-delivery messages."


def replayed(
    context: dg.OpExecutionContext | dg.AssetExecutionContext, payloads: Sequence[Mapping[str, Any]]
) -> list[Result | DeliveryResult | DeliveryFailure]:
    """Results sent as custom messages (a batch's per delivery, a later pipeline stage's), turned
    into this step's Dagster results by Pipes' own handler."""
    handler = dg.PipesMessageHandler(context, _AlreadyRead())
    found: list[Result | DeliveryResult | DeliveryFailure] = []
    for payload in payloads:
        partition = payload.get(BATCH_PARTITION)
        if BATCH_FAILURE in payload and partition is not None:
            found.append(DeliveryFailure(str(partition), str(payload[BATCH_FAILURE])))
            continue
        if BATCH_MESSAGE not in payload:
            continue
        handler.handle_message(payload[BATCH_MESSAGE])
        result = handler.get_reported_results()[-1]
        if not isinstance(result, (dg.MaterializeResult, dg.AssetCheckResult)):
            continue
        found.append(result if partition is None else DeliveryResult(str(partition), result))
    return found


def with_metadata(result: Reported, extra: Mapping[str, Any]) -> Reported:
    """Add metadata (the code and cluster identity, a dossier) to a reported materialization,
    one delivery's of a batch included; keys it already has are kept, checks stay as they are."""
    if isinstance(result, DeliveryResult):
        return DeliveryResult(result.partition, _with_metadata(result.result, extra))
    if isinstance(result, (DeliveryFailure, StagedMessage)):
        return result
    return _with_metadata(result, extra)


def _with_metadata(result: Result, provenance: Mapping[str, Any]) -> Result:
    if not isinstance(result, dg.MaterializeResult):
        return result
    metadata = dict(result.metadata or {})
    for key, value in provenance.items():
        metadata.setdefault(key, value)
    return dg.MaterializeResult(
        asset_key=result.asset_key,
        metadata=metadata,
        check_results=result.check_results,
        data_version=result.data_version,
        tags=result.tags,
    )


def last_lines(path: Path, count: int = 30) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-count:]
    except OSError:
        return []


def job_failure_reason(lines: Sequence[str]) -> str | None:
    """The one-line reason a job printed after FAILURE_PREFIX (the last one wins), if any."""
    for line in reversed(lines):
        stripped = line.strip()
        if stripped.startswith(FAILURE_PREFIX):
            return stripped[len(FAILURE_PREFIX) :].strip()
    return None


def last_error_line(lines: Sequence[str]) -> str:
    """The last line that names an error or exception, else the last line, for a hint."""
    errors = [line for line in lines if "Error" in line or "Exception" in line]
    return errors[-1].strip() if errors else (lines[-1].strip() if lines else "no output")


def explain_failure(entry_point: str, returncode: int, log_path: Path) -> str:
    """One line: the job's own reason if it gave one, else the last error line of the log."""
    lines = last_lines(log_path, 200)
    reason = job_failure_reason(lines)
    if reason:
        return reason
    return (
        f"Spark job {entry_point} exited with code {returncode}: {last_error_line(lines)} "
        f"(log: {log_path})"
    )
