"""Class-data sharing for the local launcher's Spark driver: about 3 s off every application.

A Spark driver loads some 15,000 classes before its first query; on these machines that is
most of the ~5 s from spark-submit to a usable session. The JVM can map them instead from an
archive that an earlier run dumped (AppCDS, `-XX:ArchiveClassesAtExit`): measured 6.9 s ->
3.8 s for a session and its first query.

`python -m clinical_platform.launchers.cds` (run by `make setup`) dumps the archive with a short
Spark application that touches what the jobs use (the Iceberg catalog, a table, a branch, a
write, a query). Its name carries a hash of the PySpark version and of the jars on the class
path, so the launcher only ever passes an archive made for the class path it starts; should the
JVM still refuse it (another Java), the JVM says so in the Spark log and starts without it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import subprocess
import sys
import tempfile
from pathlib import Path

from clinical_platform.launchers.base import SparkJob

PROBE = Path(__file__).with_name("cds_probe.py")


def archive_path(jars_dir: Path) -> Path:
    """Where the archive for this PySpark and these jars is kept (in the jars folder)."""
    from clinical_platform.launchers.local import jar_classpath

    version = importlib.metadata.version("pyspark")
    key = hashlib.sha256(f"{version}\n{jar_classpath(jars_dir)}".encode()).hexdigest()[:16]
    return jars_dir / f"spark-{version}-{key}.jsa"


def build_archive(jars_dir: Path) -> Path:
    """Run the probe application with the launcher's own command, dumping the classes it
    loaded; returns the archive (written under a temporary name, then renamed)."""
    from clinical_platform.launchers.local import DEFAULT_DRIVER_JAVA_OPTIONS, LocalSparkLauncher

    target = archive_path(jars_dir)
    partial = target.with_name(f".{target.name}.partial")
    partial.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="clinical-cds-") as scratch:
        launcher = LocalSparkLauncher(
            lake_uri=str(Path(scratch) / "lake"),
            jars_dir=str(jars_dir),
            driver_java_options=f"{DEFAULT_DRIVER_JAVA_OPTIONS} -XX:ArchiveClassesAtExit={partial}",
        )
        command = launcher.command(SparkJob("ingest", []), Path(scratch))
        command = [*command[: command.index("--py-files")], str(PROBE)]
        done = subprocess.run(
            command, env=launcher.environment({}), capture_output=True, text=True, check=False
        )
    if done.returncode != 0 or not partial.exists():
        tail = "\n".join((done.stderr or "").splitlines()[-15:])
        raise RuntimeError(f"the class-data archive was not written:\n{tail}")
    for stale in jars_dir.glob("spark-*.jsa"):
        stale.unlink()
    partial.replace(target)
    return target


def main() -> int:
    from clinical_platform.launchers.local import default_jars_dir

    jars_dir = default_jars_dir()
    try:
        made = build_archive(jars_dir)
    except (RuntimeError, OSError) as error:
        # Setup goes on: the launcher runs without the archive, only slower to start.
        print(f"warning: Spark starts without class-data sharing: {error}", file=sys.stderr)
        return 0
    print(f"Class-data archive for Spark's driver: {made}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
