"""What a launcher and a Spark job agree on, importable without Spark on either side."""

from __future__ import annotations

from enum import StrEnum


class EntryPoint(StrEnum):
    """The `spark_jobs/<name>.py` scripts a launcher can submit."""

    INGEST = "ingest"
    CURATE = "curate"
    FEATURES = "features"
    QUERY = "query"  # `clinical-platform sql`
    MAINTAIN = "maintain"  # `clinical-platform retention`


# The launcher reads the last stderr line with this prefix as the one-line failure reason.
FAILURE_PREFIX = "SPARK_JOB_FAILURE: "
# Environment the launcher sets for the driver, recorded in every lineage record.
CODE_VERSION_ENV = "CLINICAL_CODE_VERSION"
GIT_SHA_ENV = "CLINICAL_GIT_SHA"
LAUNCHER_ENV = "CLINICAL_LAUNCHER"
# A secret reaches an EMR driver as `<NAME>_SECRET_ID`, a Secrets Manager id it resolves itself.
SECRET_ID_SUFFIX = "_SECRET_ID"
# The environment variable holding the pseudonym key, unless a deployment names another.
PSEUDONYM_KEY_ENV = "CLINICAL_PSEUDONYM_KEY"
