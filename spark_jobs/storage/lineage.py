"""What a committed partition says about itself: its declared schema, content hash, lineage.

Nothing is written whose schema departs from what the kernel declares for the output; every
committed partition gets a lineage record (sources, inputs, code, rows, checks, snapshot).
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import os
from collections.abc import Mapping
from typing import Any

from pyspark.sql import DataFrame

from spark_jobs.contracts.layout import Delivery
from spark_jobs.contracts.outputs import DatasetOutput, schema_differences
from spark_jobs.contracts.protocol import (
    GIT_SHA_ENV,
    LAUNCHER_ENV,
    LOG_LOCATION_ENV,
    STARTED_BY_ENV,
)
from spark_jobs.runtime.session import JobError, code_version
from spark_jobs.runtime.submission import submission_facts


class UndeclaredSchemaError(JobError):
    """A job about to write a schema its output does not declare: a bug, never data's fault."""


def written_schema(df: DataFrame) -> list[tuple[str, str]]:
    return [(f.name, f.dataType.simpleString()) for f in df.schema.fields]


def require_declared_schema(df: DataFrame, output: DatasetOutput) -> None:
    """Refuse to write a frame whose columns or types differ from the declared output."""
    problems = schema_differences(output, written_schema(df))
    if problems:
        raise UndeclaredSchemaError(
            f"{output.asset_key}: the job would write a schema its contract does not declare "
            f"({'; '.join(problems)}); nothing written"
        )


def content_hash(rows: int, hash_sum: Any, schema: str) -> str:
    """Order-independent fingerprint of a dataset: row count, sum of row hashes and schema."""
    text = f"{rows}|{hash_sum if hash_sum is not None else 0}|{schema}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _os_user() -> str:
    try:
        return "_".join(getpass.getuser().split())
    except (KeyError, OSError):  # no name for the uid (some containers)
        return f"uid-{os.getuid()}"


def lineage_record(
    *,
    output: DatasetOutput,
    delivery: Delivery,
    run_id: str,
    application_id: str,
    status: str,
    **fields: Any,
) -> dict[str, Any]:
    """The `_lineage.json` written beside every partition: enough to audit it without Dagster."""
    return {
        "dataset": output.asset_key,
        "zone": output.zone.value,
        "partition": delivery.key,
        "status": status,
        "run_id": run_id,
        "spark_application_id": application_id,
        "code_version": code_version(),
        "git_sha": os.environ.get(GIT_SHA_ENV, "unknown"),
        "launcher": os.environ.get(LAUNCHER_ENV, "spark-submit"),
        "started_by": os.environ.get(STARTED_BY_ENV) or f"spark-submit:{_os_user()}",
        "log_location": os.environ.get(LOG_LOCATION_ENV),
        # On AWS: the step or job run id and its own logs (a more precise log_location).
        **submission_facts(),
        "produced_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "column_lineage": {
            column: [f"{ref.asset_key}.{ref.column}" for ref in refs]
            for column, refs in output.column_lineage.items()
        },
        **fields,
    }


def input_reference(
    upstream: DatasetOutput, partition: str, lineage: Mapping[str, Any]
) -> dict[str, Any]:
    """An input of a lineage record: which committed version of which partition was read."""
    return {
        "asset": upstream.asset_key,
        "table": upstream.table,
        "partition": partition,
        "snapshot_id": lineage.get("snapshot_id"),
        "content_hash": lineage.get("content_hash"),
        "run_id": lineage.get("run_id"),
        # The chain: the sha256 of the record read, so editing it breaks this one.
        "record_sha256": lineage.get("record_sha256"),
    }
