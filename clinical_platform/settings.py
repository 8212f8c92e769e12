"""Environment settings: the one switch between local and AWS, and where the lake is.

Read when resources are built or a command runs, never at import, so loading definitions has
no side effects.
"""

from __future__ import annotations

import os
from pathlib import Path

ENVIRONMENT_VAR = "CLINICAL_ENV"
LAKE_URI_VAR = "CLINICAL_LAKE_URI"
PSEUDONYM_KEY_VAR = "CLINICAL_PSEUDONYM_KEY"
DEFAULT_LAKE_URI = ".lake"
DEFAULT_DAGSTER_HOME = ".dagster"
ENVIRONMENTS = ("local", "aws")
# Used only by `make demo`/`make ui` on generated data; never for a real delivery.
DEMO_PSEUDONYM_KEY = "demo-key-not-for-real-data"


class SettingsError(ValueError):
    """A setting with a value the platform cannot use; the message says what to change."""


def environment() -> str:
    value = os.environ.get(ENVIRONMENT_VAR, "local").strip().lower()
    if value not in ENVIRONMENTS:
        raise SettingsError(f"{ENVIRONMENT_VAR}={value!r} is not one of {', '.join(ENVIRONMENTS)}")
    return value


def lake_uri() -> str:
    return os.environ.get(LAKE_URI_VAR, DEFAULT_LAKE_URI)


def dagster_home() -> Path:
    """The Dagster instance directory shared by the CLI and `make ui`."""
    return Path(os.environ.get("DAGSTER_HOME") or DEFAULT_DAGSTER_HOME).resolve()
