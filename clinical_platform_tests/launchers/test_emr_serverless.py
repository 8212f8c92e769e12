"""`EmrServerlessLauncher` against moto's EMR Serverless, with the player running each job run."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import dagster as dg
import pytest

from clinical_platform.generators.sdtm import generate_sdtm
from clinical_platform.launchers.aws import S3Uri, StagedCode
from clinical_platform.launchers.base import SparkJob
from clinical_platform.launchers.emr_serverless import EmrServerlessLauncher
from clinical_platform_tests.helpers import land, lineage, materialize
from clinical_platform_tests.launchers.emulator import (
    ACCOUNT,
    REGION,
    STAGING_URI,
    AwsEmulator,
    ClusterPlayer,
    StepPlan,
)
from spark_jobs.contracts.layout import Delivery

SYNTH = Delivery("SYNTH01", "2024-01-15")
ROLE = f"arn:aws:iam::{ACCOUNT}:role/clinical-emr-serverless"


def serverless_launcher(aws: AwsEmulator, application_id: str) -> EmrServerlessLauncher:
    return EmrServerlessLauncher(
        application_id=application_id,
        execution_role_arn=ROLE,
        staging_uri=STAGING_URI,
        region=REGION,
        endpoint_url=aws.endpoint,
        poll_interval_s=0.5,
        max_poll_interval_s=2.0,
        finishing_poll_interval_s=0.2,
        log_wait_s=10.0,
        cancel_timeout_s=60.0,
    )


@pytest.fixture
def application_id(aws: AwsEmulator) -> str:
    return aws.client("emr-serverless").create_application(
        name="clinical", releaseLabel="emr-6.15.0", type="SPARK"
    )["applicationId"]


def test_job_driver_passes_driver_env_as_serverless_confs() -> None:
    launcher = EmrServerlessLauncher(
        application_id="00app", execution_role_arn=ROLE, staging_uri=STAGING_URI
    )
    staging = S3Uri.parse(STAGING_URI)
    code = StagedCode(
        staging.join("code/abc/spark_jobs.zip"), staging.join("code/abc/ingest.py"), uploaded=True
    )
    driver = launcher.job_driver(
        SparkJob("ingest", ["--input", "s3://lake/landing"]), code, {"CLINICAL_CODE_VERSION": "abc"}
    )
    assert driver == {
        "sparkSubmit": {
            "entryPoint": f"{STAGING_URI}/code/abc/ingest.py",
            "entryPointArguments": ["--input", "s3://lake/landing"],
            "sparkSubmitParameters": f"--py-files {STAGING_URI}/code/abc/spark_jobs.zip --conf "
            "spark.emr-serverless.driverEnv.CLINICAL_CODE_VERSION=abc",
        }
    }
    with pytest.raises(ValueError, match="CLINICAL_LAUNCHER: EMR Serverless cannot pass"):
        launcher.job_driver(SparkJob("ingest", []), code, {"CLINICAL_LAUNCHER": "two words"})


@pytest.mark.slow
def test_serverless_job_run_materializes_and_explains_failures(
    aws: AwsEmulator, player: ClusterPlayer, application_id: str, tmp_path: Path
) -> None:
    generate_sdtm(tmp_path / "delivery", subjects=20)
    land(tmp_path / "delivery", SYNTH, tmp_path / "lake")
    launcher = serverless_launcher(aws, application_id)

    succeeded = materialize(
        tmp_path / "lake", SYNTH, selection=["raw_dm"], resources={"spark": launcher}
    )
    player.plans.append(
        StepPlan(
            fail_with=[
                "Traceback (most recent call last):",
                "SPARK_JOB_FAILURE: ingest: planned failure",
            ]
        )
    )
    failed = materialize(
        tmp_path / "lake", SYNTH, selection=["raw_dm"], resources={"spark": launcher}
    )

    assert succeeded.success
    raw_dm = succeeded.get_asset_materialization_events()[0].materialization
    assert raw_dm.metadata["emr_serverless_job_run_id"].value == player.played[0].step_id
    assert raw_dm.metadata["dagster/row_count"].value == 20
    assert [p.state for p in player.played] == ["SUCCESS", "FAILED"]
    assert player.played[0].driver_env["CLINICAL_LAUNCHER"] == f"emr-serverless:{application_id}"
    assert player.played[0].driver_env["CLINICAL_LOG_LOCATION"].startswith("s3://")
    # The lineage record names the job run and its own logs, known only after submitting.
    record = lineage(tmp_path / "lake", "raw", "dm", SYNTH)
    run_id = player.played[0].step_id
    assert record["emr_serverless_job_run_id"] == run_id
    assert record["log_location"].endswith(f"/applications/{application_id}/jobs/{run_id}/")
    assert not failed.success
    failure = failed.get_step_failure_events()[0].step_failure_data.user_failure_data
    assert failure is not None and failure.description is not None
    lines = failure.description.splitlines()
    assert lines[0] == (
        f"ingest: planned failure (EMR Serverless job run {player.played[1].step_id} FAILED)"
    )
    assert "SPARK_DRIVER/stderr.gz (driver)" in failure.description
    assert lines[-1] == "SPARK_JOB_FAILURE: ingest: planned failure"


@pytest.mark.slow
def test_terminated_run_cancels_the_serverless_job_run(
    aws: AwsEmulator, player: ClusterPlayer, application_id: str, tmp_path: Path
) -> None:
    generate_sdtm(tmp_path / "delivery", subjects=20)
    land(tmp_path / "delivery", SYNTH, tmp_path / "lake")

    def terminate_when_the_driver_runs() -> None:
        if player.driver_started.wait(timeout=120):
            os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=terminate_when_the_driver_runs, daemon=True).start()
    instance = dg.DagsterInstance.ephemeral()
    result = materialize(
        tmp_path / "lake",
        SYNTH,
        selection=["raw_dm"],
        instance=instance,
        resources={"spark": serverless_launcher(aws, application_id)},
    )

    assert not result.success
    run_id = player.played[0].step_id
    assert player.played[0].state == "CANCELLED" and player.played[0].returncode != 0
    state = aws.client("emr-serverless").get_job_run(applicationId=application_id, jobRunId=run_id)[
        "jobRun"
    ]["state"]
    assert state == "CANCELLED"
    messages = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert f"Run terminated: cancelling EMR Serverless job run {run_id}" in messages
