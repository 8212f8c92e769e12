"""Shared fixtures: the CDISC pilot delivery, a local Spark session, temporary lakes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PILOT_DIR = PROJECT_ROOT.parent / "shared" / "data" / "cdisc_pilot"
TEST_PSEUDONYM_KEY = "test-key-0123456789"


def pilot_dir_or_skip() -> Path:
    """The CDISC pilot folder; missing is a skip locally and a failure in CI."""
    folder = Path(os.environ.get("CDISC_PILOT_DIR", DEFAULT_PILOT_DIR))
    if (folder / "dm.xpt").exists():
        return folder
    message = (f"CDISC pilot delivery not found at {folder} (set CDISC_PILOT_DIR or put "
               "../shared beside the checkout)")
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

    session = (
        SparkSession.builder.master("local[2]")
        .appName("clinical-platform-tests")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.ansi.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.adaptive.enabled", "false")
        .config("spark.driver.extraJavaOptions", "-XX:TieredStopAtLevel=1")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture
def pseudonym_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("CLINICAL_PSEUDONYM_KEY", TEST_PSEUDONYM_KEY)
    return TEST_PSEUDONYM_KEY
