"""EMR launcher pieces that need no Spark: the step, code staging, secrets, Pipes over S3 on the
Spark side, the create-cluster command and the aws resource set (all against moto)."""

from __future__ import annotations

import base64
import json
import os
import re
import tomllib
import zlib
from pathlib import Path

import dagster as dg
import pytest

from clinical_platform import cli
from clinical_platform.definitions import resources_for
from clinical_platform.launchers.aws import (
    SECRET_ID_SUFFIX,
    S3Uri,
    StagedCode,
    list_keys,
    secret_references,
    stage_code,
)
from clinical_platform.launchers.base import SecretUnavailable
from clinical_platform.launchers.bundle import build_bundle
from clinical_platform.launchers.emr import EmrStepLauncher
from clinical_platform.launchers.emr_cluster import GLUE_METASTORE_FACTORY, PROJECT_ROOT
from clinical_platform_tests.conftest import TEST_PSEUDONYM_KEY
from clinical_platform_tests.helpers import land, materialize
from clinical_platform_tests.launchers.emulator import (
    LOG_URI,
    REGION,
    STAGING_BUCKET,
    STAGING_URI,
    AwsEmulator,
    emr_cluster,
)
from spark_jobs.contracts.layout import Delivery
from spark_jobs.contracts.tables import emr_catalog_conf

STAGING = S3Uri.parse(STAGING_URI)


def test_step_is_the_seed_spark_submit_in_cluster_mode() -> None:
    from clinical_platform.launchers.base import SparkJob

    launcher = EmrStepLauncher(
        staging_uri=STAGING_URI, cluster_id="j-TEST", spark_conf={"spark.executor.memory": "4g"}
    )
    code = StagedCode(
        STAGING.join("code/abc/spark_jobs.zip"), STAGING.join("code/abc/curate.py"), uploaded=False
    )
    job = SparkJob(
        "curate", ["--input", "s3://lake/raw/clinical", "--output", "s3://lake/curated/clinical"]
    )
    step = launcher.step_request(
        job,
        code,
        {"CLINICAL_CODE_VERSION": "abc", "DAGSTER_PIPES_CONTEXT": "eJw"},
        "clinical-curate",
    )

    assert step["ActionOnFailure"] == "CONTINUE"  # a failed step never stops a shared cluster
    assert step["HadoopJarStep"]["Jar"] == "command-runner.jar"
    args = step["HadoopJarStep"]["Args"]
    assert args[:7] == [
        "spark-submit",
        "--deploy-mode",
        "cluster",
        "--master",
        "yarn",
        "--name",
        "clinical-curate",
    ]
    assert args[-7:] == [
        "--py-files",
        f"{STAGING_URI}/code/abc/spark_jobs.zip",
        f"{STAGING_URI}/code/abc/curate.py",
        "--input",
        "s3://lake/raw/clinical",
        "--output",
        "s3://lake/curated/clinical",
    ]
    confs = [args[i + 1] for i, arg in enumerate(args) if arg == "--conf"]
    assert confs == [
        "spark.executor.memory=4g",
        "spark.yarn.appMasterEnv.CLINICAL_CODE_VERSION=abc",
        "spark.yarn.appMasterEnv.DAGSTER_PIPES_CONTEXT=eJw",
        "spark.yarn.maxAppAttempts=1",
    ]


def test_secrets_become_secret_ids_or_stop_the_launch() -> None:
    refs = secret_references(
        ["CLINICAL_PSEUDONYM_KEY"],
        {"CLINICAL_PSEUDONYM_KEY": "arn:aws:secretsmanager:x:1:secret:k"},
        "EMR",
    )
    assert refs == {
        f"CLINICAL_PSEUDONYM_KEY{SECRET_ID_SUFFIX}": "arn:aws:secretsmanager:x:1:secret:k"
    }
    with pytest.raises(SecretUnavailable) as raised:
        secret_references(["CLINICAL_PSEUDONYM_KEY"], {}, "EMR (features step)")
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(
        "CLINICAL_PSEUDONYM_KEY must not travel to EMR (features step) in clear"
    )


def test_code_bundle_is_staged_once_per_hash(aws: AwsEmulator) -> None:
    s3 = aws.client("s3")
    bundle = build_bundle()
    first = stage_code(s3, STAGING, bundle, "ingest")
    archive = s3.head_object(Bucket=STAGING_BUCKET, Key=first.archive.key)
    second = stage_code(s3, STAGING, bundle, "features")

    assert (first.uploaded, second.uploaded) == (True, False)
    assert first.archive == second.archive == STAGING.join("code", bundle.sha256, "spark_jobs.zip")
    assert second.entry_script.key.endswith(f"{bundle.sha256}/features.py")
    assert archive["Metadata"] == {"sha256": bundle.sha256}
    assert archive["ContentLength"] == len(bundle.archive)
    assert (
        s3.head_object(Bucket=STAGING_BUCKET, Key=first.archive.key)["LastModified"]
        == archive["LastModified"]
    )
    assert list_keys(s3, STAGING.join("code", bundle.sha256)) == [
        f"platform/code/{bundle.sha256}/{name}"
        for name in (
            "curate.py",
            "features.py",
            "ingest.py",
            "maintain.py",
            "pipeline.py",
            "query.py",
            "spark_jobs.zip",
        )
    ]


def test_unmapped_secret_fails_before_anything_is_submitted(
    aws: AwsEmulator, cluster_id: str, tmp_path: Path, pseudonym_key: str
) -> None:
    launcher = EmrStepLauncher(
        staging_uri=STAGING_URI, cluster_id=cluster_id, region=REGION, endpoint_url=aws.endpoint
    )
    delivery = Delivery("SYNTH01", "2024-01-15")
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    (incoming / "dm.csv").write_text("STUDYID\nSYNTH01\n")
    land(incoming, delivery, tmp_path / "lake")
    result = materialize(
        tmp_path / "lake",
        delivery,
        selection=["features_subject_profile"],
        resources={"spark": launcher},
    )

    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.user_failure_data
    assert failure is not None and failure.description is not None
    assert failure.description.startswith(
        "CLINICAL_PSEUDONYM_KEY must not travel to EMR (features step) in clear; map it to an "
        "AWS Secrets Manager secret"
    )
    assert pseudonym_key not in failure.description
    assert emr_cluster(cluster_id).steps == []
    assert aws.client("s3").list_objects_v2(Bucket=STAGING_BUCKET).get("KeyCount") == 0


def test_features_job_reads_the_key_from_secrets_manager(
    aws: AwsEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from spark_jobs import features
    from spark_jobs.runtime.session import JobError

    arn = aws.client("secretsmanager").create_secret(
        Name="clinical/pseudonym-key", SecretString=TEST_PSEUDONYM_KEY
    )["ARN"]
    monkeypatch.delenv("CLINICAL_PSEUDONYM_KEY", raising=False)
    monkeypatch.setenv("CLINICAL_PSEUDONYM_KEY_SECRET_ID", arn)
    assert features.SECRET_ID_SUFFIX == SECRET_ID_SUFFIX
    assert features.pseudonym_key("CLINICAL_PSEUDONYM_KEY") == TEST_PSEUDONYM_KEY

    monkeypatch.setenv("CLINICAL_PSEUDONYM_KEY", "from-the-environment")
    assert features.pseudonym_key("CLINICAL_PSEUDONYM_KEY") == "from-the-environment"

    monkeypatch.delenv("CLINICAL_PSEUDONYM_KEY")
    monkeypatch.setenv("CLINICAL_PSEUDONYM_KEY_SECRET_ID", "clinical/no-such-secret")
    with pytest.raises(JobError) as raised:
        features.pseudonym_key("CLINICAL_PSEUDONYM_KEY")
    assert str(raised.value).startswith(
        "features_subject_profile: cannot read the pseudonym key from Secrets Manager secret "
        "clinical/no-such-secret (ResourceNotFoundException"
    )


def _pipes_param(value: dict[str, object]) -> str:
    return base64.b64encode(zlib.compress(json.dumps(value).encode("utf-8"))).decode("ascii")


def test_spark_side_reports_through_s3_when_the_launcher_says_so(
    aws: AwsEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job's half of Pipes over S3: context read from S3, messages written as chunks."""
    from spark_jobs.runtime.reporting import open_reporter

    s3 = aws.client("s3")
    context = {
        "asset_keys": ["raw_dm"],
        "run_id": "r1",
        "extras": {"selected_checks": [["raw_dm", "schema_matches_contract"]]},
        "job_name": "j",
        "retry_number": 0,
        "partition_key": "SYNTH01/2024-01-15",
        "code_version_by_asset_key": None,
        "provenance_by_asset_key": None,
        "partition_key_range": None,
        "partition_time_window": None,
    }
    s3.put_object(
        Bucket=STAGING_BUCKET,
        Key="pipes/ctx/context.json",
        Body=json.dumps(context).encode("utf-8"),
    )
    monkeypatch.setenv(
        "DAGSTER_PIPES_CONTEXT",
        _pipes_param({"bucket": STAGING_BUCKET, "key": "pipes/ctx/context.json"}),
    )
    monkeypatch.setenv(
        "DAGSTER_PIPES_MESSAGES",
        _pipes_param({"bucket": STAGING_BUCKET, "key_prefix": "pipes/messages/m1", "interval": 0}),
    )

    with open_reporter() as reporter:
        assert reporter.wants_check("raw_dm", "schema_matches_contract")
        assert not reporter.wants_check("raw_dm", "other_check")
        reporter.info("ingesting dm")
        reporter.materialization("raw_dm", {"rows_out": 42}, data_version="abc")

    keys = list_keys(s3, S3Uri(STAGING_BUCKET, "pipes/messages/m1"))
    messages = [
        json.loads(line)
        for key in keys
        for line in s3.get_object(Bucket=STAGING_BUCKET, Key=key)["Body"]
        .read()
        .decode("utf-8")
        .splitlines()
    ]
    methods = [m["method"] for m in messages]
    assert methods[0] == "opened" and methods[-1] == "closed"
    logged = next(m for m in messages if m["method"] == "log")
    assert logged["params"]["message"] == "ingesting dm"
    reported = next(m for m in messages if m["method"] == "report_asset_materialization")
    assert reported["params"]["asset_key"] == "raw_dm"
    assert reported["params"]["data_version"] == "abc"
    assert reported["params"]["metadata"]["rows_out"]["raw_value"] == 42


def test_dry_run_prints_the_seed_cluster(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(
            ["emr", "create-cluster", "--dry-run", "--staging-uri", "s3://acme-clinical/platform"]
        )
    assert exited.value.code == 0
    out = capsys.readouterr().out
    command = out[out.index("aws emr create-cluster") : out.index("\n\n")]
    for expected in (
        "--release-label emr-6.15.0",
        "--applications Name=Spark Name=Hadoop Name=Hive Name=Livy",
        "--instance-type m5.xlarge",
        "--instance-count 3",
        "--log-uri s3://acme-clinical/emr-logs/",
        "--configurations file://infra/emr/emr-config.json",
        "Path=s3://acme-clinical/platform/infra/emr/bootstrap.sh",
        "--region eu-central-1",
    ):
        assert expected in command, expected
    request = json.loads(out[out.index("{") :])
    assert request["ReleaseLabel"] == "emr-6.15.0"
    assert [a["Name"] for a in request["Applications"]] == ["Spark", "Hadoop", "Hive", "Livy"]
    assert [
        (g["InstanceRole"], g["InstanceType"], g["InstanceCount"])
        for g in request["Instances"]["InstanceGroups"]
    ] == [("MASTER", "m5.xlarge", 1), ("CORE", "m5.xlarge", 2)]
    assert request["LogUri"] == "s3://acme-clinical/emr-logs/"
    hive = {c["Classification"]: c.get("Properties", {}) for c in request["Configurations"]}
    assert hive["hive-site"]["hive.metastore.client.factory.class"] == GLUE_METASTORE_FACTORY
    assert hive["spark-hive-site"]["hive.metastore.client.factory.class"] == GLUE_METASTORE_FACTORY
    assert GLUE_METASTORE_FACTORY in out


def test_create_cluster_through_boto3(aws: AwsEmulator, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(
            [
                "emr",
                "create-cluster",
                "--staging-uri",
                STAGING_URI,
                "--log-uri",
                LOG_URI,
                "--subnet-id",
                "subnet-0private",
                "--spot-task-count",
                "2",
                "--endpoint-url",
                aws.endpoint,
            ]
        )
    assert exited.value.code == 0
    cluster_id = re.search(r"created EMR cluster (j-\w+)", capsys.readouterr().out)
    assert cluster_id is not None
    emr = aws.client("emr")
    cluster = emr.describe_cluster(ClusterId=cluster_id[1])["Cluster"]
    assert cluster["ReleaseLabel"] == "emr-6.15.0"
    assert cluster["LogUri"] == LOG_URI
    assert cluster["Ec2InstanceAttributes"]["Ec2SubnetId"] == "subnet-0private"
    groups = sorted(
        (g["InstanceGroupType"], g["Market"], g["RequestedInstanceCount"])
        for g in emr.list_instance_groups(ClusterId=cluster_id[1])["InstanceGroups"]
    )
    assert groups == [("CORE", "ON_DEMAND", 2), ("MASTER", "ON_DEMAND", 1), ("TASK", "SPOT", 2)]
    bootstrap = aws.client("s3").get_object(
        Bucket=STAGING_BUCKET, Key="platform/infra/emr/bootstrap.sh"
    )
    assert bootstrap["Body"].read() == (PROJECT_ROOT / "infra/emr/bootstrap.sh").read_bytes()


def test_bootstrap_pins_the_locked_versions() -> None:
    locked = {
        p["name"]: p["version"]
        for p in tomllib.loads((PROJECT_ROOT / "uv.lock").read_text())["package"]
    }
    script = (PROJECT_ROOT / "infra/emr/bootstrap.sh").read_text()
    assert f'DAGSTER_PIPES_VERSION="{locked["dagster-pipes"]}"' in script
    assert f'BOTO3_VERSION="{locked["boto3"]}"' in script
    config = json.loads((PROJECT_ROOT / "infra/emr/emr-config.json").read_text())
    exports = next(c for c in config if c["Classification"] == "spark-env")
    python = exports["Configurations"][0]["Properties"]["PYSPARK_PYTHON"]
    assert python == "/opt/clinical/python/bin/python3.11"
    assert 'PREFIX="${CLINICAL_PYTHON_PREFIX:-/opt/clinical}"' in script


def test_aws_environment_builds_the_emr_launcher_without_network(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CLINICAL_EMR_STAGING_URI", STAGING_URI)
    monkeypatch.setenv("CLINICAL_EMR_CLUSTER_ID", "j-PRODUCTION")
    monkeypatch.setenv("CLINICAL_PSEUDONYM_KEY_SECRET_ID", "clinical/pseudonym-key")
    monkeypatch.setenv("CLINICAL_EMR_LOG_URI", "s3://acme-logs/emr/")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    resources = resources_for("aws", "s3://acme-lake/clinical")
    configured = resources["spark"]
    assert isinstance(configured, EmrStepLauncher)
    assert configured.staging_uri == dg.EnvVar("CLINICAL_EMR_STAGING_URI")  # resolved at run
    launcher = configured.process_config_and_initialize()
    assert launcher.staging_uri == STAGING_URI
    assert launcher.cluster_id == "j-PRODUCTION"
    assert launcher.secret_ids == {"CLINICAL_PSEUDONYM_KEY": "clinical/pseudonym-key"}
    assert launcher.transient_cluster.log_uri == "s3://acme-logs/emr/"
    assert launcher.description == "emr cluster j-PRODUCTION"
    from clinical_platform.clinical.assets import CLINICAL_ASSETS

    dg.Definitions.validate_loadable(dg.Definitions(assets=CLINICAL_ASSETS, resources=resources))


FAKE_AWS_CLI = """#!/bin/bash
# aws s3 cp --recursive --only-show-errors SRC DST | aws s3 ls URI, on a folder per bucket.
set -euo pipefail
local_path() { echo "${FAKE_S3}/${1#s3://}"; }
if [[ "$1 $2" == "s3 cp" ]]; then
  src="$(local_path "${@: -2:1}")"; dst="${@: -1}"
  mkdir -p "${dst}"
  if [[ -d "${src}" ]]; then cp -r "${src}/." "${dst}/"; fi  # an empty prefix copies nothing
elif [[ "$1 $2" == "s3 ls" ]]; then
  [[ -d "$(local_path "$3")" ]]
else
  exit 2
fi
"""
FAKE_PYTHON = """#!/bin/bash
# Stands in for the CPython 3.11 of the tarball: records what it is asked to do.
echo "$*" >> "$(dirname "$0")/calls.log"
[[ "$1" == "--version" ]] && echo "Python 3.11.99"
exit 0
"""


def test_bootstrap_installs_the_pinned_runtime_from_s3_only(tmp_path: Path) -> None:
    """The script's own logic, with `aws`, `sudo` and the Python tarball stood in for."""
    import shutil
    import subprocess
    import tarfile

    bin_dir, s3 = tmp_path / "bin", tmp_path / "s3"
    bin_dir.mkdir()
    (bin_dir / "aws").write_text(FAKE_AWS_CLI)
    (bin_dir / "sudo").write_text('#!/bin/bash\nexec "$@"\n')
    runtime = tmp_path / "runtime" / "python" / "bin"
    runtime.mkdir(parents=True)
    (runtime / "python3.11").write_text(FAKE_PYTHON)
    for script in [*bin_dir.iterdir(), runtime / "python3.11"]:
        script.chmod(0o755)
    artifacts = s3 / "acme" / "platform" / "emr-artifacts"
    (artifacts / "python").mkdir(parents=True)
    (artifacts / "wheelhouse").mkdir()
    (artifacts / "wheelhouse" / "boto3-1.44.8-py3-none-any.whl").write_bytes(b"wheel")
    tarball = (
        artifacts / "python" / "cpython-3.11.99+20990101-x86_64-unknown-linux-gnu-"
        "install_only.tar.gz"
    )
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(tmp_path / "runtime" / "python", arcname="python")
    prefix = tmp_path / "opt"
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FAKE_S3": str(s3),
        "CLINICAL_PYTHON_PREFIX": str(prefix),
        "HOME": str(tmp_path),
    }
    script = str(PROJECT_ROOT / "infra/emr/bootstrap.sh")

    done = subprocess.run(
        ["bash", script, "--artifacts", "s3://acme/platform/emr-artifacts"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    calls = (prefix / "python" / "bin" / "calls.log").read_text().splitlines()
    assert calls[0] == "--version"
    install = calls[1].split()
    assert install[:2] == ["-m", "pip"] and "--no-index" in install
    assert install[-2:] == ["dagster-pipes==1.13.27", "boto3==1.44.8"]
    assert calls[2].startswith("-c from importlib.metadata import version")  # the final check

    shutil.rmtree(artifacts / "wheelhouse")  # no wheelhouse staged: PyPI (needs a NAT)
    online = subprocess.run(
        ["bash", script, "--artifacts", "s3://acme/platform/emr-artifacts"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert online.returncode == 0, online.stderr
    last_install = [
        call
        for call in (prefix / "python" / "bin" / "calls.log").read_text().splitlines()
        if call.startswith("-m pip")
    ][-1]
    assert "--no-index" not in last_install and last_install.endswith("boto3==1.44.8")

    shutil.rmtree(artifacts / "python")
    missing = subprocess.run(
        ["bash", script, "--artifacts", "s3://acme/platform/emr-artifacts"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode != 0
    assert missing.stderr.strip().splitlines()[-1] == (
        "bootstrap.sh: no cpython-3.11.*-install_only.tar.gz under "
        "s3://acme/platform/emr-artifacts/python/"
    )


def test_the_cluster_configuration_carries_the_iceberg_glue_catalog() -> None:
    """EMR gets the same `clinical` catalog the kernel describes: Iceberg on, Glue, S3FileIO."""
    config = json.loads((PROJECT_ROOT / "infra/emr/emr-config.json").read_text())
    by_classification = {c["Classification"]: c for c in config}
    assert by_classification["iceberg-defaults"]["Properties"] == {"iceberg.enabled": "true"}
    defaults = by_classification["spark-defaults"]["Properties"]
    assert emr_catalog_conf().items() <= defaults.items()
    assert defaults["spark.sql.catalog.clinical.catalog-impl"].endswith("GlueCatalog")
    assert not any(key.endswith(".warehouse") for key in defaults)  # each job sets its lake
