"""Shared fixtures: the CDISC pilot delivery, a local Spark session, temporary lakes."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from clinical_platform.launchers.local import DEFAULT_DRIVER_JAVA_OPTIONS
from clinical_platform_tests.launchers.emulator import (
    FAKE_AWS_ENV,
    REAL_AWS_ENV,
    AwsEmulator,
    moto_server,
)
from spark_jobs.contracts.layout import LakeLayout

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PILOT_DIR = PROJECT_ROOT.parent / "shared" / "data" / "cdisc_pilot"
TEST_PSEUDONYM_KEY = "test-key-0123456789"
# Each pilot run's rows and hashes per PySpark version (`.artifacts/` is ignored by git).
PILOT_HASHES_DIR = PROJECT_ROOT / ".artifacts"


def module_weight(items: list[pytest.Item]) -> int:
    """2 for a module driving the browser, 1 for one with end-to-end (slow) tests, else 0."""
    if any(item.get_closest_marker("browser") for item in items):
        return 2
    return 1 if any(item.get_closest_marker("slow") for item in items) else 0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The heaviest modules first, each module's tests together and in their order.

    `make test` spreads whole modules over two workers (pytest-xdist, `--dist loadfile`) in
    this order: starting the long end-to-end modules first lets the many short ones fill in
    beside them, instead of one long module running alone at the end."""
    modules: dict[str, list[pytest.Item]] = {}
    for item in items:
        modules.setdefault(item.nodeid.split("::", 1)[0], []).append(item)
    ordered = sorted(modules.values(), key=module_weight, reverse=True)  # stable: ties keep order
    items[:] = [item for module in ordered for item in module]


def pilot_dir_or_skip() -> Path:
    """The CDISC pilot folder; missing is a skip locally and a failure in CI."""
    folder = Path(os.environ.get("CDISC_PILOT_DIR", DEFAULT_PILOT_DIR))
    if (folder / "dm.xpt").exists():
        return folder
    message = (
        f"CDISC pilot delivery not found at {folder} (set CDISC_PILOT_DIR or put "
        "../shared beside the checkout)"
    )
    if os.environ.get("CLINICAL_REQUIRE_PILOT"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def pilot_dir() -> Path:
    return pilot_dir_or_skip()


@pytest.fixture(scope="session")
def spark() -> Iterator[object]:
    """One local SparkSession for the pure-transform tests (level 1)."""
    from pyspark.sql import SparkSession

    from clinical_platform.launchers.local import default_jars_dir, jar_classpath
    from spark_jobs.contracts.tables import ICEBERG_SQL_EXTENSIONS

    session = (
        SparkSession.Builder()
        .master("local[2]")
        .config("spark.driver.extraClassPath", jar_classpath(default_jars_dir()))
        .config("spark.sql.extensions", ICEBERG_SQL_EXTENSIONS)
        .appName("clinical-platform-tests")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.ansi.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.adaptive.enabled", "false")
        # The launcher's JIT settings: C1 only, with a code cache for all generated classes.
        .config("spark.driver.extraJavaOptions", DEFAULT_DRIVER_JAVA_OPTIONS)
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture
def pseudonym_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("CLINICAL_PSEUDONYM_KEY", TEST_PSEUDONYM_KEY)
    return TEST_PSEUDONYM_KEY


@dataclass
class PilotRun:
    """Where the shared pilot run's lake is, and what Dagster returned for it."""

    lake: Path
    delivery: Any  # spark_jobs.contracts.layout.Delivery
    result: Any  # dagster.ExecuteInProcessResult
    openlineage: Path  # the run's OpenLineage events (a file transport), one JSON per line


@pytest.fixture(scope="session")
def pilot_run(pilot_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PilotRun]:
    """The CDISC pilot landed as CDISCPILOT01/2024-01-15 and materialized once, end to end.

    Session-scoped because it starts three Spark applications (about two minutes here);
    tests that only read its results share it.
    """
    from clinical_platform_tests.helpers import land, materialize
    from spark_jobs.contracts.layout import Delivery

    lake = tmp_path_factory.mktemp("pilot") / "lake"
    delivery = Delivery("CDISCPILOT01", "2024-01-15")
    openlineage = lake.parent / "openlineage.jsonl"
    land(pilot_dir, delivery, lake)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CLINICAL_PSEUDONYM_KEY", TEST_PSEUDONYM_KEY)
        patch.setenv("OPENLINEAGE__TRANSPORT__TYPE", "file")
        patch.setenv("OPENLINEAGE__TRANSPORT__LOG_FILE_PATH", str(openlineage))
        patch.setenv("OPENLINEAGE__TRANSPORT__APPEND", "true")
        result = materialize(lake, delivery)
    write_pilot_hashes(lake, delivery, result)
    yield PilotRun(lake=lake, delivery=delivery, result=result, openlineage=openlineage)


def pilot_hashes_file(pyspark_version: str) -> Path:
    """Where a pilot run on one PySpark version leaves its hashes, for a run on another."""
    return PILOT_HASHES_DIR / f"pilot-hashes-{pyspark_version}.json"


def write_pilot_hashes(lake: Path, delivery: Any, result: Any) -> None:
    """Each committed asset's rows and hashes from its lineage record, under this run's
    PySpark version: the EMR-Spark lane compares its own run with every other version's.
    The code version says which runs may be compared (same `spark_jobs`, other Spark)."""
    import pyspark

    from clinical_platform_tests.helpers import lineage, materializations

    assets, code_versions = {}, set()
    for name in sorted(materializations(result)):
        zone, dataset = name.split("_", 1)
        record = lineage(lake, zone, dataset, delivery)
        assets[name] = {key: record.get(key) for key in ("rows", "content_hash", "data_hash")}
        code_versions.add(str(record.get("code_version")))
    hashes = {
        "pyspark": pyspark.__version__,
        "code_version": ",".join(sorted(code_versions)),
        "assets": assets,
    }
    path = pilot_hashes_file(pyspark.__version__)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Each pytest-xdist worker that builds the pilot writes it; a reader on the other worker
    # must never see a half-written file.
    partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    partial.write_text(json.dumps(hashes, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, path)


# ---------------------------------------------------------------------------- S3 lake (moto)

LAKE_BUCKET = "clinical-lake"


@pytest.fixture(scope="module")
def aws_s3() -> Iterator[AwsEmulator]:
    """moto on 127.0.0.1 with fake credentials; every S3 call of these tests goes to it."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    with pytest.MonkeyPatch.context() as patch:
        for name in REAL_AWS_ENV:
            patch.delenv(name, raising=False)
        for name, value in FAKE_AWS_ENV.items():
            patch.setenv(name, value)
        with moto_server() as emulator:
            patch.setenv("AWS_ENDPOINT_URL", emulator.endpoint)
            yield emulator


@pytest.fixture
def s3_layout(aws_s3: AwsEmulator) -> LakeLayout:
    aws_s3.reset()
    aws_s3.create_bucket(LAKE_BUCKET)
    return LakeLayout(f"s3://{LAKE_BUCKET}/lake")


@pytest.fixture
def s3_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the S3 API calls made through boto3's default session during the test."""
    calls: list[str] = []
    session = boto3.Session()
    session.events.register("before-call.s3", lambda model, **_: calls.append(model.name))
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", session)
    return calls
