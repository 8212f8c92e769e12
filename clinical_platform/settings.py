"""Environment settings: which deployment runs Spark, where the lake is, the Dagster home.

Read when definitions are built or a command runs, never at import, so loading definitions has
no side effects and tests can build any environment's resources side by side.
"""

from __future__ import annotations

import os
from pathlib import Path

from spark_jobs.contracts.protocol import PSEUDONYM_KEY_ENV

ENVIRONMENT_VAR = "CLINICAL_ENV"
LAKE_URI_VAR = "CLINICAL_LAKE_URI"
CATALOG_VAR = "CLINICAL_CATALOG"  # sqlite (default) or glue
CATALOG_DB_VAR = "CLINICAL_CATALOG_DB"  # the SQLite file; default under a local lake
PSEUDONYM_KEY_VAR = PSEUDONYM_KEY_ENV
# Seconds a delivery without a manifest must stay unchanged before the sensor takes it.
QUIET_PERIOD_VAR = "CLINICAL_LANDING_QUIET_SECONDS"
DEFAULT_LAKE_URI = ".lake"
DEFAULT_DAGSTER_HOME = ".dagster"
LOCAL = "local"
AWS_EMR_STEPS = "aws-emr-steps"
AWS_EMR_SERVERLESS = "aws-emr-serverless"
ENVIRONMENTS = (LOCAL, AWS_EMR_STEPS, AWS_EMR_SERVERLESS)
# `aws` was the only AWS environment before EMR Serverless could be chosen; it still means steps.
ALIASES = {"aws": AWS_EMR_STEPS}
# Used only by `make demo`/`make ui`, and only for the generated demo study: they set it in
# DEMO_PSEUDONYM_KEY_VAR (never in PSEUDONYM_KEY_VAR), and the features of any other study
# still need the study's own key (`Pseudonymization.key_env_for`).
DEMO_PSEUDONYM_KEY = "demo-key-not-for-real-data"
DEMO_PSEUDONYM_KEY_VAR = "CLINICAL_DEMO_PSEUDONYM_KEY"
DEMO_STUDY = "SYNTH01"  # what `clinical-platform generate sdtm` and `make demo` generate


class SettingsError(ValueError):
    """A setting with a value the platform cannot use; the message says what to change."""


def environment(value: str | None = None) -> str:
    """The deployment: `CLINICAL_ENV` (default local), an alias resolved."""
    raw = value if value is not None else os.environ.get(ENVIRONMENT_VAR, LOCAL)
    name = ALIASES.get(raw.strip().lower(), raw.strip().lower())
    if name not in ENVIRONMENTS:
        raise SettingsError(f"{ENVIRONMENT_VAR}={raw!r} is not one of {', '.join(ENVIRONMENTS)}")
    return name


def lake_uri() -> str:
    return os.environ.get(LAKE_URI_VAR) or DEFAULT_LAKE_URI


def catalog_kind() -> str:
    value = (os.environ.get(CATALOG_VAR) or "sqlite").strip().lower()
    if value not in ("sqlite", "glue"):
        raise SettingsError(f"{CATALOG_VAR}={value!r} is not one of sqlite, glue")
    return value


def optional(name: str) -> str | None:
    """A per-deployment setting that may be left unset."""
    return os.environ.get(name) or None


def dagster_home() -> Path:
    """The Dagster instance directory shared by the CLI and `make ui`."""
    return Path(os.environ.get("DAGSTER_HOME") or DEFAULT_DAGSTER_HOME).resolve()
