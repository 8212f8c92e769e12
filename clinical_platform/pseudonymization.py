"""Where the HMAC key that pseudonymises subjects in feature tables comes from."""

from __future__ import annotations

import os
from collections.abc import Set as AbstractSet

import dagster as dg
from pydantic import Field

from clinical_platform.settings import DEMO_PSEUDONYM_KEY_VAR, DEMO_STUDY, PSEUDONYM_KEY_VAR
from spark_jobs.contracts.protocol import SECRET_ID_SUFFIX


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

    demo_key_env_var: str = Field(
        default=DEMO_PSEUDONYM_KEY_VAR,
        description="Environment variable with the demo key (generated demo study only)",
    )

    def key_env_for(self, studies: AbstractSet[str]) -> str:
        """The variable the features job takes its key from for a run of `studies`.

        The study key's, unless it is not set and every study of the run is the generated demo
        study while a demo key is (`make ui`, `make demo`): a real study never gets the demo
        key, its run stops asking for its own.
        """
        own = os.environ.get(self.key_env_var) or os.environ.get(
            f"{self.key_env_var}{SECRET_ID_SUFFIX}"
        )
        demo_only = bool(studies) and set(studies) <= {DEMO_STUDY}
        if not own and demo_only and os.environ.get(self.demo_key_env_var):
            return self.demo_key_env_var
        return self.key_env_var

    def purpose(self) -> str:
        """What the key is for, for the one-line error when it cannot be provided."""
        return (
            "feature tables are pseudonymised with a keyed HMAC and are never written "
            f"without the study's key (make demo and make ui have a demo key for the "
            f"generated study {DEMO_STUDY} only)"
        )
