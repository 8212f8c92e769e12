"""Where the HMAC key that pseudonymises subjects in feature tables comes from."""

from __future__ import annotations

import os

import dagster as dg
from pydantic import Field

from clinical_platform.settings import PSEUDONYM_KEY_VAR


class Pseudonymization(dg.ConfigurableResource):
    """Names the environment variable holding the key; the key itself is never config.

    Keeping the value out of resource config keeps it out of the Dagster UI and run storage;
    the launcher hands it to the Spark driver's environment only.
    """

    key_env_var: str = Field(default=PSEUDONYM_KEY_VAR,
                             description="Environment variable with the pseudonym key")

    def key(self) -> str:
        value = os.environ.get(self.key_env_var, "")
        if not value:
            raise dg.Failure(
                description=(
                    f"{self.key_env_var} is not set: feature tables are pseudonymised with a "
                    f"keyed HMAC and are never written without the study's key; export "
                    f"{self.key_env_var} (make demo and make ui use a demo key)"),
                allow_retries=False,
            )
        return value
