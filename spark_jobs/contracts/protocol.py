"""What a launcher and a Spark job agree on, importable without Spark on either side."""

from __future__ import annotations

# The launcher reads the last stderr line with this prefix as the one-line failure reason.
FAILURE_PREFIX = "SPARK_JOB_FAILURE: "
# Environment the launcher sets for the driver, recorded in every lineage record.
CODE_VERSION_ENV = "CLINICAL_CODE_VERSION"
GIT_SHA_ENV = "CLINICAL_GIT_SHA"
LAUNCHER_ENV = "CLINICAL_LAUNCHER"
