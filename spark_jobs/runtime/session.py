"""What every entry point shares: the Spark session, one-line failures, code identity."""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Callable
from typing import NoReturn

from pyspark.sql import SparkSession

from spark_jobs.contracts.protocol import CODE_VERSION_ENV, FAILURE_PREFIX
from spark_jobs.contracts.tables import CATALOG
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
