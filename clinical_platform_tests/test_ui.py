"""`make ui` for real: `dagster dev` on loopback shows the zones and materializes a partition.

Drives the webserver through the same GraphQL calls its pages make (asset catalog, then the
"Materialize" button on one partition). Browser-level tests come with the UI issue.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clinical_platform.generators.sdtm import generate_sdtm
from clinical_platform_tests.conftest import PROJECT_ROOT
from clinical_platform_tests.helpers import land, lineage
from spark_jobs.contracts.layout import Delivery

pytestmark = pytest.mark.slow
DELIVERY = Delivery("SYNTH01", "2024-03-01")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Webserver:
    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/graphql"

    def query(self, text: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        request = urllib.request.Request(
            self.url,
            data=json.dumps({"query": text, "variables": variables or {}}).encode(),
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            body = json.loads(response.read())
        assert "errors" not in body, body["errors"]
        return body["data"]


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Webserver, Path]]:
    base = tmp_path_factory.mktemp("ui")
    home, lake = base / "dagster_home", base / "lake"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    generate_sdtm(base / "delivery", 10, study=DELIVERY.study)
    land(base / "delivery", DELIVERY, lake)
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "CLINICAL_LAKE_URI": str(lake),
        "CLINICAL_PSEUDONYM_KEY": "test-key",
    }
    # Register the partition in this instance, as `clinical-platform land` does.
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import dagster as dg; dg.DagsterInstance.get().add_dynamic_partitions("
            f"'clinical_deliveries', ['{DELIVERY.key}'])",
        ],
        env=env,
        check=True,
    )
    port = free_port()
    dagster = Path(sys.executable).parent / "dagster"
    process = subprocess.Popen(
        [str(dagster), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    server = Webserver(port)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                server.query("{ version }")
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if time.monotonic() > deadline or process.poll() is not None:
                    raise AssertionError("dagster dev did not come up") from None
                time.sleep(2)
        yield server, lake
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_assets_are_grouped_by_zone_with_descriptions_and_kinds(ui) -> None:
    server, _ = ui
    nodes = server.query("{ assetNodes { assetKey { path } groupName kinds description } }")[
        "assetNodes"
    ]
    groups = {n["assetKey"]["path"][0]: n["groupName"] for n in nodes}
    assert groups["raw_vs"] == "raw" and groups["curated_vs"] == "curated"
    assert groups["features_subject_profile"] == "features"
    assert len(groups) == 15
    assert all(set(n["kinds"]) == {"spark", "parquet"} for n in nodes)
    assert all(len(n["description"] or "") > 40 for n in nodes)


def test_one_partition_materializes_from_the_ui(ui) -> None:
    server, lake = ui
    repository = server.query(
        "{ repositoriesOrError { ... on RepositoryConnection { nodes { name location { name } } }"
        " } }"
    )["repositoriesOrError"]["nodes"][0]
    launched = server.query(
        """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
             __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
           } }""",
        {
            "params": {
                "selector": {
                    "repositoryLocationName": repository["location"]["name"],
                    "repositoryName": repository["name"],
                    "jobName": "__ASSET_JOB",
                    "assetSelection": [{"path": ["raw_dm"]}, {"path": ["curated_dm"]}],
                },
                "executionMetadata": {
                    "tags": [{"key": "dagster/partition", "value": DELIVERY.key}]
                },
            }
        },
    )["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    status = "QUEUED"
    deadline = time.monotonic() + 420
    while status not in ("SUCCESS", "FAILURE", "CANCELED") and time.monotonic() < deadline:
        time.sleep(3)
        status = server.query(
            "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }", {"id": run_id}
        )["runOrError"]["status"]
    assert status == "SUCCESS"
    assert lineage(lake, "curated", "dm", DELIVERY)["status"] == "accepted"
    latest = server.query(
        'query($partition: String!) { assetNodes(assetKeys: [{path: ["curated_dm"]}]) {'
        " assetMaterializations(partitions: [$partition]) { runId partition } } }",
        {"partition": DELIVERY.key},
    )["assetNodes"][0]["assetMaterializations"]
    assert latest and latest[0]["runId"] == run_id and latest[0]["partition"] == DELIVERY.key
