"""Fixtures of the EMR launcher tests: moto on 127.0.0.1, fake credentials, a cluster player."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from clinical_platform_tests.launchers.emulator import (
    FAKE_AWS_ENV,
    LOG_URI,
    REAL_AWS_ENV,
    STAGING_URI,
    AwsEmulator,
    ClusterPlayer,
    cancel_steps_installed,
    moto_server,
    serverless_runs_start_submitted,
)


@pytest.fixture(scope="session")
def aws_emulator() -> Iterator[AwsEmulator]:
    """One moto server for the session; every AWS call of these tests goes to it."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    with pytest.MonkeyPatch.context() as patch:
        for name in REAL_AWS_ENV:
            patch.delenv(name, raising=False)
        for name, value in FAKE_AWS_ENV.items():
            patch.setenv(name, value)
        with moto_server() as emulator, cancel_steps_installed(), serverless_runs_start_submitted():
            # Any client the tests forget to point at moto still ends up there.
            patch.setenv("AWS_ENDPOINT_URL", emulator.endpoint)
            yield emulator


@pytest.fixture
def aws(aws_emulator: AwsEmulator) -> AwsEmulator:
    """A fresh emulated account with the staging bucket (code, Pipes, EMR logs)."""
    aws_emulator.reset()
    aws_emulator.create_bucket()
    return aws_emulator


@pytest.fixture
def player(aws: AwsEmulator, tmp_path: Path) -> Iterator[ClusterPlayer]:
    cluster_player = ClusterPlayer(aws, tmp_path / "cluster")
    cluster_player.start()
    yield cluster_player
    cluster_player.stop()


@pytest.fixture
def cluster_id(aws: AwsEmulator) -> str:
    """A long-running cluster like the seed's, as `emr create-cluster` would make it."""
    from clinical_platform.launchers.aws import S3Uri
    from clinical_platform.launchers.emr_cluster import EmrClusterSpec, run_job_flow_request

    request = run_job_flow_request(EmrClusterSpec(log_uri=LOG_URI), S3Uri.parse(STAGING_URI))
    return aws.client("emr").run_job_flow(**request)["JobFlowId"]
