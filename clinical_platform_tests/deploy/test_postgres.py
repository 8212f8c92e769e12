"""deploy/dagster.yaml on a real PostgreSQL server: a delivery materialized with the CLI is
recorded in PostgreSQL's own tables, and the whole production file loads as an instance."""

from __future__ import annotations

import re
from contextlib import closing
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster_aws.s3.compute_log_manager import S3ComputeLogManager
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage

from clinical_platform.launchers.base import ENTRY_TAG
from clinical_platform_tests.conftest import PROJECT_ROOT, TEST_PSEUDONYM_KEY
from clinical_platform_tests.deploy.conftest import PostgresServer
from clinical_platform_tests.helpers import metadata_of, partition_materialization, run_command
from spark_jobs.contracts.layout import Delivery

pytestmark = pytest.mark.slow

DEPLOY_CONFIG = PROJECT_ROOT / "deploy" / "dagster.yaml"
DELIVERY = Delivery("SYNTH01", "2024-03-01")
SUBJECTS = 10
# Left out of the test's instance: S3 compute logs (no bucket here; Dagster's default, local
# compute logs under DAGSTER_HOME, take their place) and the run queue (`materialize` executes
# in process, so its run never goes through a run coordinator).
NOT_IN_TEST = ("compute_logs", "run_coordinator")


def write_instance(home: Path, config: dict[str, Any]) -> Path:
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return home


@pytest.fixture(scope="module")
def materialized(postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The run id of `clinical-platform materialize --select raw_dm` of a 10-subject delivery,
    with DAGSTER_HOME holding deploy/dagster.yaml (its storage section unchanged: only the
    environment it reads points at the test's server)."""
    root = tmp_path_factory.mktemp("postgres_deploy")
    production = yaml.safe_load(DEPLOY_CONFIG.read_text())
    config = {key: value for key, value in production.items() if key not in NOT_IN_TEST}
    assert config["storage"] == production["storage"]
    folder, lake = root / "delivery", root / "lake"
    where = ["--study", DELIVERY.study, "--delivery", DELIVERY.delivery, "--lake", str(lake)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DAGSTER_HOME", str(write_instance(root / "dagster_home", config)))
        for name, value in postgres_server.env.items():
            patch.setenv(name, value)
        patch.setenv("CLINICAL_PSEUDONYM_KEY", TEST_PSEUDONYM_KEY)
        patch.delenv("CLINICAL_ENV", raising=False)
        generated = run_command(
            ["generate", "sdtm", "--subjects", str(SUBJECTS), "--out", str(folder)]
        )
        assert generated[0] == 0, generated[2]
        code, _, err = run_command(["land", str(folder), *where])
        assert code == 0, err
        code, out, err = run_command(["materialize", *where, "--select", "raw_dm"])
    assert code == 0, out + err
    found = re.search(r"^run (\S+): succeeded$", out, re.MULTILINE)
    assert found is not None, out
    return found.group(1)


def test_the_run_and_its_materialization_are_rows_in_postgres(
    materialized: str, postgres_server: PostgresServer
) -> None:
    with closing(postgres_server.connect()) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT partitions_def_name, partition FROM dynamic_partitions")
        partitions = cursor.fetchall()
        cursor.execute("SELECT run_id, status, partition FROM runs")
        runs = cursor.fetchall()
        cursor.execute(
            "SELECT value FROM run_tags WHERE run_id = %s AND key = %s", (materialized, ENTRY_TAG)
        )
        entry = cursor.fetchall()
        cursor.execute(
            "SELECT asset_key, partition, event FROM event_logs "
            "WHERE run_id = %s AND dagster_event_type = 'ASSET_MATERIALIZATION'",
            (materialized,),
        )
        events = cursor.fetchall()
    assert partitions == [("clinical_deliveries", DELIVERY.key)]  # registered by `land`
    assert runs == [(materialized, "SUCCESS", DELIVERY.key)]
    assert entry == [("cli",)]
    assert [(key, partition) for key, partition, _ in events] == [('["raw_dm"]', DELIVERY.key)]
    materialization = dg.deserialize_value(events[0][2], dg.EventLogEntry).asset_materialization
    assert materialization is not None
    assert materialization.asset_key == dg.AssetKey("raw_dm")
    assert materialization.partition == DELIVERY.key
    assert metadata_of(materialization, "dagster/row_count") == SUBJECTS


def test_the_production_file_loads_and_reads_the_same_database(
    materialized: str,
    postgres_server: PostgresServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """All of deploy/dagster.yaml, S3 compute logs and run queue included (building the S3
    client calls nothing)."""
    for name, value in postgres_server.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DAGSTER_COMPUTE_LOG_BUCKET", "clinical-dagster-logs")
    monkeypatch.setenv("DAGSTER_COMPUTE_LOG_PREFIX", "compute-logs")
    home = write_instance(tmp_path / "production_home", yaml.safe_load(DEPLOY_CONFIG.read_text()))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.compute_log_manager, S3ComputeLogManager)
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        assert instance.run_monitoring_enabled
        assert not instance.telemetry_enabled
        run = instance.get_run_by_id(materialized)
        assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
        found = partition_materialization(instance, "raw_dm", DELIVERY)
        assert metadata_of(found, "dagster/row_count") == SUBJECTS
