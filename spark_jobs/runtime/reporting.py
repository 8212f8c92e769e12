"""Results of a Spark job, streamed to Dagster through Pipes when Dagster launched the job.

Launched by hand (plain `spark-submit`), the same calls log the results as JSON lines, so a job
never depends on an orchestrator to run.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dagster_pipes import (
    PIPES_METADATA_TYPE_INFER,
    PIPES_PROTOCOL_VERSION,
    PIPES_PROTOCOL_VERSION_FIELD,
    PipesContext,
    PipesEnvVarParamsLoader,
    open_dagster_pipes,
)

from spark_jobs.contracts.outputs import DatasetOutput, blocks_downstream
from spark_jobs.contracts.protocol import (
    BATCH_FAILURE,
    BATCH_MESSAGE,
    BATCH_PARTITION,
    STAGE,
    STAGE_END,
)

if TYPE_CHECKING:
    from spark_jobs.runtime.arguments import DeliveryArgs

LOG = logging.getLogger("spark_jobs")


def json_value(value: Any) -> dict[str, Any]:
    return {"type": "json", "raw_value": value}


def path_value(value: str) -> dict[str, Any]:
    return {"type": "path", "raw_value": value}


def table_schema_value(columns: Sequence[tuple[str, str, str | None]]) -> dict[str, Any]:
    """Pipes form of a Dagster TableSchema from (name, type, description) triples."""
    return {
        "type": "table_schema",
        "raw_value": {
            "columns": [
                {"name": name, "type": type_, "description": description}
                for name, type_, description in columns
            ]
        },
    }


def table_metadata(output: DatasetOutput, job: DeliveryArgs, snapshot_id: int) -> dict[str, Any]:
    """Where a committed partition is: its table and version, and the files of the partition."""
    layout, delivery = job.layout, job.delivery
    return {
        "dagster/table_name": output.table,
        "dagster/uri": layout.dataset(output.zone, output.name),
        "snapshot_id": str(snapshot_id),
        "path": path_value(layout.table_files(output.zone, output.name, delivery)),
    }


def column_lineage_value(output: DatasetOutput) -> dict[str, Any]:
    """Pipes form of a Dagster TableColumnLineage, from the lineage the kernel declares."""
    return {
        "type": "table_column_lineage",
        "raw_value": {
            "deps_by_column": {
                column: [{"asset_key": ref.asset_key, "column_name": ref.column} for ref in refs]
                for column, refs in output.column_lineage.items()
            }
        },
    }


@dataclass(frozen=True)
class CheckOutcome:
    """One asset check as a job evaluated it.

    `blocking` makes a failure ERROR severity (a failing blocking rule, a rejected file);
    everything else is reported as WARN.
    """

    name: str
    passed: bool
    blocking: bool
    metadata: Mapping[str, Any] = field(default_factory=dict)
    effect: str | None = None
    description: str | None = None

    def as_record(self) -> dict[str, Any]:
        """The form kept in lineage records and the audit dossier."""
        return {
            "check": self.name,
            "passed": self.passed,
            "effect": self.effect,
            "blocking": self.blocking,
            "metadata": dict(self.metadata),
        }

    def pipes_metadata(self) -> dict[str, Any]:
        metadata = {
            k: json_value(v) if isinstance(v, (list, dict)) else v for k, v in self.metadata.items()
        }
        if self.description:
            metadata["description"] = self.description
        return metadata


def pipes_message(method: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """A Pipes message as `PipesContext` writes it, metadata normalised the same way."""
    if params.get("metadata"):
        metadata = {
            key: value
            if isinstance(value, dict)
            else {"raw_value": value, "type": PIPES_METADATA_TYPE_INFER}
            for key, value in params["metadata"].items()
        }
        params = {**params, "metadata": metadata}
    return {
        PIPES_PROTOCOL_VERSION_FIELD: PIPES_PROTOCOL_VERSION,
        "method": method,
        "params": params,
    }


def _serialized(method: Callable[..., None]) -> Callable[..., None]:
    """One report at a time: a delivery's datasets run in threads that share the reporter."""

    @functools.wraps(method)
    def serialized(self: JobReporter, *args: Any, **kwargs: Any) -> None:
        with self._lock:
            method(self, *args, **kwargs)

    return serialized


class JobReporter:
    """Materializations, check results and log lines of one job run.

    A job run on several deliveries reports inside `for_delivery(key)`: each result then goes to
    that delivery's partition as a Pipes custom message (`BATCH_PARTITION` in the protocol).
    A later stage of the pipeline entry point reports inside `for_stage(name)`, also as custom
    messages (`STAGE`): Pipes takes results only for the assets of the step that launched it.
    """

    def __init__(self, pipes: PipesContext | None) -> None:
        self._pipes = pipes
        extras = pipes.extras if pipes is not None else {}
        selected = extras.get("selected_checks")
        self._selected_checks: set[tuple[str, str]] | None = (
            {(asset, check) for asset, check in selected} if selected is not None else None
        )
        self._partition: str | None = None
        self._stage: str | None = None
        self._lock = threading.RLock()
        # (asset, check) of every failing check reported that Dagster declares blocking.
        self.blocking_failures: list[tuple[str, str]] = []

    @contextmanager
    def for_stage(self, stage: str | None) -> Iterator[None]:
        """Report what is reported inside as results of pipeline stage `stage` (None: as the
        application's own, for the stage that launched it)."""
        self._stage = stage
        try:
            yield
        finally:
            self._stage = None

    @_serialized
    def stage_ended(self, stage: str, failure: str | None) -> None:
        """Stage `stage` of a pipeline is over: succeeded, or failed (or was not run) and why."""
        payload = {STAGE: stage, STAGE_END: True, BATCH_FAILURE: failure}
        if self._pipes is None:
            _print_result("stage", **payload)
        else:
            self._pipes.report_custom_message(payload)

    @contextmanager
    def for_delivery(self, key: str) -> Iterator[None]:
        """Report what is reported inside as results of delivery `key`'s partition."""
        self._partition = key
        try:
            yield
        finally:
            self._partition = None

    def delivery_failed(self, reason: str) -> None:
        """The current delivery failed; the others of the batch go on."""
        assert self._partition is not None, "delivery_failed outside for_delivery"
        self.error(f"delivery {self._partition} failed: {reason}")
        self._send_batch({BATCH_FAILURE: reason})

    @property
    def _tagged(self) -> bool:
        return self._partition is not None or self._stage is not None

    @_serialized
    def _send_batch(self, payload: Mapping[str, Any]) -> None:
        """One result of the current delivery of a batch or of a later pipeline stage, tagged
        with its partition and stage."""
        assert self._tagged
        tags = {} if self._partition is None else {BATCH_PARTITION: self._partition}
        if self._stage is not None:
            tags[STAGE] = self._stage
        if self._pipes is None:
            _print_result("delivery", **tags, **payload)
        else:
            self._pipes.report_custom_message({**tags, **payload})

    @property
    def extras(self) -> Mapping[str, Any]:
        return self._pipes.extras if self._pipes is not None else {}

    @_serialized
    def info(self, message: str) -> None:
        LOG.info(message)
        if self._pipes is not None:
            self._pipes.log.info(message)

    @_serialized
    def warning(self, message: str) -> None:
        LOG.warning(message)
        if self._pipes is not None:
            self._pipes.log.warning(message)

    @_serialized
    def error(self, message: str) -> None:
        LOG.error(message)
        if self._pipes is not None:
            self._pipes.log.error(message)

    @_serialized
    def materialization(
        self, asset_key: str, metadata: Mapping[str, Any], data_version: str | None = None
    ) -> None:
        if self._tagged:
            params = {"asset_key": asset_key, "data_version": data_version, "metadata": metadata}
            message = pipes_message("report_asset_materialization", params)
            self._send_batch({BATCH_MESSAGE: message})
            return
        if self._pipes is None:
            _print_result(
                "materialization", asset_key=asset_key, data_version=data_version, metadata=metadata
            )
            return
        self._pipes.report_asset_materialization(
            metadata=dict(metadata), data_version=data_version, asset_key=asset_key
        )

    def wants_check(self, asset_key: str, check_name: str) -> bool:
        """Whether Dagster asked for this check (all checks when run by hand)."""
        return self._selected_checks is None or (asset_key, check_name) in self._selected_checks

    @_serialized
    def check(
        self,
        asset_key: str,
        check_name: str,
        passed: bool,
        *,
        blocking_severity: bool,
        metadata: Mapping[str, Any],
    ) -> None:
        """Report a check; a failing blocking rule is ERROR, everything else WARN."""
        if not self.wants_check(asset_key, check_name):
            return
        severity = "ERROR" if blocking_severity else "WARN"
        if not passed and blocks_downstream(asset_key, check_name):
            self.blocking_failures.append((asset_key, check_name))
        if self._tagged:
            params = {"asset_key": asset_key, "check_name": check_name, "passed": passed}
            params |= {"severity": severity, "metadata": metadata}
            self._send_batch({BATCH_MESSAGE: pipes_message("report_asset_check", params)})
            return
        if self._pipes is None:
            _print_result(
                "check",
                asset_key=asset_key,
                check_name=check_name,
                passed=passed,
                severity=severity,
                metadata=metadata,
            )
            return
        self._pipes.report_asset_check(
            check_name=check_name,
            passed=passed,
            severity=severity,
            metadata=dict(metadata),
            asset_key=asset_key,
        )

    def checks(self, asset_key: str, outcomes: Iterable[CheckOutcome]) -> None:
        for outcome in outcomes:
            self.check(
                asset_key,
                outcome.name,
                outcome.passed,
                blocking_severity=outcome.blocking and not outcome.passed,
                metadata=outcome.pipes_metadata(),
            )


def _print_result(kind: str, **fields: Any) -> None:
    LOG.info("%s %s", kind, json.dumps(fields, default=str, sort_keys=True))


@contextmanager
def open_reporter() -> Iterator[JobReporter]:
    """A reporter connected to Dagster Pipes if this process was launched through Pipes."""
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    params = PipesEnvVarParamsLoader()
    if params.is_dagster_pipes_process():
        with _open_pipes(params) as pipes:
            yield JobReporter(pipes)
    else:
        yield JobReporter(None)


def _open_pipes(params: PipesEnvVarParamsLoader) -> PipesContext:
    """Pipes through temp files locally, through S3 when the launcher staged them there (EMR).

    The launcher's params say which: S3 ones carry a `bucket`. boto3 is imported only then, so
    a cluster running jobs without S3 Pipes needs no boto3; it finds its region and credentials
    the usual way (AWS_DEFAULT_REGION, instance profile, AWS_ENDPOINT_URL for an emulator).
    """
    context_params = params.load_context_params()
    messages_params = params.load_messages_params()
    if "bucket" not in context_params and "bucket" not in messages_params:
        return open_dagster_pipes(params_loader=params)
    import boto3
    from dagster_pipes import PipesS3ContextLoader, PipesS3MessageWriter

    client = boto3.client("s3")
    return open_dagster_pipes(
        params_loader=params,
        context_loader=PipesS3ContextLoader(client) if "bucket" in context_params else None,
        message_writer=(
            PipesS3MessageWriter(client, interval=float(messages_params.get("interval", 10)))
            if "bucket" in messages_params
            else None
        ),
    )
