"""What every entry point shares: the Spark session, one-line failures, code identity."""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import NoReturn

from pyspark.sql import SparkSession

from spark_jobs.contracts.protocol import CODE_VERSION_ENV, FAILURE_PREFIX
from spark_jobs.contracts.tables import CATALOG
from spark_jobs.runtime.arguments import DeliveryArgs
from spark_jobs.runtime.reporting import JobReporter, open_reporter

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1


class JobError(Exception):
    """A failure the user can act on; its message is one line naming file and problem."""


def build_session(app_name: str, warehouse: str | None = None) -> SparkSession:
    """The session of an entry point; cluster settings come from spark-submit, not from here.

    Only the warehouse of the `clinical` catalog is the job's to say: it is the lake it was
    given (the catalog's kind comes from the launcher locally, from the cluster on EMR).
    """
    builder = SparkSession.Builder()
    if warehouse:
        builder = builder.config(f"spark.sql.catalog.{CATALOG}.warehouse", warehouse)
    spark = (
        builder.appName(app_name)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.sources.partitionColumnTypeInference.enabled", "false")
        # Conversions are judged by contract rules (castable, iso8601), never by exceptions.
        .config("spark.sql.ansi.enabled", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel(os.environ.get("CLINICAL_SPARK_LOG_LEVEL", "WARN"))
    # py4j says goodbye on standard output at exit, which would mix into a query's result.
    logging.getLogger("py4j").setLevel(logging.WARNING)
    return spark


SHUFFLE_PARTITIONS = "spark.sql.shuffle.partitions"
ROWS_PER_SHUFFLE_PARTITION = 50_000


class _ShuffleSizes:
    """The shuffle partitions each dataset running now asked for (datasets run concurrently
    in one session, whose setting they share: it is the largest of their wishes)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.wanted: list[int] = []
        self.configured = "200"


_SHUFFLES = _ShuffleSizes()


@contextmanager
def shuffles_sized_to(spark: SparkSession, rows: int) -> Iterator[None]:
    """Shuffle partitions in proportion to the rows, up to the configured number: eight tasks
    and eight small files for a 600-row domain cost about half a second more than one."""
    with _SHUFFLES.lock:
        if not _SHUFFLES.wanted:
            _SHUFFLES.configured = spark.conf.get(SHUFFLE_PARTITIONS) or "200"
        wanted = math.ceil(rows / ROWS_PER_SHUFFLE_PARTITION)
        wanted = max(1, min(int(_SHUFFLES.configured), wanted))
        _SHUFFLES.wanted.append(wanted)
        spark.conf.set(SHUFFLE_PARTITIONS, str(max(_SHUFFLES.wanted)))
    try:
        yield
    finally:
        with _SHUFFLES.lock:
            _SHUFFLES.wanted.remove(wanted)
            now = str(max(_SHUFFLES.wanted)) if _SHUFFLES.wanted else _SHUFFLES.configured
            spark.conf.set(SHUFFLE_PARTITIONS, now)


# Set on the job to say how many datasets of a delivery run at once (default: the cores of
# the application, at most MAX_DATASET_WORKERS).
DATASET_WORKERS_CONF = "spark.clinical.datasetWorkers"
MAX_DATASET_WORKERS = 4


def dataset_workers(spark: SparkSession) -> int:
    configured = spark.conf.get(DATASET_WORKERS_CONF, None)
    if configured:
        return max(1, int(configured))
    return max(1, min(MAX_DATASET_WORKERS, spark.sparkContext.defaultParallelism))


def for_each_dataset(
    spark: SparkSession, names: Sequence[str], body: Callable[[str], None]
) -> None:
    """Run `body` for each of a delivery's datasets, several at once.

    A small domain's work is mostly the driver planning, generating code and committing, on
    one core; two domains at once keep both cores of a small machine busy (curating the
    120-subject demo went from 33 s to 22 s on 2 cores). Datasets are independent: each writes
    its own tables and commits alone. Every dataset runs even when one fails; then the first
    failure, in the datasets' order, is raised.
    """
    workers = min(len(names), dataset_workers(spark))
    if workers <= 1:
        errors = [_failure_of(body, name) for name in names]
    else:
        with ThreadPoolExecutor(workers, thread_name_prefix="dataset") as pool:
            futures = [pool.submit(_failure_of, body, name) for name in names]
        errors = [future.result() for future in futures]
    for error in errors:
        if error is not None:
            raise error


def _failure_of(body: Callable[[str], None], name: str) -> BaseException | None:
    try:
        body(name)
    except Exception as error:  # noqa: BLE001 - raised by for_each_dataset once all are done
        return error
    return None


def application_name(stage: str, batch: Sequence[DeliveryArgs]) -> str:
    """`clinical-ingest-S/D` for one delivery, `clinical-ingest-3-deliveries` for a batch."""
    if len(batch) == 1:
        return f"clinical-{stage}-{batch[0].delivery.key}"
    return f"clinical-{stage}-{len(batch)}-deliveries"


def for_each_delivery(
    batch: Sequence[DeliveryArgs], reporter: JobReporter, body: Callable[[DeliveryArgs], None]
) -> None:
    """Run `body` for each delivery in order, in this one application.

    One delivery runs exactly as it always did. In a batch each delivery's results go to its own
    partition, and a delivery that fails is reported and left behind while the others go on;
    the job then fails, naming every delivery that did.
    """
    if len(batch) == 1:
        body(batch[0])
        return
    failed: list[str] = []
    for job in batch:
        key = job.delivery.key
        with reporter.for_delivery(key):
            try:
                body(job)
            except JobError as error:
                reason = str(error).replace("\n", " ")
            # A bug or a Spark error in one delivery must not cost the others their run.
            except Exception as error:  # noqa: BLE001
                traceback.print_exc()
                last = traceback.format_exception_only(type(error), error)[-1].strip()
                reason = f"failed unexpectedly: {last}"
            else:
                continue
            reporter.delivery_failed(reason)
            failed.append(f"{key}: {reason}")
    if failed:
        raise JobError(f"{len(failed)} of {len(batch)} deliveries failed: {'; '.join(failed)}")


def code_version() -> str:
    """Content hash of the `spark_jobs` bundle this job runs from, as set by the launcher."""
    return os.environ.get(CODE_VERSION_ENV, "unversioned")


def run_job(name: str, body: Callable[[JobReporter], None]) -> NoReturn:
    """Run an entry point's body and exit with a status the launcher understands."""
    failure: tuple[int, str] | None = None
    with open_reporter() as reporter:
        try:
            body(reporter)
        except JobError as error:
            message = str(error).replace("\n", " ")
            reporter.error(message)
            failure = (EXIT_USER_ERROR, f"{name}: {message}")
        except Exception as error:  # noqa: BLE001 - last line of defence of an entry point
            traceback.print_exc()
            last = traceback.format_exception_only(type(error), error)[-1].strip()
            reporter.error(f"{name} failed unexpectedly: {last}")
            failure = (EXIT_INTERNAL_ERROR, f"{name} failed unexpectedly: {last}")
    if failure is None:
        sys.exit(0)
    code, message = failure
    sys.stderr.write(f"{FAILURE_PREFIX}{message}\n")
    sys.stderr.flush()
    sys.exit(code)
