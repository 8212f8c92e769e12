"""What a launcher and a Spark job agree on, importable without Spark on either side."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from spark_jobs.contracts.layout import Zone


class EntryPoint(StrEnum):
    """The `spark_jobs/<name>.py` scripts a launcher can submit."""

    INGEST = "ingest"
    CURATE = "curate"
    FEATURES = "features"
    PIPELINE = "pipeline"  # several of the stages above in one application
    QUERY = "query"  # `clinical-platform sql`
    MAINTAIN = "maintain"  # `clinical-platform retention`


# The stage that writes each zone below landing (one Spark job per zone).
STAGE_OF_ZONE: dict[Zone, EntryPoint] = {
    Zone.RAW: EntryPoint.INGEST,
    Zone.CURATED: EntryPoint.CURATE,
    Zone.FEATURES: EntryPoint.FEATURES,
}
ZONE_OF_STAGE: dict[str, Zone] = {stage: zone for zone, stage in STAGE_OF_ZONE.items()}


# The launcher reads the last stderr line with this prefix as the one-line failure reason.
FAILURE_PREFIX = "SPARK_JOB_FAILURE: "
# Environment the launcher sets for the driver, recorded in every lineage record.
CODE_VERSION_ENV = "CLINICAL_CODE_VERSION"
GIT_SHA_ENV = "CLINICAL_GIT_SHA"
LAUNCHER_ENV = "CLINICAL_LAUNCHER"
# Who started the run: "user:NAME", "sensor:NAME", "schedule:NAME", "cli:OS_USER", ... (no
# spaces: on EMR Serverless it travels inside one whitespace-split parameter string).
STARTED_BY_ENV = "CLINICAL_STARTED_BY"
# Where the application's logs go: the Spark log file locally, the cluster's step logs on EMR.
LOG_LOCATION_ENV = "CLINICAL_LOG_LOCATION"
# Where a launcher on AWS writes, right after submitting, which EMR step or EMR Serverless job
# run the application is (a JSON object on S3: ids it only learns from the submission itself);
# each lineage record carries those facts.
SUBMISSION_URI_ENV = "CLINICAL_SUBMISSION_URI"
# A secret reaches an EMR driver as `<NAME>_SECRET_ID`, a Secrets Manager id it resolves itself.
SECRET_ID_SUFFIX = "_SECRET_ID"
# The environment variable holding the pseudonym key, unless a deployment names another.
PSEUDONYM_KEY_ENV = "CLINICAL_PSEUDONYM_KEY"
# A job given several deliveries (`--deliveries S/D1,S/D2`) reports each delivery's results as a
# Pipes custom message, since Pipes takes one materialization per asset and knows no partition:
# {BATCH_PARTITION: "S/D1", BATCH_MESSAGE: <a Pipes report_asset_materialization or
# report_asset_check message>}, and {BATCH_PARTITION: "S/D1", BATCH_FAILURE: "<one line>"} for a
# delivery that failed.
BATCH_PARTITION = "partition"
BATCH_MESSAGE = "message"
BATCH_FAILURE = "failure"
# The pipeline entry point runs several stages in one application. Its first stage reports as
# that stage's own job does; every later stage's results are custom messages
# {STAGE: "curate", BATCH_MESSAGE: <Pipes message>} (with BATCH_PARTITION in a batch, and
# BATCH_FAILURE for a delivery that failed), which the Dagster step of that stage replays. Each
# stage ends with {STAGE: "curate", STAGE_END: True, BATCH_FAILURE: "<one line>" or None}.
STAGE = "stage"
STAGE_END = "stage_end"


def record_text(record: Mapping[str, Any]) -> str:
    """A lineage record as `system.lineage` stores it: JSON with sorted keys."""
    return json.dumps(record, sort_keys=True, default=str)


def record_sha256(record: Mapping[str, Any]) -> str:
    """The sha256 a lineage record is committed with, and that `verify` recomputes."""
    return hashlib.sha256(record_text(record).encode("utf-8")).hexdigest()
