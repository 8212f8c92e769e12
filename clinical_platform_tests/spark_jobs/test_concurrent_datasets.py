"""A delivery's datasets run several at once in one Spark session: all of them, even when one
fails, and with shuffle settings that overlapping datasets cannot corrupt."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from spark_jobs.runtime.session import (
    DATASET_WORKERS_CONF,
    SHUFFLE_PARTITIONS,
    JobError,
    dataset_workers,
    for_each_dataset,
    shuffles_sized_to,
)


@pytest.fixture
def workers(spark) -> Iterator[None]:
    spark.conf.set(DATASET_WORKERS_CONF, "2")
    yield
    spark.conf.unset(DATASET_WORKERS_CONF)


def test_two_datasets_run_at_once_and_all_run_when_some_fail(spark, workers) -> None:
    # Each dataset waits for another to be running: sequential runs would break the barrier.
    together = threading.Barrier(2, timeout=20)
    ran: list[str] = []

    def body(name: str) -> None:
        together.wait()
        ran.append(name)
        if name in ("ae", "lb"):
            raise JobError(f"{name} is broken")

    with pytest.raises(JobError, match=r"^ae is broken$"):
        for_each_dataset(spark, ["dm", "ae", "vs", "lb"], body)
    assert sorted(ran) == ["ae", "dm", "lb", "vs"]


def test_one_worker_runs_in_order_and_still_runs_them_all(spark) -> None:
    spark.conf.set(DATASET_WORKERS_CONF, "1")
    ran: list[tuple[str, str]] = []

    def body(name: str) -> None:
        ran.append((name, threading.current_thread().name))
        if name == "dm":
            raise JobError("dm is broken")

    try:
        with pytest.raises(JobError, match="dm is broken"):
            for_each_dataset(spark, ["dm", "ae", "vs"], body)
    finally:
        spark.conf.unset(DATASET_WORKERS_CONF)
    assert ran == [(n, threading.current_thread().name) for n in ("dm", "ae", "vs")]


def test_workers_default_to_the_application_cores_at_most_four(spark) -> None:
    cores = spark.sparkContext.defaultParallelism
    assert dataset_workers(spark) == max(1, min(4, cores))


def test_overlapping_datasets_share_the_largest_shuffle_and_restore_the_setting(spark) -> None:
    configured = spark.conf.get(SHUFFLE_PARTITIONS)
    spark.conf.set(SHUFFLE_PARTITIONS, "8")
    try:
        with shuffles_sized_to(spark, 120):
            assert spark.conf.get(SHUFFLE_PARTITIONS) == "1"
            with shuffles_sized_to(spark, 120_000):
                assert spark.conf.get(SHUFFLE_PARTITIONS) == "3"
                with shuffles_sized_to(spark, 10_000_000):
                    assert spark.conf.get(SHUFFLE_PARTITIONS) == "8"  # never above the setting
            # The small dataset still running keeps its own size, not the job's setting.
            assert spark.conf.get(SHUFFLE_PARTITIONS) == "1"
        assert spark.conf.get(SHUFFLE_PARTITIONS) == "8"

        # Interleaved in threads, as datasets run: the setting always comes back.
        started, looked = threading.Barrier(2, timeout=20), threading.Barrier(2, timeout=20)
        seen: list[str | None] = []

        def dataset(rows: int) -> None:
            with shuffles_sized_to(spark, rows):
                started.wait()
                seen.append(spark.conf.get(SHUFFLE_PARTITIONS))
                looked.wait()

        threads = [threading.Thread(target=dataset, args=(n,)) for n in (500, 60_000)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert seen == ["2", "2"]
        assert spark.conf.get(SHUFFLE_PARTITIONS) == "8"
    finally:
        spark.conf.set(SHUFFLE_PARTITIONS, configured or "4")
