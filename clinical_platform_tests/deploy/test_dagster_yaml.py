"""deploy/dagster.yaml and deploy/workspace.yaml as Dagster reads them, without a server: the
file validates, its classes load, secrets and ids come only from the environment, and the
README names every variable it reads."""

from __future__ import annotations

import importlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster._core.instance.ref import InstanceRef
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster_aws.s3.compute_log_manager import S3ComputeLogManager

from clinical_platform_tests.conftest import PROJECT_ROOT

DEPLOY = PROJECT_ROOT / "deploy"
CONFIG: dict[str, Any] = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())


def env_names(value: object) -> Iterator[str]:
    """Every `env:` variable the configuration reads."""
    if isinstance(value, dict):
        if set(value) == {"env"}:
            yield str(value["env"])
            return
        for item in value.values():
            yield from env_names(item)
    elif isinstance(value, list):
        for item in value:
            yield from env_names(item)


@pytest.fixture
def instance_ref(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> InstanceRef:
    for name in env_names(CONFIG):
        monkeypatch.setenv(name, "5432" if name.endswith("_PORT") else f"value-of-{name}")
    shutil.copy(DEPLOY / "dagster.yaml", tmp_path / "dagster.yaml")
    return InstanceRef.from_dir(str(tmp_path))


def test_the_connection_and_the_log_bucket_come_only_from_the_environment() -> None:
    database = CONFIG["storage"]["postgres"]["postgres_db"]
    assert database == {
        "hostname": {"env": "DAGSTER_PG_HOST"},
        "port": {"env": "DAGSTER_PG_PORT"},
        "db_name": {"env": "DAGSTER_PG_DB"},
        "username": {"env": "DAGSTER_PG_USERNAME"},
        "password": {"env": "DAGSTER_PG_PASSWORD"},
        "scheme": "postgresql+psycopg2",
    }
    logs = CONFIG["compute_logs"]["config"]
    assert (logs["bucket"], logs["prefix"]) == (
        {"env": "DAGSTER_COMPUTE_LOG_BUCKET"},
        {"env": "DAGSTER_COMPUTE_LOG_PREFIX"},
    )


def test_the_readme_names_every_variable_the_file_reads() -> None:
    readme = (DEPLOY / "README.md").read_text()
    assert sorted(name for name in env_names(CONFIG) if f"`{name}`" not in readme) == []


def test_the_file_loads_as_postgres_storage_s3_logs_and_a_run_queue(
    instance_ref: InstanceRef,
) -> None:
    assert instance_ref.storage_data is not None
    assert instance_ref.storage_data.class_name == "DagsterPostgresStorage"
    assert isinstance(instance_ref.compute_logs_data.rehydrate(), S3ComputeLogManager)
    assert instance_ref.run_coordinator_data is not None
    queue = instance_ref.run_coordinator_data.rehydrate(as_type=QueuedRunCoordinator)
    limits = queue.get_run_queue_config()
    assert limits.max_concurrent_runs == 8
    assert list(limits.tag_concurrency_limits) == [
        {"key": "clinical/emr-cluster", "value": {"applyLimitPerUniqueValue": True}, "limit": 2},
        {"key": "dagster/partition", "value": {"applyLimitPerUniqueValue": True}, "limit": 1},
    ]
    settings = instance_ref.settings
    assert settings["telemetry"] == {"enabled": False}
    assert settings["run_monitoring"] == {
        "enabled": True,
        "start_timeout_seconds": 300,
        "cancel_timeout_seconds": 300,
        "max_runtime_seconds": 21600,
        "poll_interval_seconds": 60,
    }


def test_the_workspace_loads_the_platform_definitions() -> None:
    workspace = yaml.safe_load((DEPLOY / "workspace.yaml").read_text())
    [location] = workspace["load_from"]
    module = location["python_module"]
    assert (module["module_name"], module["attribute"]) == ("clinical_platform.definitions", "defs")
    assert callable(getattr(importlib.import_module(module["module_name"]), module["attribute"]))
