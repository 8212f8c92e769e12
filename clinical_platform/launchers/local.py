"""Spark on this machine (`local[*]`) or a standalone cluster, through `spark-submit`."""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from threading import Event
from typing import Any

import dagster as dg
from pydantic import Field

from clinical_platform.catalog import CatalogError, catalog_settings
from clinical_platform.launchers.base import (
    SparkJob,
    SparkLauncher,
    SparkRun,
    explain_failure,
    last_lines,
    reported_results,
)
from clinical_platform.launchers.bundle import PACKAGE_DIR, build_bundle
from clinical_platform.launchers.cds import archive_path
from spark_jobs.contracts.layout import LakeLayout, local_path
from spark_jobs.contracts.protocol import LOG_LOCATION_ENV
from spark_jobs.contracts.tables import spark_conf


def spark_home() -> Path:
    """The pip-installed pyspark package, found without importing Spark into Dagster."""
    spec = importlib.util.find_spec("pyspark")
    if spec is None or spec.origin is None:
        raise SparkSubmitError("pyspark is not installed in this environment; run make setup")
    return Path(spec.origin).resolve().parent


# Tuned for short jobs on a small machine; override in spark_conf for long ones.
DEFAULT_CONF = {
    "spark.ui.enabled": "false",
    "spark.sql.shuffle.partitions": "8",
    "spark.sql.adaptive.enabled": "false",
    "spark.log.level": "WARN",
    "spark.driver.memory": "2g",
}
# C1-only JIT: a short Spark job is mostly JVM warm-up; measured ~35% faster curation.
# C1-only also shrinks the default code cache to 48 MB, which a whole delivery's generated
# code in one application fills ("Out of space in CodeCache"), so it is set back to 256 MB.
DEFAULT_DRIVER_JAVA_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:ReservedCodeCacheSize=256m"
# Where `make setup` puts the jars pinned in infra/spark/pom.xml (Iceberg, hadoop-aws, SQLite).
JARS_DIR = PACKAGE_DIR.parent / ".jars"
JARS_DIR_ENV = "CLINICAL_JARS_DIR"


def default_jars_dir() -> Path:
    """CLINICAL_JARS_DIR, else JARS_DIR (`make test-emr-spark` names Spark 3.4's jars); read
    when Spark starts, never when definitions are imported."""
    return Path(os.environ.get(JARS_DIR_ENV) or JARS_DIR)


def spark_jars(folder: Path) -> list[Path]:
    """The jars Spark runs with, or a one-line reason they are missing."""
    jars = sorted(folder.glob("*.jar"))
    if not jars:
        raise SparkSubmitError(
            f"Spark's jars are not in {folder}; run make setup (it fetches them once with Maven)"
        )
    return jars


def jar_classpath(folder: Path) -> str:
    """The jars as a class path: on the JVM's class path from the start, nothing is copied
    (`--jars` copies 400 MB into every application, about 1.5 s each)."""
    return os.pathsep.join(str(jar) for jar in spark_jars(folder))


class SparkSubmitError(RuntimeError):
    """spark-submit could not be started at all (Java missing, broken install)."""


def tail_whole_lines(path: str, should_stop: Callable[[], bool]) -> Iterator[str]:
    """Lines appended to a file by another process, each yielded only once it is complete.

    `readline` at the end of a file that is still being written returns the part written so
    far; a long Pipes message (a curated materialization with its column lineage runs to tens
    of kilobytes) would then be parsed half-written, and Dagster's own tail stops reading.
    """
    pending = ""
    with open(path, encoding="utf-8") as stream:
        while True:
            part = stream.readline()
            if part:
                pending += part
                if pending.endswith("\n"):
                    yield pending
                    pending = ""
            elif should_stop():
                if pending:
                    yield pending  # the writer is gone: the JSON error will say what broke
                return
            else:
                time.sleep(0.01)


class WholeLinesMessageReader(dg.PipesFileMessageReader):
    """Dagster's file message reader, tailing with `tail_whole_lines`."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.messages_path = path

    def _reader_thread(self, handler: Any, is_resource_complete: Event) -> None:
        try:
            for line in tail_whole_lines(self.messages_path, is_resource_complete.is_set):
                handler.handle_message(json.loads(line))
        except BaseException:  # reported to Dagster, then re-raised, as Dagster's reader does
            handler.report_pipes_framework_exception(
                f"{type(self).__name__} reader thread", sys.exc_info()
            )
            raise


class TempFileWholeLinesMessageReader(dg.PipesMessageReader):
    """Messages through a temporary file, read whole line by whole line."""

    @contextmanager
    def read_messages(self, handler: Any) -> Iterator[dg.PipesParams]:
        with tempfile.TemporaryDirectory() as folder:
            reader = WholeLinesMessageReader(os.path.join(folder, "messages"))
            with reader.read_messages(handler) as params:
                yield params

    def no_messages_debug_text(self) -> str:
        return "Attempted to read messages from a local temporary file."


class LocalSparkLauncher(SparkLauncher):
    """Runs each job as a `spark-submit` subprocess of the Dagster step.

    Context goes in and results come back through Pipes temp files; Spark's own log is kept
    under `<lake>/_system/logs/<run>/` and its last lines explain a failure.
    """

    master: str = Field(default="local[*]", description="Spark master URL")
    lake_uri: str = Field(description="Lake root; bundles and Spark logs are kept under it")
    spark_conf: dict[str, str] = Field(default_factory=dict, description="Extra --conf settings")
    driver_java_options: str = Field(default=DEFAULT_DRIVER_JAVA_OPTIONS)
    jars_dir: str | None = Field(
        default=None,
        description="Folder of Spark's jars (default: CLINICAL_JARS_DIR, else .jars)",
    )
    catalog: str = Field(default="sqlite", description="Iceberg catalog: sqlite or glue")
    catalog_db: str | None = Field(
        default=None, description="SQLite file of the catalog (default: under a local lake)"
    )
    work_dir: str | None = Field(
        default=None,
        description="Local folder for code bundles and Spark logs when the lake is not local "
        "(default: clinical-platform in the temporary folder)",
    )

    @property
    def description(self) -> str:
        return f"spark-submit --master {self.master}"

    @property
    def layout(self) -> LakeLayout:
        return LakeLayout(self.lake_uri)

    @property
    def local_system(self) -> LakeLayout:
        """Where bundles and logs go on this machine: the lake's own _system when it is local."""
        if self.layout.root.startswith("file:"):
            return self.layout
        return LakeLayout(self.work_dir or str(Path(tempfile.gettempdir()) / "clinical-platform"))

    def catalog_conf(self) -> dict[str, str]:
        """The lake's Iceberg catalog as Spark settings (`clinical`, SQLite or Glue)."""
        try:
            chosen = catalog_settings(self.layout, self.catalog, self.catalog_db)
        except CatalogError as error:
            raise SparkSubmitError(str(error)) from None
        return spark_conf(chosen)

    def command(self, job: SparkJob, code_dir: Path) -> list[str]:
        jars_dir = Path(self.jars_dir) if self.jars_dir else default_jars_dir()
        classpath = jar_classpath(jars_dir)
        conf = {
            **DEFAULT_CONF,
            "spark.executor.extraClassPath": classpath,
            **self.catalog_conf(),
            **self.spark_conf,
        }
        command = [
            str(spark_home() / "bin" / "spark-submit"),
            "--master",
            self.master,
            "--name",
            f"clinical-{job.entry_point}",
        ]
        options = self.driver_java_options
        archive = archive_path(jars_dir)
        if "-XX:ArchiveClassesAtExit" not in options and archive.exists():
            options = f"{options} -XX:SharedArchiveFile={archive}".strip()  # see cds.py
        if options:
            command += ["--driver-java-options", options]
        command += ["--driver-class-path", classpath]
        for key, value in sorted(conf.items()):
            command += ["--conf", f"{key}={value}"]
        command += [
            "--py-files",
            str(code_dir / "spark_jobs.zip"),
            str(code_dir / f"{job.entry_point}.py"),
            *job.arguments,
        ]
        return command

    def environment(self, env: Mapping[str, str]) -> dict[str, str]:
        if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
            raise SparkSubmitError(
                "Java is not installed: Spark needs Java 17 "
                "(apt-get install openjdk-17-jre-headless)"
            )
        python = sys.executable
        return {
            **os.environ,
            "SPARK_HOME": str(spark_home()),
            "PYSPARK_PYTHON": python,
            "PYSPARK_DRIVER_PYTHON": python,
            "PYTHONUNBUFFERED": "1",
            **env,
        }

    def launch(
        self,
        context: dg.AssetExecutionContext,
        job: SparkJob,
        extras: Mapping[str, Any],
        env: Mapping[str, str],
    ) -> SparkRun:
        code_dir = build_bundle().write_to(Path(local_path(self.local_system.code_dir)))
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
        log_name = f"{job.entry_point}-{stamp}.log"
        log_path = Path(local_path(self.local_system.run_log(context.run.run_id, log_name)))
        log_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            command = self.command(job, code_dir)
            process_env = self.environment({**env, LOG_LOCATION_ENV: str(log_path)})
        except SparkSubmitError as error:
            return SparkRun(results=[], failure=str(error))
        context.log.info(f"Starting {job.entry_point} on {self.master}; Spark log: {log_path}")
        with (
            dg.open_pipes_session(
                context=context,
                context_injector=dg.PipesTempFileContextInjector(),
                message_reader=TempFileWholeLinesMessageReader(),
                extras=dict(extras),
            ) as session,
            log_path.open("wb") as log,
        ):
            process = subprocess.Popen(
                command,
                env={**process_env, **session.get_bootstrap_env_vars()},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                returncode = process.wait()
            except (dg.DagsterExecutionInterruptedError, KeyboardInterrupt):
                context.log.warning(f"Run terminated: stopping Spark job {job.entry_point}")
                stop_process_group(process)
                raise
        details: dict[str, dg.MetadataValue] = {"spark_log": dg.MetadataValue.path(str(log_path))}
        failure = None
        if returncode != 0:
            failure = explain_failure(job.entry_point, returncode, log_path)
            details["spark_log_tail"] = dg.MetadataValue.md(
                "```\n" + "\n".join(last_lines(log_path)) + "\n```"
            )
        return SparkRun(results=reported_results(session), failure=failure, details=details)


def stop_process_group(process: subprocess.Popen[bytes]) -> None:
    """Stop spark-submit and its JVM and Python children; escalate if they linger."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass
