"""Which resources each deployment uses: the one map from `CLINICAL_ENV` to launchers.

Asset code is identical everywhere; only these resources differ. Anything per-deployment or
secret is a `dg.EnvVar`, resolved when a run starts, so it never sits in code or in the UI's
config. Optional settings are looked up when the definitions are built, never at import.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import dagster as dg

from clinical_platform import settings
from clinical_platform.clinical.landing import LandingPolicy
from clinical_platform.lake import ClinicalLake
from clinical_platform.launchers.local import LocalSparkLauncher
from clinical_platform.pseudonymization import Pseudonymization
from spark_jobs.contracts.protocol import SECRET_ID_SUFFIX
from spark_jobs.contracts.tables import emr_catalog_conf

DEFAULT_REGION = "eu-central-1"
# Per-deployment settings of the AWS environments (ids and locations, never secrets).
STAGING_URI_VAR = "CLINICAL_EMR_STAGING_URI"
CLUSTER_ID_VAR = "CLINICAL_EMR_CLUSTER_ID"
REGION_VAR = "CLINICAL_AWS_REGION"
LOG_URI_VAR = "CLINICAL_EMR_LOG_URI"
SUBNET_ID_VAR = "CLINICAL_EMR_SUBNET_ID"
SECURITY_CONFIGURATION_VAR = "CLINICAL_EMR_SECURITY_CONFIGURATION"
EXECUTION_ROLE_VAR = "CLINICAL_EMR_EXECUTION_ROLE_ARN"
SERVERLESS_APPLICATION_VAR = "CLINICAL_EMR_SERVERLESS_APPLICATION_ID"
SERVERLESS_ROLE_VAR = "CLINICAL_EMR_SERVERLESS_EXECUTION_ROLE_ARN"
SERVERLESS_LOG_URI_VAR = "CLINICAL_EMR_SERVERLESS_LOG_URI"

if TYPE_CHECKING:
    from clinical_platform.launchers.emr import EmrStepLauncher
    from clinical_platform.launchers.emr_cluster import EmrClusterSpec
    from clinical_platform.launchers.emr_serverless import EmrServerlessLauncher

LakeUri = str | dg.EnvVar
SERVERLESS_ICEBERG_JAR = "/usr/share/aws/iceberg/lib/iceberg-spark3-runtime.jar"


def resources_for(environment: str, lake_uri: LakeUri | None = None) -> dict[str, Any]:
    """The resource set of an environment (`local`, `aws-emr-steps`, `aws-emr-serverless`).

    Without `lake_uri`, the local lake is `CLINICAL_LAKE_URI` or `.lake`, and an AWS lake is
    the `CLINICAL_LAKE_URI` of the deployment, resolved when a run starts.
    """
    name = settings.environment(environment)
    uri = lake_uri if lake_uri is not None else default_lake_uri(name)
    builders: dict[str, Callable[[LakeUri], Any]] = {
        settings.LOCAL: local_launcher,
        settings.AWS_EMR_STEPS: lambda _: emr_step_launcher(),
        settings.AWS_EMR_SERVERLESS: lambda _: emr_serverless_launcher(),
    }
    return {
        "lake": ClinicalLake(uri=uri),
        "spark": builders[name](uri),
        "pseudonymization": Pseudonymization(),
        "landing_policy": landing_policy(),
    }


def landing_policy() -> LandingPolicy:
    """The landing sensor's quiet period can be shortened per deployment (tests, demos)."""
    quiet = settings.optional(settings.QUIET_PERIOD_VAR)
    if quiet is None:
        return LandingPolicy()
    if not quiet.isdigit():
        raise settings.SettingsError(
            f"{settings.QUIET_PERIOD_VAR}={quiet!r} is not a whole number of seconds"
        )
    return LandingPolicy(quiet_period_seconds=int(quiet))


def default_lake_uri(environment: str) -> LakeUri:
    if environment == settings.LOCAL:
        return settings.lake_uri()
    return dg.EnvVar(settings.LAKE_URI_VAR)


def local_launcher(lake_uri: LakeUri) -> LocalSparkLauncher:
    return LocalSparkLauncher(
        lake_uri=lake_uri,
        catalog=settings.catalog_kind(),
        catalog_db=settings.optional(settings.CATALOG_DB_VAR),
    )


def _if_set(name: str) -> dg.EnvVar | None:
    """An EnvVar for an optional setting only when it is set (an unset EnvVar fails a run)."""
    return dg.EnvVar(name) if settings.optional(name) else None


def pseudonym_secret_ids() -> dict[str, str]:
    """The Secrets Manager id of the pseudonym key, when the deployment names one."""
    secret_id = settings.optional(f"{settings.PSEUDONYM_KEY_VAR}{SECRET_ID_SUFFIX}")
    return {settings.PSEUDONYM_KEY_VAR: secret_id} if secret_id else {}


def cluster_spec() -> EmrClusterSpec:
    """The seed cluster, with the deployment's log URI, subnet and security configuration."""
    from clinical_platform.launchers.emr_cluster import EmrClusterSpec

    return EmrClusterSpec(
        log_uri=settings.optional(LOG_URI_VAR),
        subnet_id=settings.optional(SUBNET_ID_VAR),
        security_configuration=settings.optional(SECURITY_CONFIGURATION_VAR),
    )


def region() -> str:
    return settings.optional(REGION_VAR) or DEFAULT_REGION


def emr_step_launcher() -> EmrStepLauncher:
    """`aws-emr-steps`: steps on CLINICAL_EMR_CLUSTER_ID, or a transient cluster per job."""
    # Imported here: boto3 and dagster-aws load only where EMR is used.
    from clinical_platform.launchers.emr import EmrStepLauncher

    return EmrStepLauncher(
        staging_uri=dg.EnvVar(STAGING_URI_VAR),
        cluster_id=_if_set(CLUSTER_ID_VAR),
        execution_role_arn=_if_set(EXECUTION_ROLE_VAR),
        region=_if_set(REGION_VAR) or DEFAULT_REGION,
        transient_cluster=cluster_spec(),
        secret_ids=pseudonym_secret_ids(),
    )


def emr_serverless_launcher() -> EmrServerlessLauncher:
    """`aws-emr-serverless`: one job run per job on an EMR Serverless application."""
    from clinical_platform.launchers.emr_serverless import EmrServerlessLauncher

    return EmrServerlessLauncher(
        application_id=dg.EnvVar(SERVERLESS_APPLICATION_VAR),
        execution_role_arn=dg.EnvVar(SERVERLESS_ROLE_VAR),
        staging_uri=dg.EnvVar(STAGING_URI_VAR),
        log_uri=_if_set(SERVERLESS_LOG_URI_VAR),
        region=_if_set(REGION_VAR) or DEFAULT_REGION,
        secret_ids=pseudonym_secret_ids(),
        # EMR Serverless has no cluster configuration: Iceberg and the Glue catalog come with
        # each job run (the runtime jar is where EMR Serverless releases ship it).
        spark_conf={**emr_catalog_conf(), "spark.jars": SERVERLESS_ICEBERG_JAR},
    )
