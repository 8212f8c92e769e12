"""Writing partitions so that readers only ever see complete ones, with the declared schema.

Each output is written to its staging path (Spark ignores paths starting with `_`), its
lineage record is added, and only then is it swapped into `study=<S>/delivery=<D>/`.
Re-materializing replaces the partition, never appends. Nothing is written whose schema
departs from what the kernel declares for the output.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pyspark.sql import DataFrame, Observation
from pyspark.sql import functions as F

from spark_jobs.contracts.layout import Delivery, LakeLayout
from spark_jobs.contracts.outputs import (
    RUN_SPECIFIC_COLUMNS,
    DatasetOutput,
    schema_differences,
)
from spark_jobs.contracts.protocol import GIT_SHA_ENV, LAUNCHER_ENV
from spark_jobs.runtime.session import JobError, code_version
from spark_jobs.storage.filesystem import LakeStorage


class UndeclaredSchemaError(JobError):
    """A job about to write a schema its output does not declare: a bug, never data's fault."""


@dataclass(frozen=True)
class WrittenData:
    uri: str
    rows: int
    content_hash: str
    extra: Mapping[str, Any]


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


def hashed_columns(df: DataFrame) -> list[str]:
    return [c for c in df.columns if c not in RUN_SPECIFIC_COLUMNS]


def write_observed(
    df: DataFrame,
    uri: str,
    output: DatasetOutput,
    extra_metrics: Sequence[Any] = (),
) -> WrittenData:
    """Write `df` as Parquet and measure it in the same pass (rows, content hash, extras)."""
    require_declared_schema(df, output)
    observation = Observation(output.asset_key)
    columns = hashed_columns(df)
    row_hash = F.xxhash64(*columns) if columns else F.lit(0)
    observed = df.observe(
        observation,
        F.count(F.lit(1)).alias("_rows"),
        F.sum(row_hash.cast("decimal(38,0)")).alias("_hash_sum"),
        *extra_metrics,
    )
    observed.write.mode("overwrite").parquet(uri)
    metrics = dict(observation.get)
    rows = int(metrics.pop("_rows") or 0)
    digest = content_hash(rows, metrics.pop("_hash_sum"), df.schema.simpleString())
    return WrittenData(uri=uri, rows=rows, content_hash=digest, extra=metrics)


class PartitionWriter:
    """Stages and commits the partitions one job run produces."""

    def __init__(self, storage: LakeStorage, layout: LakeLayout, run_id: str) -> None:
        self.storage = storage
        self.layout = layout
        self.run_id = run_id

    def staging(self, output: DatasetOutput, delivery: Delivery) -> str:
        return self.layout.staging(output.zone, output.name, self.run_id, delivery)

    def commit(
        self, output: DatasetOutput, delivery: Delivery, staging: str, lineage: Mapping[str, Any]
    ) -> str:
        """Add the lineage record to a staged partition and make it the visible one."""
        layout, storage = self.layout, self.storage
        if not storage.exists(staging):
            storage.mkdirs(staging)
        storage.write_json(layout.record_in(staging), dict(lineage))
        final = layout.partition(output.zone, output.name, delivery)
        trash = layout.trash(output.zone, output.name, self.run_id, delivery)
        storage.mkdirs(layout.study_dir(output.zone, output.name, delivery.study))
        replaced = storage.exists(final)
        if replaced:
            storage.mkdirs(layout.trash_dir(output.zone, output.name))
            storage.rename(final, trash)
        try:
            storage.rename(staging, final)
        except OSError:
            if replaced:
                storage.rename(trash, final)
            raise
        if replaced:
            storage.delete(trash)
        return final

    def discard(self, staging: str) -> None:
        self.storage.delete(staging)


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
        "produced_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "column_lineage": {
            column: [f"{ref.asset_key}.{ref.column}" for ref in refs]
            for column, refs in output.column_lineage.items()
        },
        **fields,
    }
