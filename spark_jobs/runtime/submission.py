"""Where the application runs, as only its launcher learns it: the EMR step id, or the EMR
Serverless job run id, and that step's or run's own logs.

A job cannot be given its step id in its arguments: the id exists only once the step is
submitted. So the launcher writes those facts as a small JSON object on S3 right after the
submission, at the URI it passed in `CLINICAL_SUBMISSION_URI`, and the job reads it once, the
first time it writes a lineage record (by then the object has long been there; the job waits a
little if not). Locally nothing is set and a record names the Spark application and its log.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

from spark_jobs.contracts.protocol import SUBMISSION_URI_ENV
from spark_jobs.storage.byte_ranges import s3_location

WAIT_S = 30.0

_lock = threading.Lock()
_read: dict[str, dict[str, str]] = {}


def submission_facts(wait_s: float = WAIT_S) -> dict[str, str]:
    """The launcher's facts about this application (empty when it left none to read)."""
    uri = os.environ.get(SUBMISSION_URI_ENV)
    if not uri:
        return {}
    with _lock:
        if uri not in _read:
            _read[uri] = _fetch(uri, wait_s)
        return dict(_read[uri])


def _fetch(uri: str, wait_s: float) -> dict[str, str]:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    location = s3_location(uri)
    if location is None:
        return {"submission": f"not readable at {uri} (not an S3 object)"}
    bucket, key = location
    client = boto3.client("s3")
    deadline = time.monotonic() + wait_s
    while True:
        try:
            body: Any = client.get_object(Bucket=bucket, Key=key)["Body"].read()
            return {str(k): str(v) for k, v in json.loads(body).items()}
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code not in ("NoSuchKey", "404") or time.monotonic() >= deadline:
                return {"submission": f"not readable at {uri} ({code or error})"}
        except (BotoCoreError, ValueError) as error:
            return {"submission": f"not readable at {uri} ({type(error).__name__})"}
        time.sleep(1.0)
