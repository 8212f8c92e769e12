"""Level 1: the Iceberg table layer on the shared session: stage, publish, grow, lineage.

The session's `clinical` catalog is pointed, once, at a lake of this module (a SQLite catalog
in a temporary folder); nothing else in the test process uses that catalog name.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from clinical_platform.catalog import catalog_settings
from spark_jobs.contracts.layout import Delivery, LakeLayout, Zone
from spark_jobs.contracts.outputs import output
from spark_jobs.contracts.tables import CATALOG, spark_conf
from spark_jobs.storage.tables import (
    COMMIT_ATTEMPTS,
    Committed,
    LakeTables,
    companion,
    delivered,
    table_shaped,
)

DM = output(Zone.RAW, "dm")
FIRST = Delivery("S01", "2024-01-15")
SECOND = Delivery("S01", "2024-02-01")


@pytest.fixture(scope="module")
def lake(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LakeLayout]:
    layout = LakeLayout(str(tmp_path_factory.mktemp("tables") / "lake"))
    for key, value in spark_conf(catalog_settings(layout)).items():
        if key.startswith(f"spark.sql.catalog.{CATALOG}"):
            spark.conf.set(key, value)
    yield layout


def dm_rows(spark: SparkSession, subjects: list[str], delivery: Delivery, tables: LakeTables):
    """A delivered DM frame: two contract columns as an XPT file types them, plus provenance."""
    rows = [
        (
            subject,
            60.0 + i,
            f"file:/landing/{delivery.delivery}/dm.xpt",
            i + 1,
            "h",
            delivery.key,
            "r",
        )
        for i, subject in enumerate(subjects)
    ]
    schema = (
        "USUBJID string, AGE double, _source_uri string, _source_row bigint, "
        "_source_sha256 string, _delivery string, _ingested_run_id string"
    )
    return table_shaped(spark.createDataFrame(rows, schema), DM, tables, delivery)


def current(spark: SparkSession, delivery: Delivery) -> list[str]:
    tables = LakeTables(spark, LakeLayout("/unused"), "reader")
    return sorted(r["USUBJID"] for r in tables.read(DM, delivery).collect())


def test_staged_rows_are_invisible_until_published(spark: SparkSession, lake: LakeLayout) -> None:
    tables = LakeTables(spark, lake, "run-a")
    first = tables.stage(dm_rows(spark, ["A", "B"], FIRST, tables), DM, FIRST)
    assert (first.rows, current(spark, FIRST)) == (2, [])
    snapshot = tables.publish(first)
    assert current(spark, FIRST) == ["A", "B"]
    # A second run stages a new version; killed before publishing, it changes nothing.
    again = LakeTables(spark, lake, "run-b")
    killed = again.stage(dm_rows(spark, ["A", "B", "C"], FIRST, again), DM, FIRST)
    assert current(spark, FIRST) == ["A", "B"]
    assert again.current_snapshot(DM) == snapshot
    # The next run succeeds; the killed run's branch is left for retention to drop.
    retry = LakeTables(spark, lake, "run-c")
    later = retry.publish(retry.stage(dm_rows(spark, ["A", "B", "C"], FIRST, retry), DM, FIRST))
    assert current(spark, FIRST) == ["A", "B", "C"]
    assert later != snapshot
    branches = [
        r["name"] for r in spark.sql(f"SELECT name FROM {CATALOG}.raw.clinical_dm.refs").collect()
    ]
    assert killed.branch in branches
    old = spark.read.option("snapshot-id", snapshot).table(f"{CATALOG}.raw.clinical_dm")
    assert sorted(r["USUBJID"] for r in old.collect()) == ["A", "B"]


def test_publishing_replaces_one_delivery_and_survives_a_moved_main(
    spark: SparkSession, lake: LakeLayout
) -> None:
    """Two runs of different deliveries staged at once: the second to publish finds `main`
    moved and writes its rows onto the new main; each delivery holds exactly its rows."""
    one, two = LakeTables(spark, lake, "run-d"), LakeTables(spark, lake, "run-e")
    staged_one = one.stage(dm_rows(spark, ["X"], SECOND, one), DM, SECOND)
    staged_two = two.stage(dm_rows(spark, ["A"], FIRST, two), DM, FIRST)
    one.publish(staged_one)
    two.publish(staged_two)
    assert (current(spark, FIRST), current(spark, SECOND)) == (["A"], ["X"])


def test_a_delivery_typed_otherwise_grows_the_table_and_reads_back_as_delivered(
    spark: SparkSession, lake: LakeLayout
) -> None:
    """A CSV delivery brings AGE as text: it lands in a companion column, exactly as sent, and
    reads back with the delivered type; a column outside the contract becomes a new column."""
    tables = LakeTables(spark, lake, "run-f")
    rows = [("Z", "61.50", "extra", "file:/l/dm.csv", 1, "h", SECOND.key, "r")]
    schema = (
        "USUBJID string, AGE string, NOTE string, _source_uri string, _source_row bigint, "
        "_source_sha256 string, _delivery string, _ingested_run_id string"
    )
    frame = spark.createDataFrame(rows, schema)
    tables.publish(tables.stage(table_shaped(frame, DM, tables, SECOND), DM, SECOND))
    columns = dict(tables.columns(DM))
    assert columns["AGE"] == "double" and columns[companion("AGE", "string")] == "string"
    assert columns["NOTE"] == "string"
    back = delivered(
        tables.read(DM, SECOND), [(f.name, f.dataType.simpleString()) for f in frame.schema]
    )
    assert back.collect()[0].asDict() == frame.collect()[0].asDict()


def test_lineage_records_name_their_snapshot(spark: SparkSession, lake: LakeLayout) -> None:
    tables = LakeTables(spark, lake, "run-g")
    snapshot = tables.publish(tables.stage(dm_rows(spark, ["Q"], FIRST, tables), DM, FIRST))
    record = {"partition": FIRST.key, "rows": {"out": 1}, "snapshot_id": snapshot}
    (digest,) = tables.record(Committed(DM, FIRST, snapshot, record))
    assert len(digest) == 64
    fresh = LakeTables(spark, lake, "reader")
    read = fresh.committed_record(DM, FIRST)
    assert read is not None and read["record_sha256"] == digest
    # The record as committed: what the job said, and the sha256 of each data file it added.
    [data_file] = read["data_files"]
    data = Path(data_file["path"].removeprefix("file:")).read_bytes()
    assert (data_file["size"], data_file["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
    assert {k: v for k, v in read.items() if k not in ("data_files", "record_sha256")} == record
    assert [r["partition"] for r in fresh.records(DM, "S01")] == [FIRST.key]
    assert fresh.verified_count(DM, FIRST) == (1, [])


def test_a_missing_data_file_is_counted_out_and_named(
    spark: SparkSession, lake: LakeLayout, tmp_path: Path
) -> None:
    tables = LakeTables(spark, lake, "run-h")
    delivery = Delivery("S02", "2024-03-01")
    tables.publish(tables.stage(dm_rows(spark, ["M", "N"], delivery, tables), DM, delivery))
    files = tables.data_files(DM, delivery)
    assert sum(n for _, n in files) == 2
    victim = files[0][0]
    Path(victim.removeprefix("file:")).unlink()
    rows, missing = tables.verified_count(DM, delivery)
    assert missing == [victim] and rows == 2 - files[0][1]


class CommitRacing:
    """What `LakeTables._commit` sees when another application keeps committing to the table:
    Iceberg's own retries give up twice, then the statement goes through."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.statements: list[str] = []

    def sql(self, statement: str) -> str:
        self.statements.append(statement)
        if statement.startswith("ALTER") and self.failures:
            self.failures -= 1
            raise RuntimeError(
                "org.apache.iceberg.exceptions.CommitFailedException: Table metadata refresh is "
                "required"
            )
        return "done"


def test_a_commit_that_another_application_raced_is_refreshed_and_tried_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("spark_jobs.storage.tables.time.sleep", lambda _: None)
    tables = LakeTables.__new__(LakeTables)
    racing = CommitRacing(failures=2)
    tables.spark = racing  # pyright: ignore[reportAttributeAccessIssue]
    statement = "ALTER TABLE t CREATE BRANCH b"
    assert tables._commit("t", statement) == "done"  # pyright: ignore[reportPrivateUsage]
    assert racing.statements == [statement, "REFRESH TABLE t"] * 2 + [statement]
    racing = CommitRacing(failures=COMMIT_ATTEMPTS)
    tables.spark = racing  # pyright: ignore[reportAttributeAccessIssue]
    with pytest.raises(RuntimeError, match="CommitFailedException"):
        tables._commit("t", statement)  # pyright: ignore[reportPrivateUsage]
    assert racing.statements.count(statement) == COMMIT_ATTEMPTS
