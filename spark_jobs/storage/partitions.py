"""Writing partitions so that readers only ever see complete ones.

Each output is written to `<dataset>/_staging/<run>-<study>-<delivery>/` (Spark ignores paths
starting with `_`), its lineage record is added, and only then is it swapped into
`<dataset>/study=<S>/delivery=<D>/`. Re-materializing replaces the partition, never appends.
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

from spark_jobs.contracts.layout import LINEAGE_NAME, Delivery
from spark_jobs.contracts.protocol import GIT_SHA_ENV, LAUNCHER_ENV
from spark_jobs.runtime.session import code_version
from spark_jobs.storage.filesystem import LakeStorage

# Columns that differ between two runs over the same input; left out of content hashes.
RUN_SPECIFIC_COLUMNS = frozenset({"_ingested_run_id", "_curated_run_id", "_featurized_run_id"})


@dataclass(frozen=True)
class WrittenData:
    uri: str
    rows: int
    content_hash: str
    extra: Mapping[str, Any]


def content_hash(rows: int, hash_sum: Any, schema: str) -> str:
    """Order-independent fingerprint of a dataset: row count, sum of row hashes and schema."""
    text = f"{rows}|{hash_sum if hash_sum is not None else 0}|{schema}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def hashed_columns(df: DataFrame) -> list[str]:
    return [c for c in df.columns if c not in RUN_SPECIFIC_COLUMNS]


def write_observed(
    df: DataFrame,
    uri: str,
    name: str,
    extra_metrics: Sequence[Any] = (),
) -> WrittenData:
    """Write `df` as Parquet and measure it in the same pass (rows, content hash, extras)."""
    observation = Observation(name)
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

    def __init__(self, storage: LakeStorage, run_id: str) -> None:
        self.storage = storage
        self.run_id = run_id

    def staging_uri(self, dataset_uri: str, delivery: Delivery) -> str:
        return f"{dataset_uri}/_staging/{self.run_id}-{delivery.study}-{delivery.delivery}"

    def commit(
        self,
        dataset_uri: str,
        delivery: Delivery,
        staging: str,
        lineage: Mapping[str, Any],
    ) -> str:
        """Add the lineage record to a staged partition and make it the visible one."""
        if not self.storage.exists(staging):
            self.storage.mkdirs(staging)
        self.storage.write_json(f"{staging}/{LINEAGE_NAME}", dict(lineage))
        final = f"{dataset_uri}/{delivery.hive_path}"
        trash = f"{dataset_uri}/_trash/{self.run_id}-{delivery.study}-{delivery.delivery}"
        self.storage.mkdirs(f"{dataset_uri}/study={delivery.study}")
        replaced = self.storage.exists(final)
        if replaced:
            self.storage.mkdirs(f"{dataset_uri}/_trash")
            self.storage.rename(final, trash)
        try:
            self.storage.rename(staging, final)
        except OSError:
            if replaced:
                self.storage.rename(trash, final)
            raise
        if replaced:
            self.storage.delete(trash)
        return final

    def discard(self, staging: str) -> None:
        self.storage.delete(staging)


def lineage_record(
    *,
    dataset: str,
    zone: str,
    delivery: Delivery,
    run_id: str,
    application_id: str,
    status: str,
    **fields: Any,
) -> dict[str, Any]:
    """The `_lineage.json` written beside every partition: enough to audit it without Dagster."""
    return {
        "dataset": dataset,
        "zone": zone,
        "partition": delivery.key,
        "status": status,
        "run_id": run_id,
        "spark_application_id": application_id,
        "code_version": code_version(),
        "git_sha": os.environ.get(GIT_SHA_ENV, "unknown"),
        "launcher": os.environ.get(LAUNCHER_ENV, "spark-submit"),
        "produced_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        **fields,
    }
