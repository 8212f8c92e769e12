"""Iceberg tables of the lake: one atomic commit per delivery partition, lineage beside it.

A run writes a delivery's rows to a branch of the table (`stage`), checks them (row counts,
reconciliation, one row per subject), and only then publishes the branch to `main`
(`publish`, an Iceberg fast-forward: one atomic commit). Until then readers see the previous
version, complete; a run killed in between leaves only a branch that the next run of the same
delivery drops. After publishing, the partition's lineage record is appended to
`system.lineage` with the snapshot id it describes, and the snapshot summary carries the run
id, delivery, code version and contract version.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pyspark.sql import Column, DataFrame, Observation, Row, SparkSession
from pyspark.sql import functions as F

from spark_jobs.contracts.layout import Delivery, LakeLayout
from spark_jobs.contracts.outputs import (
    RUN_SPECIFIC_COLUMNS,
    SOURCE_URI,
    DatasetOutput,
    OutputColumn,
    data_columns,
)
from spark_jobs.contracts.protocol import record_sha256, record_text
from spark_jobs.contracts.tables import (
    CODE_VERSION_PROPERTY,
    CONTRACT_VERSION_PROPERTY,
    DELIVERY_PROPERTY,
    FAULT_BEFORE_PUBLISH_ENV,
    LINEAGE_COLUMNS,
    LINEAGE_TABLE,
    PARTITION_COLUMNS,
    RUN_ID_PROPERTY,
    SYSTEM_NAMESPACE,
    qualified,
    stage_branch,
)
from spark_jobs.runtime.session import JobError, code_version
from spark_jobs.storage.filesystem import LakeStorage
from spark_jobs.storage.lineage import content_hash, require_declared_schema

_NOT_ANCESTOR = "is not an ancestor"


@dataclass(frozen=True)
class Committed:
    """A published partition and the lineage record that describes it."""

    output: DatasetOutput
    delivery: Delivery
    snapshot_id: int
    record: Mapping[str, Any]


@dataclass(frozen=True)
class Sealed:
    """A committed partition's lineage record as text, with its sha256, not yet appended."""

    done: Committed
    text: str
    digest: str


@dataclass(frozen=True)
class Staged:
    """Rows written to a branch of a table, counted and hashed, not yet visible."""

    output: DatasetOutput
    delivery: Delivery
    branch: str
    rows: int
    content_hash: str
    data_hash: str  # the content hash without provenance: equal data in any delivery
    extra: Mapping[str, Any]

    @property
    def table(self) -> str:
        return qualified(self.output.table)


def companion(name: str, type_: str) -> str:
    """Where a raw column's values go when a delivery types it otherwise than the table."""
    return f"{name}__as_{re.sub('[^a-z0-9]+', '_', type_.lower()).strip('_')}"


class LakeTables:
    """The platform's tables for one Spark session and run."""

    def __init__(self, spark: SparkSession, layout: LakeLayout, run_id: str) -> None:
        self.spark = spark
        self.layout = layout
        self.run_id = run_id
        # Lineage records of every table of a study, read in one query the first time the study
        # is asked about; the job adds its own as it commits.
        self._records: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._studies: set[str] = set()
        self._lineage_ready = False
        # A delivery's datasets run in threads of one session: creating namespaces and the
        # lineage table, and filling the records cache, happen once, under this lock.
        self._lock = threading.RLock()

    # ---- tables ---------------------------------------------------------------------------

    def exists(self, output: DatasetOutput) -> bool:
        return bool(self.spark.catalog.tableExists(qualified(output.table)))

    def columns(self, output: DatasetOutput) -> list[tuple[str, str]]:
        """(name, type) of the table as it is now, or as declared when it does not exist."""
        if not self.exists(output):
            return [(c.name, c.type) for c in output.columns]
        schema = self.spark.table(qualified(output.table)).schema
        return [(f.name, f.dataType.simpleString()) for f in schema.fields]

    def ensure(self, output: DatasetOutput, extra: Sequence[OutputColumn] = ()) -> None:
        """Create the table from the declared schema, and add columns a delivery brings.

        Tables only grow: a column outside the contract (schema drift) or a raw value typed
        otherwise than its column (a `companion`) becomes a new, nullable column.
        """
        table = qualified(output.table)
        created = not self.exists(output)
        if created:
            with self._lock:
                self.spark.sql(f"CREATE NAMESPACE IF NOT EXISTS {qualified(output.zone.value)}")
            columns = ", ".join(_column_ddl(c) for c in output.columns)
            properties = {
                "format-version": "2",
                "clinical.family": output.family,
                CONTRACT_VERSION_PROPERTY: output.contract_version,
                "write.spark.fanout.enabled": "true",
            }
            self.spark.sql(
                f"CREATE TABLE IF NOT EXISTS {table} ({columns}) USING iceberg "
                f"PARTITIONED BY ({', '.join(PARTITION_COLUMNS)}) "
                f"COMMENT {_sql_text(output.title)} "
                f"LOCATION {_sql_text(self.layout.dataset(output.zone, output.name))} "
                f"TBLPROPERTIES ({_properties(properties)})"
            )
        present = {name for name, _ in self.columns(output)}
        missing = [c for c in extra if c.name not in present]
        if missing:
            added = ", ".join(_column_ddl(c) for c in missing)
            self.spark.sql(f"ALTER TABLE {table} ADD COLUMNS ({added})")
        if created or missing:
            # An empty version in the new schema: Iceberg before 1.5 (EMR 6.x) cannot branch a
            # table without a snapshot, and writes a branch in its snapshot's schema.
            self.spark.table(table).limit(0).writeTo(table).append()

    # ---- writing ----------------------------------------------------------------------------

    def stage(
        self,
        df: DataFrame,
        output: DatasetOutput,
        delivery: Delivery,
        extra_metrics: Sequence[Column] = (),
    ) -> Staged:
        """Write the delivery's rows to a new branch, measuring them in the same pass."""
        require_declared_schema(df, output)
        table = qualified(output.table)
        branch = stage_branch(delivery.study, delivery.delivery, self.run_id)
        self._commit(table, f"ALTER TABLE {table} CREATE BRANCH {branch}")
        observation = Observation(f"{output.asset_key}_written")
        data = data_columns(df.columns)
        observed = df.observe(
            observation,
            F.count(F.lit(1)).alias("_rows"),
            F.sum(self._row_hash(df).cast("decimal(38,0)")).alias("_hash_sum"),
            F.sum(_hash_of(data).cast("decimal(38,0)")).alias("_data_hash_sum"),
            *extra_metrics,
        )
        writer = observed.writeTo(f"{table}.branch_{branch}")
        for key, value in self._summary(output, delivery).items():
            writer = writer.option(f"snapshot-property.{key}", value)
        writer.overwrite(_partition_condition(delivery))
        metrics = dict(observation.get)
        rows = int(metrics.pop("_rows") or 0)
        digest = content_hash(rows, metrics.pop("_hash_sum"), df.schema.simpleString())
        # No schema in the data hash: null columns that a widened table adds to a later
        # delivery change no row hash (Spark's hashes skip nulls), and must not change it.
        data_digest = content_hash(rows, metrics.pop("_data_hash_sum"), "data")
        return Staged(output, delivery, branch, rows, digest, data_digest, metrics)

    def _commit(self, table: str, statement: str) -> DataFrame:
        """Run a statement that commits the table's metadata (a branch made, moved, dropped).

        Another application may commit to the same table meanwhile (a backfill and a single
        run of other deliveries). Iceberg retries these commits without re-reading the table
        ("Table metadata refresh is required"), so the table is refreshed and the statement
        tried again; each application only ever touches its own deliveries' branches.
        """
        for attempt in range(COMMIT_ATTEMPTS):
            try:
                return self.spark.sql(statement)
            except Exception as error:
                if "CommitFailedException" not in str(error) or attempt + 1 == COMMIT_ATTEMPTS:
                    raise
                self.spark.sql(f"REFRESH TABLE {table}")
                time.sleep(0.2 * 2**attempt)
        raise AssertionError("unreachable")

    def _row_hash(self, df: DataFrame) -> Column:
        """A row's fingerprint: run ids left out, landing URIs taken relative to the lake, so
        the same delivery gives the same content hash in any run and in any lake."""
        columns = []
        for name in df.columns:
            if name in RUN_SPECIFIC_COLUMNS:
                continue
            column = F.col(f"`{name}`")
            if name == SOURCE_URI:
                prefix = self.layout.root + "/"
                inside = F.substring(column, len(prefix) + 1, 1 << 20)
                column = F.when(column.startswith(prefix), inside).otherwise(column)
            columns.append(column)
        return F.xxhash64(*columns)

    def _summary(self, output: DatasetOutput, delivery: Delivery) -> dict[str, str]:
        return {
            RUN_ID_PROPERTY: self.run_id,
            DELIVERY_PROPERTY: delivery.key,
            CODE_VERSION_PROPERTY: code_version(),
            CONTRACT_VERSION_PROPERTY: output.contract_version,
        }

    def publish(self, staged: Staged) -> int:
        """Make the staged rows the table's current version; returns the snapshot id."""
        table = staged.table
        target = os.environ.get(FAULT_BEFORE_PUBLISH_ENV, "")
        if target in ("*", staged.output.table):
            os._exit(137)  # the test hook: as if killed between writing and committing
        try:
            moved = self._commit(
                table,
                f"CALL {qualified('system')}.fast_forward('{table}', 'main', '{staged.branch}')",
            ).first()
            snapshot = int(moved["updated_ref"]) if moved is not None else None
        except Exception as error:
            if _NOT_ANCESTOR not in str(error):
                raise
            self._copy_onto_main(staged)
            snapshot = None
        self._commit(table, f"ALTER TABLE {table} DROP BRANCH IF EXISTS {staged.branch}")
        return snapshot if snapshot is not None else self.current_snapshot(staged.output)

    def _copy_onto_main(self, staged: Staged) -> None:
        """Another delivery was published meanwhile: write the staged rows onto main again."""
        rows = self.spark.read.option("branch", staged.branch).table(staged.table)
        condition = _partition_condition(staged.delivery)
        writer = rows.where(condition).writeTo(staged.table)
        for key, value in self._summary(staged.output, staged.delivery).items():
            writer = writer.option(f"snapshot-property.{key}", value)
        writer.overwrite(condition)

    def replace_study(
        self, target: DatasetOutput, source: DatasetOutput, delivery: Delivery
    ) -> int:
        """Make the delivery's published rows of `source` all the study's rows of `target`, in
        one atomic commit (a study's current data); returns the snapshot id."""
        self.ensure(target)
        study = PARTITION_COLUMNS[0]
        writer = self.read(source, delivery).writeTo(qualified(target.table))
        for key, value in self._summary(target, delivery).items():
            writer = writer.option(f"snapshot-property.{key}", value)
        writer.overwrite(F.col(study) == delivery.study)
        return self.current_snapshot(target)

    def discard(self, staged: Staged) -> None:
        self._commit(
            staged.table, f"ALTER TABLE {staged.table} DROP BRANCH IF EXISTS {staged.branch}"
        )

    def current_snapshot(self, output: DatasetOutput) -> int:
        table = qualified(output.table)
        row = self.spark.sql(f"SELECT snapshot_id FROM {table}.refs WHERE name = 'main'").first()
        if row is None:
            raise JobError(f"{output.table}: no current snapshot after publishing")
        return int(row["snapshot_id"])

    # ---- reading ----------------------------------------------------------------------------

    def _files(self, output: DatasetOutput, delivery: Delivery, fields: str) -> list[Row]:
        """Rows of the table's `files` metadata for the partition's current version."""
        return self.spark.sql(
            f"SELECT {fields} FROM {qualified(output.table)}.files "
            f"WHERE partition.{PARTITION_COLUMNS[0]} = {_sql_text(delivery.study)} "
            f"AND partition.{PARTITION_COLUMNS[1]} = {_sql_text(delivery.delivery)}"
        ).collect()

    def data_files(self, output: DatasetOutput, delivery: Delivery) -> list[tuple[str, int]]:
        """(path, record count) of every data file of the partition in the current version."""
        rows = self._files(output, delivery, "file_path, record_count")
        return [(str(r["file_path"]), int(r["record_count"])) for r in rows]

    def file_digests(self, output: DatasetOutput, delivery: Delivery) -> list[dict[str, Any]]:
        """Path, size and sha256 of every data file of the partition's current version."""
        rows = self._files(output, delivery, "file_path, file_size_in_bytes")
        storage = LakeStorage(self.spark)
        return [
            {
                "path": str(r["file_path"]),
                "size": int(r["file_size_in_bytes"]),
                "sha256": storage.sha256(str(r["file_path"])),
            }
            for r in sorted(rows, key=lambda r: str(r["file_path"]))
        ]

    def verified_count(self, output: DatasetOutput, delivery: Delivery) -> tuple[int, list[str]]:
        """Rows of the published partition, and its data files that are gone from storage.

        With files missing the table cannot be read; the count is then what the remaining
        files hold according to the table's metadata, so a check can say what is wrong.
        """
        storage = LakeStorage(self.spark)
        files = self.data_files(output, delivery)
        missing = [path for path, _ in files if not storage.exists(path)]
        if missing:
            return sum(n for path, n in files if path not in missing), missing
        return self.read(output, delivery).count(), []

    def read(self, output: DatasetOutput, delivery: Delivery) -> DataFrame:
        """The delivery's rows as published, partition columns included."""
        return self.spark.table(qualified(output.table)).where(_partition_condition(delivery))

    # ---- lineage ------------------------------------------------------------------------------

    def seal(self, done: Committed) -> Sealed:
        """The record of a committed partition as it will be kept: with its data files' sha256
        (so `verify` can prove later that nobody changed them; Iceberg keeps sizes and
        statistics, not hashes), and its own sha256, which records computed from it quote."""
        record = {**done.record, "data_files": self.file_digests(done.output, done.delivery)}
        return Sealed(done, record_text(record), record_sha256(record))

    def record(self, *records: Committed | Sealed) -> list[str]:
        """Append the lineage records of committed partitions in one commit; their sha256s."""
        self._ensure_lineage_table()
        committed_at = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
        sealed = [r if isinstance(r, Sealed) else self.seal(r) for r in records]
        rows = [
            (s.done.output.table, s.done.delivery.study, s.done.delivery.delivery, self.run_id,
             s.done.snapshot_id, s.digest, s.text, committed_at)
            for s in sealed
        ]  # fmt: skip
        schema = ", ".join(f"{name} {type_}" for name, type_ in LINEAGE_COLUMNS)
        self.spark.createDataFrame(rows, schema).writeTo(qualified(LINEAGE_TABLE)).append()
        with self._lock:
            for s in sealed:
                study = s.done.delivery.study
                if study in self._studies:
                    kept = {**json.loads(s.text), "record_sha256": s.digest}
                    self._records.setdefault((s.done.output.table, study), []).append(kept)
        return [s.digest for s in sealed]

    def _ensure_lineage_table(self) -> None:
        with self._lock:
            if not self._lineage_ready:
                self._create_lineage_table()
                self._lineage_ready = True

    def _create_lineage_table(self) -> None:
        self.spark.sql(f"CREATE NAMESPACE IF NOT EXISTS {qualified(SYSTEM_NAMESPACE)}")
        columns = ", ".join(f"{name} {type_}" for name, type_ in LINEAGE_COLUMNS)
        self.spark.sql(
            f"CREATE TABLE IF NOT EXISTS {qualified(LINEAGE_TABLE)} ({columns}) USING iceberg "
            f"PARTITIONED BY (table_name) "
            f"LOCATION {_sql_text(self.layout.system_table('lineage'))} "
            "TBLPROPERTIES ('format-version'='2')"
        )

    def records(self, output: DatasetOutput, study: str) -> list[dict[str, Any]]:
        """The latest lineage record of each committed delivery of a study, oldest first."""
        with self._lock:
            if study not in self._studies:
                self._read_records(study)
        latest: dict[str, Any] = {}
        for record in self._records.get((output.table, study), []):
            latest[record["partition"]] = record
        return list(latest.values())

    def _read_records(self, study: str) -> None:
        """Every table's records of the study, oldest first: one query instead of one per
        table (a delivery's curation asks about raw, curated and quarantine of each domain)."""
        self._studies.add(study)
        if not self.spark.catalog.tableExists(qualified(LINEAGE_TABLE)):
            return
        rows = (
            self.spark.table(qualified(LINEAGE_TABLE))
            .where(F.col("study") == study)
            .select("table_name", "record", "record_sha256", "committed_at")
            .collect()
        )
        for row in sorted(rows, key=lambda r: r["committed_at"]):
            key = (row["table_name"], study)
            record = {**json.loads(row["record"]), "record_sha256": row["record_sha256"]}
            self._records.setdefault(key, []).append(record)

    def committed_record(self, output: DatasetOutput, delivery: Delivery) -> dict[str, Any] | None:
        """The lineage record of the delivery's partition as last committed, if any."""
        found = [r for r in self.records(output, delivery.study) if r["partition"] == delivery.key]
        return found[-1] if found else None


COMMIT_ATTEMPTS = 5


def _hash_of(columns: Sequence[str]) -> Column:
    """A row's fingerprint over `columns` (a constant when there are none)."""
    return F.xxhash64(*[F.col(f"`{c}`") for c in columns]) if columns else F.lit(0)


def _partition_condition(delivery: Delivery) -> Column:
    study, key = PARTITION_COLUMNS
    return (F.col(study) == delivery.study) & (F.col(key) == delivery.delivery)


def _column_ddl(column: OutputColumn) -> str:
    comment = f" COMMENT {_sql_text(column.description)}" if column.description else ""
    return f"`{column.name}` {column.type}{comment}"


def _sql_text(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _properties(values: Mapping[str, str]) -> str:
    return ", ".join(f"{_sql_text(k)}={_sql_text(v)}" for k, v in values.items())


# ---- raw values as delivered, in tables that only grow ---------------------------------------

_DRIFT = "Delivered outside the contract (schema drift)"


def table_shaped(
    frame: DataFrame, output: DatasetOutput, tables: LakeTables, delivery: Delivery
) -> DataFrame:
    """A delivered frame in the table's columns, growing the table where the delivery needs.

    A column typed as in the table goes to that column; typed otherwise (a CSV delivery's text
    for a numeric column) to its `companion`, so the value is kept exactly as delivered; a
    column outside the contract to a new column of its own. Columns the delivery lacks are
    null. The partition columns name the delivery.
    """
    table_types = dict(tables.columns(output))
    placed: dict[str, Column] = {}
    grown: list[OutputColumn] = []
    for field in frame.schema.fields:
        type_ = field.dataType.simpleString()
        target = field.name
        if field.name in table_types and table_types[field.name] != type_:
            target = companion(field.name, type_)
            grown.append(OutputColumn(target, type_, f"{field.name} when delivered as {type_}"))
        elif field.name not in table_types:
            grown.append(OutputColumn(target, type_, _DRIFT))
        placed[target] = F.col(f"`{field.name}`")
    tables.ensure(output, grown)
    study, key = PARTITION_COLUMNS
    placed[study], placed[key] = F.lit(delivery.study), F.lit(delivery.delivery)
    return frame.select(
        *[
            (placed[name] if name in placed else F.lit(None)).cast(type_).alias(name)
            for name, type_ in tables.columns(output)
        ]
    )


def delivered(table_rows: DataFrame, schema: Sequence[tuple[str, str]]) -> DataFrame:
    """The inverse of `table_shaped`: a partition's columns exactly as its files typed them.

    `schema` is the delivered (name, type) list kept in the partition's lineage record.
    """
    types = {f.name: f.dataType.simpleString() for f in table_rows.schema.fields}
    columns = []
    for name, type_ in schema:
        physical = name if types.get(name) == type_ else companion(name, type_)
        if physical not in types:
            raise JobError(f"column {name} ({type_}) is missing from the table")
        columns.append(F.col(f"`{physical}`").alias(name))
    return table_rows.select(*columns)
