"""The clinical assets through `EmrStepLauncher` against moto, with the cluster player running
each step's spark-submit on this machine (see emulator.py for what is real and what is played).

The pilot runs on an S3 lake in the emulated S3 (Spark through s3a, Iceberg through S3FileIO,
the catalog a SQLite file here); the small cases keep a local lake. Code, Pipes context and
messages, and step logs always go through the emulated S3.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

import boto3
import dagster as dg
import pytest

from clinical_platform.generators.sdtm import generate_sdtm
from clinical_platform.lake import land_delivery
from clinical_platform.launchers.bundle import build_bundle
from clinical_platform.launchers.emr import EmrStepLauncher
from clinical_platform.launchers.emr_cluster import GLUE_METASTORE_FACTORY, EmrClusterSpec
from clinical_platform.lineage.dossier import render_dossier
from clinical_platform_tests.conftest import TEST_PSEUDONYM_KEY, PilotRun
from clinical_platform_tests.helpers import land, lineage, materialize
from clinical_platform_tests.launchers.emulator import (
    LOG_URI,
    REGION,
    STAGING_BUCKET,
    STAGING_URI,
    AwsEmulator,
    ClusterPlayer,
    StepPlan,
    emr_cluster,
)
from spark_jobs.contracts.layout import MANIFEST_NAME, Delivery, LakeLayout, local_path

pytestmark = pytest.mark.slow

SYNTH = Delivery("SYNTH01", "2024-01-15")
LAKE_BUCKET = "clinical-lake"
SPOT_LOSS = [
    "25/11/26 02:00:07 WARN YarnAllocator: Container released on a *lost* node",
    "25/11/26 02:00:07 ERROR YarnClusterScheduler: Lost executor 2: the spot instance "
    "i-0abc was reclaimed (spot interruption)",
]


def emr_launcher(aws: AwsEmulator, **settings: Any) -> EmrStepLauncher:
    """The launcher as production configures it, with intervals sized for a test."""
    defaults: dict[str, Any] = {
        "staging_uri": STAGING_URI,
        "region": REGION,
        "endpoint_url": aws.endpoint,
        "poll_interval_s": 0.5,
        "max_poll_interval_s": 2.0,
        "finishing_poll_interval_s": 0.2,
        "log_wait_s": 10.0,
        "retry_delay_s": 0.0,
        "cancel_timeout_s": 60.0,
    }
    return EmrStepLauncher(**{**defaults, **settings})


def materializations(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetMaterialization]:
    return {
        event.materialization.asset_key.to_user_string(): event.materialization
        for event in result.get_asset_materialization_events()
    }


def value(materialization: dg.AssetMaterialization, key: str) -> Any:
    entry = materialization.metadata[key]
    return getattr(entry, "value", entry)


def failure_description(result: dg.ExecuteInProcessResult) -> str:
    failures = result.get_step_failure_events()
    assert failures, "the run did not fail"
    data = failures[0].step_failure_data
    user = data.user_failure_data
    return (
        user.description
        if user is not None and user.description
        else data.error.message
        if data.error is not None
        else ""
    )


@pytest.fixture
def synth_lake(tmp_path: Path) -> Path:
    """A small generated delivery (20 subjects) landed in a fresh lake."""
    generate_sdtm(tmp_path / "delivery", subjects=20)
    lake = tmp_path / "lake"
    land(tmp_path / "delivery", SYNTH, lake)
    return lake


def test_pilot_through_emr_matches_the_local_launcher(
    pilot_run: PilotRun,
    pilot_dir: Path,
    aws: AwsEmulator,
    player: ClusterPlayer,
    cluster_id: str,
    spark: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret_arn = aws.client("secretsmanager").create_secret(
        Name="clinical/pseudonym-key", SecretString=TEST_PSEUDONYM_KEY
    )["ARN"]
    # In production only the secret's id is known to Dagster; the driver resolves the value.
    monkeypatch.delenv("CLINICAL_PSEUDONYM_KEY", raising=False)
    aws.client("s3").create_bucket(
        Bucket=LAKE_BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    # The local pilot's records, read before this test points the catalog elsewhere.
    local_records = {}
    for name in materializations(pilot_run.result):
        zone, dataset = name.split("_", 1)
        local_records[name] = lineage(pilot_run.lake, zone, dataset, pilot_run.delivery)
    monkeypatch.setenv("CLINICAL_CATALOG_DB", str(tmp_path / "catalog.sqlite"))
    lake = f"s3://{LAKE_BUCKET}/pilot"
    land_delivery(pilot_dir, pilot_run.delivery, LakeLayout(lake))
    launcher = emr_launcher(
        aws, cluster_id=cluster_id, secret_ids={"CLINICAL_PSEUDONYM_KEY": secret_arn}
    )

    instance = dg.DagsterInstance.ephemeral()
    result = materialize(lake, pilot_run.delivery, instance=instance, resources={"spark": launcher})

    assert result.success, failure_description(result)
    emr_runs = materializations(result)
    local_runs = materializations(pilot_run.result)
    assert sorted(emr_runs) == sorted(local_runs)
    steps = [played for played in player.played if played.cluster_id == cluster_id]
    for name in sorted(emr_runs):
        zone, dataset = name.split("_", 1)
        emr_lineage = lineage(lake, zone, dataset, pilot_run.delivery)
        local_lineage = local_records[name]
        assert emr_lineage["rows"] == local_lineage["rows"], name
        assert value(emr_runs[name], "content_hash") == emr_lineage["content_hash"], name
        # Landing URIs are hashed relative to their lake: same data, same hash, any lake.
        assert emr_lineage["content_hash"] == local_lineage["content_hash"], name
        # Where: the cluster, the step (written by the launcher once EMR gave its id) and
        # that step's own logs.
        step_id = steps[0].step_id
        assert (emr_lineage["emr_cluster_id"], emr_lineage["emr_step_id"]) == (cluster_id, step_id)
        assert emr_lineage["log_location"] == f"{LOG_URI}{cluster_id}/steps/{step_id}/", name
        assert "emr_step_id" not in local_lineage, name
        assert local_lineage["log_location"].endswith(".log"), name
    dossier = render_dossier(LakeLayout(lake), pilot_run.delivery, "curated_vs")
    assert f"emr cluster id `{cluster_id}`, emr step id `{steps[0].step_id}`" in dossier
    assert value(emr_runs["curated_vs"], "path").startswith(f"{lake}/curated/clinical/vs/data/")
    # Three stages, one step on the cluster (the pipeline), recorded on every materialization.
    assert [p.state for p in steps] == ["COMPLETED"]
    assert "pipeline.py" in " ".join(steps[0].args)
    assert {value(m, "emr_cluster_id") for m in emr_runs.values()} == {cluster_id}
    assert {value(m, "emr_step_id") for m in emr_runs.values()} == {steps[0].step_id}
    assert {value(m, "code_bundle_uploaded") for m in emr_runs.values()} == {True}
    assert value(emr_runs["raw_dm"], "code_version") == build_bundle().sha256
    # The key went through Secrets Manager only: not in a step, not in the driver's env.
    features_step = steps[0]
    assert TEST_PSEUDONYM_KEY not in " ".join(features_step.args)
    assert "CLINICAL_PSEUDONYM_KEY" not in features_step.driver_env
    assert features_step.driver_env["CLINICAL_PSEUDONYM_KEY_SECRET_ID"] == secret_arn
    s3 = aws.client("s3")
    for item in s3.list_objects_v2(Bucket=STAGING_BUCKET)["Contents"]:
        body = s3.get_object(Bucket=STAGING_BUCKET, Key=item["Key"])["Body"].read()
        assert TEST_PSEUDONYM_KEY.encode() not in body, item["Key"]
    # Pipes messages arrived while the step was running, not only at its end.
    ingest = steps[0]
    streamed = [
        entry
        for entry in instance.all_logs(result.run_id)
        if entry.user_message.startswith(f"raw_dm {pilot_run.delivery.key}: ")
        and entry.timestamp < ingest.ended_at
    ]
    assert streamed


def test_failed_step_shows_the_end_of_its_stderr(
    aws: AwsEmulator, player: ClusterPlayer, cluster_id: str, tmp_path: Path
) -> None:
    broken = Delivery("SYNTH01", "2024-02-01")
    # Landed (its manifest is there), but the manifest lists no files: the job fails on it.
    landing = Path(local_path(LakeLayout(str(tmp_path / "lake")).landing(broken)))
    landing.mkdir(parents=True)
    (landing / "dm.csv").write_text("STUDYID\nSYNTH01\n")
    (landing / MANIFEST_NAME).write_text('{"study": "SYNTH01", "delivery": "2024-02-01"}')
    role = "arn:aws:iam::123456789012:role/clinical-step-runtime"
    launcher = emr_launcher(aws, cluster_id=cluster_id, execution_role_arn=role)
    # moto ignores ExecutionRoleArn, so look at the request boto3 sends instead.
    requests: list[dict[str, Any]] = []
    session = boto3._get_default_session()  # every boto3.client() copies its event hooks
    assert session is not None
    events = session.events
    event = "provide-client-params.emr.AddJobFlowSteps"

    def record(params: dict[str, Any], **_: Any) -> None:
        requests.append(dict(params))

    events.register(event, record)
    try:
        result = materialize(
            tmp_path / "lake", broken, selection=["raw_dm"], resources={"spark": launcher}
        )
    finally:
        events.unregister(event, record)

    assert [r["ExecutionRoleArn"] for r in requests] == [role]
    assert not result.success
    message = failure_description(result)
    step = player.played[0]
    first_line = message.splitlines()[0]
    assert "unreadable delivery manifest" in first_line
    assert first_line.endswith(f"(EMR cluster {cluster_id} step {step.step_id} FAILED)")
    # The last lines of the step's stderr.gz and of the driver container's stderr.gz.
    assert f"{LOG_URI}{cluster_id}/steps/{step.step_id}/stderr.gz" in message
    assert "finished with failed status" in message
    assert "(driver container)" in message
    assert "SPARK_JOB_FAILURE: ingest:" in message
    assert step.state == "FAILED" and step.returncode == 2
    assert not result.get_asset_materialization_events()


def test_terminated_run_cancels_its_step(
    aws: AwsEmulator, player: ClusterPlayer, cluster_id: str, synth_lake: Path
) -> None:
    def terminate_when_the_driver_runs() -> None:
        if player.driver_started.wait(timeout=120):
            os.kill(os.getpid(), signal.SIGINT)  # what `dagster run terminate` sends a step

    terminator = threading.Thread(target=terminate_when_the_driver_runs, daemon=True)
    terminator.start()
    instance = dg.DagsterInstance.ephemeral()
    result = materialize(
        synth_lake,
        SYNTH,
        selection=["raw_dm"],
        instance=instance,
        resources={"spark": emr_launcher(aws, cluster_id=cluster_id)},
    )
    terminator.join(timeout=5)

    assert not result.success
    step = player.played[0]
    assert step.state == "CANCELLED"
    assert step.returncode is not None and step.returncode != 0  # the driver was stopped
    emr = aws.client("emr")
    described = emr.describe_step(ClusterId=cluster_id, StepId=step.step_id)["Step"]
    assert described["Status"]["State"] == "CANCELLED"
    messages = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert f"Run terminated: cancelling EMR step {step.step_id} on {cluster_id}" in messages
    assert f"EMR step {step.step_id} is CANCELLED" in messages


def test_unchanged_code_is_not_uploaded_again(
    aws: AwsEmulator, player: ClusterPlayer, cluster_id: str, synth_lake: Path
) -> None:
    launcher = emr_launcher(aws, cluster_id=cluster_id)
    s3 = aws.client("s3")
    archive_key = f"platform/code/{build_bundle().sha256}/spark_jobs.zip"

    first = materialize(synth_lake, SYNTH, selection=["raw_dm"], resources={"spark": launcher})
    uploaded_at = s3.head_object(Bucket=STAGING_BUCKET, Key=archive_key)["LastModified"]
    second = materialize(synth_lake, SYNTH, selection=["raw_dm"], resources={"spark": launcher})

    assert first.success and second.success
    assert value(materializations(first)["raw_dm"], "code_bundle_uploaded") is True
    assert value(materializations(second)["raw_dm"], "code_bundle_uploaded") is False
    assert s3.head_object(Bucket=STAGING_BUCKET, Key=archive_key)["LastModified"] == uploaded_at
    assert [p.state for p in player.played] == ["COMPLETED", "COMPLETED"]


def test_transient_cluster_has_the_seed_spec_and_always_terminates(
    aws: AwsEmulator, player: ClusterPlayer, synth_lake: Path
) -> None:
    launcher = emr_launcher(
        aws,
        transient_cluster=EmrClusterSpec(
            log_uri=LOG_URI,
            subnet_id="subnet-0private",
            security_configuration="clinical-sec",
            task_instance_count=2,
            idle_timeout_s=3600,
        ),
    )
    emr = aws.client("emr")

    succeeded = materialize(synth_lake, SYNTH, selection=["raw_dm"], resources={"spark": launcher})
    player.plans.append(StepPlan(fail_with=["SPARK_JOB_FAILURE: ingest: planned failure"]))
    failed = materialize(synth_lake, SYNTH, selection=["raw_dm"], resources={"spark": launcher})

    assert succeeded.success and not failed.success
    assert "ingest: planned failure" in failure_description(failed).splitlines()[0]
    cluster_ids = [
        value(materializations(succeeded)["raw_dm"], "emr_cluster_id"),
        player.played[1].cluster_id,
    ]
    assert cluster_ids[0] == player.played[0].cluster_id and cluster_ids[0] != cluster_ids[1]
    for cluster_id in cluster_ids:
        cluster = emr.describe_cluster(ClusterId=cluster_id)["Cluster"]
        assert cluster["Status"]["State"] == "TERMINATED"
        assert cluster["ReleaseLabel"] == "emr-6.15.0"
        assert [a["Name"] for a in cluster["Applications"]] == ["Spark", "Hadoop", "Hive", "Livy"]
        assert cluster["LogUri"] == LOG_URI
        assert cluster["Ec2InstanceAttributes"]["Ec2SubnetId"] == "subnet-0private"
        assert cluster["SecurityConfiguration"] == "clinical-sec"
        configurations = {
            c["Classification"]: c.get("Properties", {}) for c in cluster["Configurations"]
        }
        assert (
            configurations["hive-site"]["hive.metastore.client.factory.class"]
            == GLUE_METASTORE_FACTORY
        )
        groups = sorted(
            (g["InstanceGroupType"], g["InstanceType"], g["Market"], g["RequestedInstanceCount"])
            for g in emr.list_instance_groups(ClusterId=cluster_id)["InstanceGroups"]
        )
        assert groups == [
            ("CORE", "m5.xlarge", "ON_DEMAND", 2),
            ("MASTER", "m5.xlarge", "ON_DEMAND", 1),
            ("TASK", "m5.xlarge", "SPOT", 2),
        ]
        bootstrap = emr.list_bootstrap_actions(ClusterId=cluster_id)["BootstrapActions"]
        assert bootstrap[0]["ScriptPath"] == f"{STAGING_URI}/infra/emr/bootstrap.sh"
        tags = {t["Key"]: t["Value"] for t in cluster["Tags"]}
        assert tags["clinical-platform/job"] == "ingest"


def test_spot_interruption_is_retried(
    aws: AwsEmulator, player: ClusterPlayer, cluster_id: str, synth_lake: Path
) -> None:
    player.plans.append(StepPlan(fail_with=SPOT_LOSS))

    result = materialize(
        synth_lake,
        SYNTH,
        selection=["raw_dm"],
        resources={"spark": emr_launcher(aws, cluster_id=cluster_id)},
    )

    assert result.success, failure_description(result)
    assert [p.state for p in player.played] == ["FAILED", "COMPLETED"]
    raw_dm = materializations(result)["raw_dm"]
    assert value(raw_dm, "emr_attempts") == 2
    assert value(raw_dm, "emr_step_id") == player.played[1].step_id


def test_no_retry_beyond_the_limit(
    aws: AwsEmulator, player: ClusterPlayer, cluster_id: str, synth_lake: Path
) -> None:
    player.plans.extend([StepPlan(fail_with=SPOT_LOSS), StepPlan(fail_with=SPOT_LOSS)])

    result = materialize(
        synth_lake,
        SYNTH,
        selection=["raw_dm"],
        resources={"spark": emr_launcher(aws, cluster_id=cluster_id, max_step_retries=1)},
    )

    assert not result.success
    assert [p.state for p in player.played] == ["FAILED", "FAILED"]
    assert "gave up after 2 attempts" in failure_description(result).splitlines()[0]


def test_cluster_terminated_underneath_names_cluster_and_reason(
    aws: AwsEmulator, player: ClusterPlayer, cluster_id: str, synth_lake: Path
) -> None:
    player.plans.append(
        StepPlan(
            terminate_cluster_after_s=3.0, termination_reason="The primary node i-0abc was lost"
        )
    )

    result = materialize(
        synth_lake,
        SYNTH,
        selection=["raw_dm"],
        resources={"spark": emr_launcher(aws, cluster_id=cluster_id)},
    )

    assert not result.success
    message = failure_description(result)
    assert message == (
        f"EMR cluster {cluster_id} is TERMINATED_WITH_ERRORS (The primary node "
        f"i-0abc was lost); step {player.played[0].step_id} of ingest was "
        "INTERRUPTED"
    )
    assert emr_cluster(cluster_id).state == "TERMINATED_WITH_ERRORS"
    assert not result.get_asset_materialization_events()
