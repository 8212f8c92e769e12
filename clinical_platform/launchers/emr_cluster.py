"""The EMR cluster the platform runs on, as one spec: the seed's long-running cluster by default.

One spec feeds three things that must agree: the transient cluster `EmrStepLauncher` creates,
`clinical-platform emr create-cluster` (boto3), and the `aws emr create-cluster` command its
`--dry-run` prints. The cluster configuration itself lives in `infra/emr/emr-config.json`.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from clinical_platform.launchers.aws import AwsConfigError, S3Uri
from clinical_platform.launchers.bundle import PACKAGE_DIR

PROJECT_ROOT = PACKAGE_DIR.parent
SEED_APPLICATIONS = ("Spark", "Hadoop", "Hive", "Livy")
GLUE_METASTORE_FACTORY = "com.amazonaws.glue.catalog.metastore.AWSGlueDataCatalogHiveClientFactory"
CONFIGURATIONS_FILE = "infra/emr/emr-config.json"
BOOTSTRAP_FILE = "infra/emr/bootstrap.sh"
BOOTSTRAP_NAME = "clinical-python-runtime"


class EmrClusterSpec(dg.Config):
    """A cluster like the seed's: emr-6.15.0, Spark/Hadoop/Hive/Livy, m5.xlarge x3, Glue."""

    name: str = Field(default="clinical-platform")
    release_label: str = Field(default="emr-6.15.0")
    applications: list[str] = Field(default_factory=lambda: list(SEED_APPLICATIONS))
    instance_type: str = Field(default="m5.xlarge", description="Primary and core nodes")
    instance_count: int = Field(
        default=3,
        description="Primary plus core nodes, as in `aws emr create-cluster --instance-count`",
    )
    task_instance_count: int = Field(default=0, description="Extra task nodes (no HDFS)")
    task_instance_type: str | None = Field(default=None, description="Default: instance_type")
    task_on_spot: bool = Field(
        default=True, description="Task nodes on Spot, capped at the On-Demand price"
    )
    subnet_id: str | None = Field(
        default=None, description="Private subnet with an S3 gateway endpoint"
    )
    security_configuration: str | None = Field(default=None)
    log_uri: str | None = Field(
        default=None, description="Default: s3://<staging bucket>/emr-logs/"
    )
    service_role: str = Field(default="EMR_DefaultRole")
    instance_profile: str = Field(default="EMR_EC2_DefaultRole")
    bootstrap_uri: str | None = Field(
        default=None, description="Default: bootstrap.sh staged under <staging>/infra/emr/"
    )
    artifacts_uri: str | None = Field(
        default=None,
        description="Python runtime and wheels for bootstrap.sh; default <staging>/emr-artifacts",
    )
    configurations_file: str = Field(
        default=CONFIGURATIONS_FILE, description="Relative paths start at the project root"
    )
    idle_timeout_s: int | None = Field(
        default=None,
        description="EMR auto-termination after this idle time (a backstop for transient clusters)",
    )
    tags: dict[str, str] = Field(default_factory=dict)


def default_log_uri(staging: S3Uri) -> str:
    return f"s3://{staging.bucket}/emr-logs/"


def log_uri_of(spec: EmrClusterSpec, staging: S3Uri) -> str:
    return spec.log_uri or default_log_uri(staging)


def bootstrap_uri_of(spec: EmrClusterSpec, staging: S3Uri) -> str:
    return spec.bootstrap_uri or str(staging.join(BOOTSTRAP_FILE))


def artifacts_uri_of(spec: EmrClusterSpec, staging: S3Uri) -> str:
    return spec.artifacts_uri or str(staging.join("emr-artifacts"))


def project_file(relative_or_absolute: str) -> Path:
    path = Path(relative_or_absolute)
    return path if path.is_absolute() else PROJECT_ROOT / path


def load_configurations(spec: EmrClusterSpec) -> list[dict[str, Any]]:
    path = project_file(spec.configurations_file)
    try:
        value = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise AwsConfigError(f"{path}: cannot read the EMR configurations ({error})") from None
    if not isinstance(value, list):
        raise AwsConfigError(f"{path}: EMR configurations must be a JSON list of classifications")
    return value


def _instance_groups(spec: EmrClusterSpec) -> list[dict[str, Any]]:
    if spec.instance_count < 1:
        raise AwsConfigError(
            f"instance_count={spec.instance_count}: an EMR cluster needs at least its primary node"
        )
    groups: list[dict[str, Any]] = [
        {
            "Name": "primary",
            "InstanceRole": "MASTER",
            "InstanceType": spec.instance_type,
            "InstanceCount": 1,
            "Market": "ON_DEMAND",
        }
    ]
    if spec.instance_count > 1:
        groups.append(
            {
                "Name": "core",
                "InstanceRole": "CORE",
                "InstanceType": spec.instance_type,
                "InstanceCount": spec.instance_count - 1,
                "Market": "ON_DEMAND",
            }
        )
    if spec.task_instance_count > 0:
        groups.append(
            {
                "Name": "task-spot" if spec.task_on_spot else "task",
                "InstanceRole": "TASK",
                "InstanceType": spec.task_instance_type or spec.instance_type,
                "InstanceCount": spec.task_instance_count,
                "Market": "SPOT" if spec.task_on_spot else "ON_DEMAND",
            }
        )
    return groups


def run_job_flow_request(
    spec: EmrClusterSpec, staging: S3Uri, *, extra_tags: dict[str, str] | None = None
) -> dict[str, Any]:
    """The boto3 `run_job_flow` arguments for this spec (what create-cluster sends)."""
    instances: dict[str, Any] = {
        "InstanceGroups": _instance_groups(spec),
        # Steps are added afterwards: without this the cluster would end before the first one.
        "KeepJobFlowAliveWhenNoSteps": True,
        "TerminationProtected": False,
    }
    if spec.subnet_id:
        instances["Ec2SubnetId"] = spec.subnet_id
    tags = {"project": "clinical-platform", **spec.tags, **(extra_tags or {})}
    request: dict[str, Any] = {
        "Name": spec.name,
        "ReleaseLabel": spec.release_label,
        "Applications": [{"Name": name} for name in spec.applications],
        "LogUri": log_uri_of(spec, staging),
        "Instances": instances,
        "BootstrapActions": [
            {
                "Name": BOOTSTRAP_NAME,
                "ScriptBootstrapAction": {
                    "Path": bootstrap_uri_of(spec, staging),
                    "Args": ["--artifacts", artifacts_uri_of(spec, staging)],
                },
            }
        ],
        "Configurations": load_configurations(spec),
        "ServiceRole": spec.service_role,
        "JobFlowRole": spec.instance_profile,
        "VisibleToAllUsers": True,
        "Tags": [{"Key": key, "Value": value[:256]} for key, value in sorted(tags.items())],
    }
    if spec.security_configuration:
        request["SecurityConfiguration"] = spec.security_configuration
    if spec.idle_timeout_s:
        request["AutoTerminationPolicy"] = {"IdleTimeout": spec.idle_timeout_s}
    return request


def create_cluster_command(spec: EmrClusterSpec, staging: S3Uri, region: str) -> list[str]:
    """The `aws emr create-cluster` argv equivalent to `run_job_flow_request`."""
    argv = [
        "aws",
        "emr",
        "create-cluster",
        "--name",
        spec.name,
        "--release-label",
        spec.release_label,
        "--applications",
        *[f"Name={name}" for name in spec.applications],
    ]
    if spec.task_instance_count > 0:
        shorthand = []
        for group in _instance_groups(spec):
            text = (
                f"InstanceGroupType={group['InstanceRole']},"
                f"InstanceCount={group['InstanceCount']},InstanceType={group['InstanceType']}"
            )
            if group["Market"] == "SPOT":
                text += ",BidPrice=OnDemandPrice"
            shorthand.append(text)
        argv += ["--instance-groups", *shorthand]
    else:
        argv += [
            "--instance-type",
            spec.instance_type,
            "--instance-count",
            str(spec.instance_count),
        ]
    ec2 = [f"InstanceProfile={spec.instance_profile}"]
    if spec.subnet_id:
        ec2.append(f"SubnetId={spec.subnet_id}")
    argv += [
        "--service-role",
        spec.service_role,
        "--ec2-attributes",
        ",".join(ec2),
        "--log-uri",
        log_uri_of(spec, staging),
        "--bootstrap-actions",
        f"Path={bootstrap_uri_of(spec, staging)},Name={BOOTSTRAP_NAME},"
        f"Args=[--artifacts,{artifacts_uri_of(spec, staging)}]",
        "--configurations",
        f"file://{spec.configurations_file}",
    ]
    if spec.security_configuration:
        argv += ["--security-configuration", spec.security_configuration]
    if spec.idle_timeout_s:
        argv += ["--auto-termination-policy", f"IdleTimeout={spec.idle_timeout_s}"]
    tags = {"project": "clinical-platform", **spec.tags}
    argv += ["--tags", *[f"{key}={value}" for key, value in sorted(tags.items())]]
    argv += ["--region", region]
    return argv


def render_command(argv: list[str]) -> str:
    """A copy-pasteable shell command, one option per line."""
    parts: list[str] = []
    for token in argv:
        quoted = shlex.quote(token)
        if token.startswith("--") and parts:
            parts.append(" \\\n    " + quoted)
        else:
            parts.append((" " if parts else "") + quoted)
    return "".join(parts)
