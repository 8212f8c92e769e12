"""Spark applications a person starts from the command line (`sql`, `retention`).

They run like the assets' jobs, through the local launcher's `spark-submit` with the lake's
catalog, but without Dagster: the result is a file the job writes, a failure one line.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from clinical_platform import settings
from clinical_platform.launchers.base import SparkJob, job_failure_reason, last_error_line
from clinical_platform.launchers.bundle import build_bundle
from clinical_platform.launchers.local import LocalSparkLauncher, SparkSubmitError
from spark_jobs.contracts.layout import LakeLayout, local_path
from spark_jobs.contracts.protocol import CODE_VERSION_ENV, EntryPoint


class SparkCommandError(RuntimeError):
    """The application failed; the message is its one-line reason."""


def run_spark_command(entry: EntryPoint, arguments: Sequence[str], layout: LakeLayout) -> str:
    """Run an entry point on this machine against the lake; what it wrote to `--output`."""
    launcher = LocalSparkLauncher(
        lake_uri=layout.root,
        catalog=settings.catalog_kind(),
        catalog_db=settings.optional(settings.CATALOG_DB_VAR),
        spark_conf={"spark.sql.shuffle.partitions": "4"},
    )
    bundle = build_bundle()
    with tempfile.TemporaryDirectory(prefix="clinical-code-") as scratch:
        store = (
            Path(local_path(layout.code_dir)) if layout.root.startswith("file:") else Path(scratch)
        )
        code_dir = bundle.write_to(store)
        result = Path(scratch) / "result.txt"
        try:
            job = SparkJob(entry, [*arguments, "--output", str(result)])
            command = launcher.command(job, code_dir)
            env = launcher.environment({CODE_VERSION_ENV: bundle.sha256})
        except SparkSubmitError as error:
            raise SparkCommandError(str(error)) from None
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            # spark-submit hands the Python driver's error stream to its standard output.
            lines = [*done.stdout.splitlines(), *done.stderr.splitlines()]
            raise SparkCommandError(job_failure_reason(lines) or last_error_line(lines))
        return result.read_text(encoding="utf-8")
