"""Where the HMAC key that pseudonymises subjects in feature tables comes from."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from clinical_platform.settings import PSEUDONYM_KEY_VAR


class Pseudonymization(dg.ConfigurableResource):
    """Names the environment variable holding the key; the key itself is never config.

    Keeping the value out of resource config keeps it out of the Dagster UI and run storage.
    The Dagster process never needs the value itself: the Spark launcher hands it to the
    driver (locally from this process's environment; on AWS as a Secrets Manager reference
    `<key_env_var>_SECRET_ID` that the driver resolves).
    """

    key_env_var: str = Field(
        default=PSEUDONYM_KEY_VAR, description="Environment variable with the pseudonym key"
    )

    def purpose(self) -> str:
        """What the key is for, for the one-line error when it cannot be provided."""
        return (
            "feature tables are pseudonymised with a keyed HMAC and are never written "
            "without the study's key (make demo and make ui use a demo key)"
        )
