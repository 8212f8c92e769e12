"""`LocalSparkLauncher` and the launcher helpers in `base.py`, without starting Spark.

The command line, environment and failure explanation are what decide whether spark-submit
starts at all and whether a user sees a useful one-line reason when it fails.
"""

from __future__ import annotations

import getpass
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pyspark
import pytest

from clinical_platform.launchers import base
from clinical_platform.launchers.base import (
    ENTRY_TAG,
    SecretUnavailable,
    SparkJob,
    explain_failure,
    git_revision,
    job_failure_reason,
    last_error_line,
    started_by,
)
from clinical_platform.launchers.cds import archive_path
from clinical_platform.launchers.local import (
    DEFAULT_CONF,
    DEFAULT_DRIVER_JAVA_OPTIONS,
    LocalSparkLauncher,
    SparkSubmitError,
    spark_home,
    tail_whole_lines,
)
from spark_jobs.contracts.protocol import FAILURE_PREFIX

JOB = SparkJob(
    "curate",
    ["--study", "S01", "--delivery", "2024-01-15"],
    secrets={"CLINICAL_PSEUDONYM_KEY": "the pseudonym key"},
)


def conf_pairs(command: list[str]) -> list[str]:
    return [command[i + 1] for i, arg in enumerate(command) if arg == "--conf"]


# ---------------------------------------------------------------------------- command


def fake_jars(folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("b-runtime.jar", "a-bundle.jar"):
        (folder / name).write_bytes(b"PK")
    return f"{folder / 'a-bundle.jar'}:{folder / 'b-runtime.jar'}"


def test_command_shape(tmp_path: Path) -> None:
    """spark-submit of the pyspark install, master, name, JIT option, the pinned jars on the
    class path, sorted conf, bundle, entry script, then the job's own arguments, in order."""
    classpath = fake_jars(tmp_path / "jars")
    launcher = LocalSparkLauncher(lake_uri=str(tmp_path / "lake"), jars_dir=str(tmp_path / "jars"))
    code_dir = tmp_path / "code" / "abc"
    command = launcher.command(JOB, code_dir)
    catalog = {
        "spark.sql.extensions": "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions",
        "spark.sql.catalog.clinical": "org.apache.iceberg.spark.SparkCatalog",
        "spark.sql.catalog.clinical.catalog-impl": "org.apache.iceberg.jdbc.JdbcCatalog",
        "spark.sql.catalog.clinical.uri": f"jdbc:sqlite:{tmp_path}/lake/_system/catalog.sqlite",
        "spark.sql.catalog.clinical.jdbc.schema-version": "V1",
        "spark.sql.catalog.clinical.warehouse": f"file:{tmp_path}/lake",
        "spark.sql.defaultCatalog": "clinical",
    }
    defaults = {**DEFAULT_CONF, "spark.executor.extraClassPath": classpath, **catalog}
    conf = [f"{k}={v}" for k, v in sorted(defaults.items())]
    assert command == [
        str(spark_home() / "bin" / "spark-submit"),
        "--master",
        "local[*]",
        "--name",
        "clinical-curate",
        "--driver-java-options",
        DEFAULT_DRIVER_JAVA_OPTIONS,
        "--driver-class-path",
        classpath,
        *[part for pair in conf for part in ("--conf", pair)],
        "--py-files",
        str(code_dir / "spark_jobs.zip"),
        str(code_dir / "curate.py"),
        "--study",
        "S01",
        "--delivery",
        "2024-01-15",
    ]
    assert "secret-key" not in " ".join(command)  # secrets go in the environment only


def test_missing_jars_are_one_line(tmp_path: Path) -> None:
    launcher = LocalSparkLauncher(lake_uri=str(tmp_path), jars_dir=str(tmp_path / "none"))
    with pytest.raises(SparkSubmitError) as missing:
        launcher.command(JOB, tmp_path)
    assert str(missing.value) == (
        f"Spark's jars are not in {tmp_path / 'none'}; run make setup "
        "(it fetches them once with Maven)"
    )


def test_extra_conf_overrides_defaults_and_stays_sorted(tmp_path: Path) -> None:
    """User conf overrides a default and adds keys, sorted; an empty JIT option is left out."""
    fake_jars(tmp_path / "jars")
    launcher = LocalSparkLauncher(
        master="spark://10.0.0.5:7077",
        lake_uri=str(tmp_path),
        spark_conf={"spark.sql.shuffle.partitions": "64", "spark.executor.memory": "4g"},
        driver_java_options="",
        jars_dir=str(tmp_path / "jars"),
    )
    command = launcher.command(SparkJob("ingest", []), tmp_path)
    pairs = conf_pairs(command)
    keys = [pair.split("=", 1)[0] for pair in pairs]
    assert keys == sorted(keys)
    assert "spark.sql.shuffle.partitions=64" in pairs
    assert "spark.sql.shuffle.partitions=8" not in pairs
    assert "spark.executor.memory=4g" in pairs
    # and the executors' class path and the seven settings of the lake's Iceberg catalog
    assert len(pairs) == len(DEFAULT_CONF) + 2 + 7
    assert command[1:5] == ["--master", "spark://10.0.0.5:7077", "--name", "clinical-ingest"]
    assert "--driver-java-options" not in command
    assert command[-3:] == [
        "--py-files",
        str(tmp_path / "spark_jobs.zip"),
        str(tmp_path / "ingest.py"),
    ]


def test_spark_home_is_the_installed_pyspark_package() -> None:
    """SPARK_HOME must be the pip package, where bin/spark-submit and jars/ live."""
    home = spark_home()
    assert home.name == "pyspark"
    assert (home / "bin" / "spark-submit").is_file()
    assert (home / "jars").is_dir()
    assert home.is_relative_to(Path(sys.prefix).resolve())  # this venv's, not another Spark


def test_description_names_the_master(tmp_path: Path) -> None:
    """Lineage records where Spark ran through the launcher description."""
    launcher = LocalSparkLauncher(master="local[2]", lake_uri=str(tmp_path))
    assert launcher.description == "spark-submit --master local[2]"


# ---------------------------------------------------------------------------- environment


@pytest.fixture
def java_available(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """environment() only checks that Java can be found; JAVA_HOME satisfies that anywhere."""
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "jdk"))


@pytest.mark.usefixtures("java_available")
def test_environment_points_spark_at_this_interpreter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """spark-submit finds the pip pyspark, runs workers on this interpreter and gets secrets."""
    monkeypatch.setenv("SPARK_HOME", "/opt/some/other/spark")
    monkeypatch.setenv("UNRELATED_SETTING", "kept")
    env = LocalSparkLauncher(lake_uri=str(tmp_path)).environment(
        {"CLINICAL_PSEUDONYM_KEY": "secret-key"}
    )
    assert env["SPARK_HOME"] == str(spark_home())
    assert env["PYSPARK_PYTHON"] == sys.executable
    assert env["PYSPARK_DRIVER_PYTHON"] == sys.executable
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["CLINICAL_PSEUDONYM_KEY"] == "secret-key"
    assert env["UNRELATED_SETTING"] == "kept"


@pytest.mark.usefixtures("java_available")
def test_job_env_wins_over_process_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A job's secret overrides a same-named variable of the Dagster process."""
    monkeypatch.setenv("CLINICAL_PSEUDONYM_KEY", "from-shell")
    env = LocalSparkLauncher(lake_uri=str(tmp_path)).environment(
        {"CLINICAL_PSEUDONYM_KEY": "from-job"}
    )
    assert env["CLINICAL_PSEUDONYM_KEY"] == "from-job"


def test_local_secrets_come_from_this_process_or_fail_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    launcher = LocalSparkLauncher(lake_uri=str(tmp_path))
    monkeypatch.setenv("CLINICAL_PSEUDONYM_KEY", "secret-key")
    assert launcher.secret_environment(JOB) == {"CLINICAL_PSEUDONYM_KEY": "secret-key"}

    monkeypatch.delenv("CLINICAL_PSEUDONYM_KEY")
    with pytest.raises(SecretUnavailable) as raised:
        launcher.secret_environment(JOB)
    assert str(raised.value) == (
        "CLINICAL_PSEUDONYM_KEY is not set: the pseudonym key; export CLINICAL_PSEUDONYM_KEY"
    )


def test_missing_java_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without Java the launcher says so in one line instead of a spark-class failure."""
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no java on PATH
    with pytest.raises(SparkSubmitError, match="Java is not installed: Spark needs Java 17"):
        LocalSparkLauncher(lake_uri=str(tmp_path)).environment({})


# ---------------------------------------------------------------------------- failures


def write_log(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_job_failure_line_wins(tmp_path: Path) -> None:
    """The job's own one-line reason beats any stack trace printed after it."""
    log = write_log(
        tmp_path / "curate.log",
        [
            "24/01/15 10:00:00 WARN NativeCodeLoader: Unable to load native-hadoop library",
            f"{FAILURE_PREFIX}curate: an earlier reason",
            "Traceback (most recent call last):",
            "ValueError: something internal",
            f"  {FAILURE_PREFIX}curate: raw_dm has not been materialized for S01/2024-01-15  ",
            "py4j.protocol.Py4JJavaError: An error occurred while calling o42.parquet.",
            "24/01/15 10:00:01 INFO ShutdownHookManager: Shutdown hook called",
        ],
    )
    assert explain_failure("curate", 2, log) == (
        "curate: raw_dm has not been materialized for S01/2024-01-15"
    )


def test_last_error_line_with_exit_code_and_log_path(tmp_path: Path) -> None:
    """Without a job reason: the last line naming an Error or Exception, the code and the log."""
    log = write_log(
        tmp_path / "ingest.log",
        [
            'Exception in thread "main" java.lang.OutOfMemoryError: Java heap space',
            "    at org.apache.spark.Something(Something.scala:1)",
            "py4j.protocol.Py4JJavaError: An error occurred while calling o7.collect.",
            "    at java.base/java.lang.Thread.run(Thread.java:840)",
            "24/01/15 10:00:01 INFO ShutdownHookManager: Shutdown hook called",
        ],
    )
    assert explain_failure("ingest", 1, log) == (
        "Spark job ingest exited with code 1: py4j.protocol.Py4JJavaError: An error occurred "
        f"while calling o7.collect. (log: {log})"
    )


def test_no_error_line_falls_back_to_the_last_line(tmp_path: Path) -> None:
    """Without any error line the last log line is the hint."""
    log = write_log(tmp_path / "features.log", ["starting", "  killed by signal 9  "])
    assert explain_failure("features", 137, log) == (
        f"Spark job features exited with code 137: killed by signal 9 (log: {log})"
    )


def test_missing_or_empty_log_says_no_output(tmp_path: Path) -> None:
    """A log that was never written or is empty gives 'no output', not a crash."""
    missing = tmp_path / "never-written.log"
    assert explain_failure("curate", 127, missing) == (
        f"Spark job curate exited with code 127: no output (log: {missing})"
    )
    empty = tmp_path / "empty.log"
    empty.write_text("")
    assert explain_failure("curate", 1, empty).endswith(f": no output (log: {empty})")


def test_reason_helpers() -> None:
    """The prefix must match exactly; the last error line wins; no lines is 'no output'."""
    assert job_failure_reason([f"{FAILURE_PREFIX}  padded reason  "]) == "padded reason"
    assert job_failure_reason(["SPARK_JOB_FAILURE without separator", "plain"]) is None
    assert last_error_line(["a RuntimeError here", "then fine"]) == "a RuntimeError here"
    assert last_error_line([]) == "no output"


# ---------------------------------------------------------------------------- git revision


@pytest.fixture
def fresh_git_revision() -> Iterator[None]:
    git_revision.cache_clear()
    yield
    git_revision.cache_clear()


@pytest.mark.usefixtures("fresh_git_revision")
def test_git_revision_of_this_checkout() -> None:
    """The commit sha of the project (40 hex), marked -dirty when tracked files changed."""
    revision = git_revision()
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", revision), revision
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"],
        cwd=base.PACKAGE_DIR.parent,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert revision.removesuffix("-dirty") == head


@pytest.mark.usefixtures("fresh_git_revision")
def test_git_revision_outside_a_repository_is_unknown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Code deployed without .git records 'unknown' rather than failing."""
    package = tmp_path / "spark_jobs"
    package.mkdir()
    monkeypatch.setattr(base, "PACKAGE_DIR", package)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    assert git_revision() == "unknown"


# ---------------------------------------------------------------------------- Pipes messages


def test_a_message_written_in_two_parts_is_read_once_whole(tmp_path: Path) -> None:
    """A long message caught half-written is held until its newline arrives."""
    path = tmp_path / "messages"
    path.write_text("")
    long_message = json.dumps({"method": "report", "params": {"blob": "x" * 50_000}})
    done = threading.Event()

    def writer() -> None:
        with path.open("a", encoding="utf-8") as out:
            out.write('{"method": "opened"}\n' + long_message[:20_000])
            out.flush()
            time.sleep(0.2)  # the reader polls meanwhile and sees half a line
            out.write(long_message[20_000:] + "\n")
        done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    lines = list(tail_whole_lines(str(path), done.is_set))
    thread.join()
    assert [json.loads(line)["method"] for line in lines] == ["opened", "report"]
    assert json.loads(lines[1]) == json.loads(long_message)


def test_a_line_cut_off_for_good_is_still_handed_over(tmp_path: Path) -> None:
    """When the writer is gone, a last unfinished line is passed on, so its error is seen."""
    path = tmp_path / "messages"
    path.write_text('{"method": "opened"}\n{"method": "rep')
    assert list(tail_whole_lines(str(path), lambda: True)) == [
        '{"method": "opened"}\n',
        '{"method": "rep',
    ]


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        ({"dagster/user": "ana@example.org"}, "user:ana@example.org"),
        (
            {"dagster/sensor_name": "clinical_landing_sensor", ENTRY_TAG: "sensor"},
            "sensor:clinical_landing_sensor",
        ),
        ({"dagster/schedule_name": "daily"}, "schedule:daily"),
        ({ENTRY_TAG: "cli"}, f"cli:{getpass.getuser()}"),
        ({"dagster/backfill": "abcd1234"}, "backfill:abcd1234"),
        ({}, "dagster:no-user-recorded"),
    ],
)
def test_each_record_says_who_started_the_run(tags: dict[str, str], expected: str) -> None:
    """From the run's tags, without spaces (the value travels in spark-submit parameters)."""
    assert started_by(tags) == expected


def test_the_driver_maps_the_class_data_archive_made_for_its_jars(tmp_path: Path) -> None:
    """The archive `make setup` dumps is passed to the driver only when one exists for this
    PySpark and exactly these jars: its name carries their hash."""
    jars = tmp_path / "jars"
    fake_jars(jars)
    launcher = LocalSparkLauncher(lake_uri=str(tmp_path), jars_dir=str(jars))

    def options() -> str:
        command = launcher.command(JOB, tmp_path)
        return command[command.index("--driver-java-options") + 1]

    assert options() == DEFAULT_DRIVER_JAVA_OPTIONS  # no archive yet
    archive = archive_path(jars)
    assert archive.parent == jars and archive.name.startswith(f"spark-{pyspark.__version__}-")
    archive.write_bytes(b"dumped")
    assert options() == f"{DEFAULT_DRIVER_JAVA_OPTIONS} -XX:SharedArchiveFile={archive}"
    (jars / "another-1.0.jar").write_bytes(b"")  # other jars: the archive is not theirs
    assert archive_path(jars) != archive and options() == DEFAULT_DRIVER_JAVA_OPTIONS
