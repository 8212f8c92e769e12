"""`clinical-platform emr ...`: the EMR cluster the platform runs on, from the same spec the
launcher uses, so the printed `aws emr create-cluster` and the real one cannot drift apart."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from clinical_platform import settings
from clinical_platform.deployments import (
    SECURITY_CONFIGURATION_VAR,
    STAGING_URI_VAR,
    SUBNET_ID_VAR,
    cluster_spec,
    region,
)

if TYPE_CHECKING:
    from clinical_platform.launchers.emr_cluster import EmrClusterSpec

EXIT_FAILED = 1
# Shown by --dry-run when no staging location is configured; never used to create anything.
PLACEHOLDER_STAGING_URI = "s3://YOUR-STAGING-BUCKET/clinical-platform"


def add_emr_commands(commands: Any) -> None:
    """Register `emr` on the top-level sub-command parser of `clinical-platform`."""
    emr = commands.add_parser("emr", help="Amazon EMR: the cluster Spark runs on in production")
    actions = emr.add_subparsers(dest="emr_command", required=True)
    create = actions.add_parser(
        "create-cluster", help="create the platform's long-running EMR cluster (the seed's spec)"
    )
    create.add_argument(
        "--dry-run",
        action="store_true",
        help="print the aws emr create-cluster command and its JSON; create nothing",
    )
    create.add_argument(
        "--staging-uri",
        default=settings.optional(STAGING_URI_VAR),
        help=f"s3://bucket/prefix of staged code (default ${STAGING_URI_VAR})",
    )
    create.add_argument("--region", default=region())
    # Defaults come from `cluster_spec()` when the command runs: importing the EMR code (and
    # boto3 with dagster-aws, about 2 s) is for this command, not every command of the CLI.
    create.add_argument("--name", help="default: the seed cluster's")
    create.add_argument("--release-label", help="default: the seed cluster's")
    create.add_argument("--instance-type", help="default: the seed cluster's")
    create.add_argument("--instance-count", type=int, help="default: the seed cluster's")
    create.add_argument(
        "--spot-task-count", type=int, help="extra task nodes on Spot (default none)"
    )
    create.add_argument("--log-uri", help="default s3://<staging bucket>/emr-logs/")
    create.add_argument("--subnet-id", help=f"default ${SUBNET_ID_VAR}")
    create.add_argument("--security-configuration", help=f"default ${SECURITY_CONFIGURATION_VAR}")
    create.add_argument(
        "--idle-timeout", type=int, default=None, help="auto-terminate after this many idle seconds"
    )
    create.add_argument("--endpoint-url", default=None, help=argparse.SUPPRESS)
    create.set_defaults(handler=cmd_create_cluster)


def _spec(args: argparse.Namespace) -> EmrClusterSpec:
    """The deployment's cluster spec with what the command line changed."""
    given = {
        "name": args.name,
        "release_label": args.release_label,
        "instance_type": args.instance_type,
        "instance_count": args.instance_count,
        "task_instance_count": args.spot_task_count,
        "log_uri": args.log_uri,
        "subnet_id": args.subnet_id,
        "security_configuration": args.security_configuration,
        "idle_timeout_s": args.idle_timeout,
    }
    return cluster_spec().model_copy(update={k: v for k, v in given.items() if v is not None})


def cmd_create_cluster(args: argparse.Namespace) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    from clinical_platform.launchers.aws import AwsConfigError, S3Uri, aws_client, stage_file
    from clinical_platform.launchers.emr_cluster import (
        BOOTSTRAP_FILE,
        bootstrap_uri_of,
        create_cluster_command,
        project_file,
        render_command,
        run_job_flow_request,
    )

    try:
        if not args.staging_uri and not args.dry_run:
            raise AwsConfigError(
                f"no staging location: pass --staging-uri s3://bucket/prefix "
                f"or set {STAGING_URI_VAR}"
            )
        staging = S3Uri.parse(args.staging_uri or PLACEHOLDER_STAGING_URI)
        spec = _spec(args)
        request = run_job_flow_request(spec, staging)
        command = create_cluster_command(spec, staging, args.region)
    except AwsConfigError as error:
        print(f"clinical-platform: {error}", file=sys.stderr)
        return EXIT_FAILED
    if args.dry_run:
        if not args.staging_uri:
            print(
                f"# {STAGING_URI_VAR} is not set: {PLACEHOLDER_STAGING_URI} is a placeholder",
                file=sys.stderr,
            )
        print(
            f"# Stage the bootstrap script first:\n# aws s3 cp {BOOTSTRAP_FILE} "
            f"{bootstrap_uri_of(spec, staging)}"
        )
        print(render_command(command))
        print(
            "\n# The same cluster as a boto3 run_job_flow / `aws emr create-cluster "
            "--cli-input-json` request:"
        )
        print(json.dumps(request, indent=2, sort_keys=True))
        return 0
    try:
        s3 = aws_client("s3", args.region, args.endpoint_url)
        if spec.bootstrap_uri is None:
            stage_file(
                s3, project_file(BOOTSTRAP_FILE), S3Uri.parse(bootstrap_uri_of(spec, staging))
            )
        emr = aws_client("emr", args.region, args.endpoint_url)
        cluster_id = emr.run_job_flow(**request)["JobFlowId"]
    except (ClientError, BotoCoreError, OSError) as error:
        print(
            f"clinical-platform: emr create-cluster failed: {' '.join(str(error).split())}",
            file=sys.stderr,
        )
        return EXIT_FAILED
    print(
        f"created EMR cluster {cluster_id} ({spec.release_label}, {spec.instance_count} x "
        f"{spec.instance_type}) in {args.region}"
    )
    print(f"point the platform at it: export CLINICAL_ENV=aws CLINICAL_EMR_CLUSTER_ID={cluster_id}")
    return 0
