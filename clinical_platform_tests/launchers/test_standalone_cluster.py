"""Level 3: the same jobs on a real Spark cluster, unchanged (issue 15).

A Spark standalone master and two workers (one core each) are started on 127.0.0.1 from the
pyspark installation (`spark-class`), and the CDISC pilot is materialized through the local
launcher pointed at that master. Every table must come out as it did under `local[*]` in the
shared pilot run: the same rows, content hashes and data hashes; and the work must really have
run on both workers' executors.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from clinical_platform.launchers.local import LocalSparkLauncher, spark_home, stop_process_group
from clinical_platform_tests.conftest import TEST_PSEUDONYM_KEY, PilotRun
from clinical_platform_tests.helpers import land, lineage, materializations, materialize

pytestmark = pytest.mark.slow

WORKERS = 2
HOST = "127.0.0.1"
STARTUP_TIMEOUT_S = 90


@dataclass(frozen=True)
class StandaloneCluster:
    url: str  # spark://127.0.0.1:PORT
    work_dirs: tuple[Path, ...]  # one per worker: <app id>/<executor id>/ per executor run


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def alive_workers(webui_port: int) -> int:
    """How many workers the master counts alive (its web UI's JSON view)."""
    try:
        with urllib.request.urlopen(f"http://{HOST}:{webui_port}/json/", timeout=2) as answer:
            return int(json.load(answer).get("aliveworkers", 0))
    except OSError:
        return 0


def start(arguments: list[str], log: Path) -> subprocess.Popen[bytes]:
    environment = {
        **os.environ,
        "SPARK_HOME": str(spark_home()),
        "SPARK_LOCAL_IP": HOST,
        "SPARK_NO_DAEMONIZE": "1",
    }
    with log.open("wb") as out:
        return subprocess.Popen(
            [str(spark_home() / "bin" / "spark-class"), *arguments],
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@pytest.fixture(scope="module")
def standalone_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandaloneCluster]:
    folder = tmp_path_factory.mktemp("standalone")
    port, webui = free_port(), free_port()
    url = f"spark://{HOST}:{port}"
    processes = [
        start(
            [
                "org.apache.spark.deploy.master.Master",
                *["--host", HOST, "--port", str(port), "--webui-port", str(webui)],
            ],
            folder / "master.log",
        )
    ]
    work_dirs = tuple(folder / f"worker-{n}" for n in range(1, WORKERS + 1))
    for number, work_dir in enumerate(work_dirs, start=1):
        work_dir.mkdir()
        processes.append(
            start(
                [
                    "org.apache.spark.deploy.worker.Worker",
                    *["--host", HOST, "--cores", "1", "--memory", "1536m"],
                    *["--webui-port", str(free_port()), "--work-dir", str(work_dir), url],
                ],
                folder / f"worker-{number}.log",
            )
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while alive_workers(webui) < WORKERS:
            dead = [p.args for p in processes if p.poll() is not None]
            assert not dead, f"a cluster process exited: {dead}; logs in {folder}"
            assert time.monotonic() < deadline, f"{WORKERS} workers not alive; logs in {folder}"
            time.sleep(0.5)
        yield StandaloneCluster(url, work_dirs)
    finally:
        for process in reversed(processes):
            stop_process_group(process)


def test_the_pilot_on_a_two_worker_cluster_equals_local(
    standalone_cluster: StandaloneCluster,
    pilot_run: PilotRun,
    pilot_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lake = tmp_path / "lake"
    land(pilot_dir, pilot_run.delivery, lake)
    monkeypatch.setenv("CLINICAL_PSEUDONYM_KEY", TEST_PSEUDONYM_KEY)
    launcher = LocalSparkLauncher(
        master=standalone_cluster.url,
        lake_uri=str(lake),
        spark_conf={
            # The driver and the executors talk over 127.0.0.1 only.
            "spark.driver.host": "127.0.0.1",
            "spark.driver.bindAddress": "127.0.0.1",
            "spark.executor.memory": "1g",
            "spark.executor.cores": "1",
        },
    )

    result = materialize(lake, pilot_run.delivery, resources={"spark": launcher})

    assert result.success
    on_cluster, on_local = materializations(result), materializations(pilot_run.result)
    assert sorted(on_cluster) == sorted(on_local) and len(on_cluster) == 15
    applications = set()
    for name in sorted(on_cluster):
        zone, dataset = name.split("_", 1)
        cluster_record = lineage(lake, zone, dataset, pilot_run.delivery)
        local_record = lineage(pilot_run.lake, zone, dataset, pilot_run.delivery)
        for key in ("rows", "content_hash", "data_hash"):
            assert cluster_record[key] == local_record[key], (name, key)
        assert str(local_record["spark_application_id"]).startswith("local-"), name
        applications.add(cluster_record["spark_application_id"])
    # One application, a standalone one ("app-..."), whose executors ran on both workers.
    [application] = applications
    assert application.startswith("app-"), application
    for work_dir in standalone_cluster.work_dirs:
        executors = list((work_dir / application).iterdir())
        assert executors, f"no executor of {application} ran under {work_dir}"
        assert any((e / "stderr").stat().st_size > 0 for e in executors), work_dir
