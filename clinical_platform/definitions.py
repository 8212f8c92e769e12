"""The platform's one Definitions object; `CLINICAL_ENV` chooses where Spark runs."""

from __future__ import annotations

import dagster as dg

from clinical_platform import settings
from clinical_platform.clinical.assets import CLINICAL_ASSETS
from clinical_platform.lake import ClinicalLake
from clinical_platform.launchers.local import LocalSparkLauncher
from clinical_platform.pseudonymization import Pseudonymization


def resources_for(environment: str, lake_uri: str) -> dict[str, object]:
    """The resource set of an environment; asset code is the same in all of them."""
    if environment == "local":
        return {
            "lake": ClinicalLake(uri=lake_uri),
            "spark": LocalSparkLauncher(lake_uri=lake_uri),
            "pseudonymization": Pseudonymization(),
        }
    if environment == "aws":
        # Imported here: boto3 and dagster-aws load only where EMR is used.
        from clinical_platform.launchers.emr import emr_launcher_from_environment

        return {
            "lake": ClinicalLake(uri=lake_uri),
            "spark": emr_launcher_from_environment(),
            "pseudonymization": Pseudonymization(),
        }
    raise settings.SettingsError(
        f"{settings.ENVIRONMENT_VAR}={environment}: no launcher is configured for it yet"
    )


defs = dg.Definitions(
    assets=CLINICAL_ASSETS,
    resources=resources_for(settings.environment(), settings.lake_uri()),
)
