"""Several stages of a run in one Spark application, each still reported by its own step.

When a run selects raw, curated and features, the first selected stage's step starts one
application of the `pipeline` entry point for every selected stage: one JVM, one session, one
catalog instead of three. The graph, the steps and what each step shows stay as they were: the
application reports the later stages' results as messages tagged with their stage, this module
keeps them for the run (`stash`), and the later stage's step replays them (`replay`) as if it had
run its own job, blocking checks and failures included. A step that finds nothing kept (its run
was re-executed from that step, or it runs on another machine) runs its own application, which
is what it always did.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg

from clinical_platform.launchers.base import SparkRun, StagedMessage, replayed, with_metadata
from spark_jobs.contracts.protocol import BATCH_FAILURE, STAGE, STAGE_END

STASH_ROOT = Path(tempfile.gettempdir()) / "clinical-platform" / "stages"
STALE_AFTER_SECONDS = 24 * 3600  # a stash whose step never came (an upstream failure) is pruned


def stash_path(run_id: str, stage: str, root: Path = STASH_ROOT) -> Path:
    return root / run_id / f"{stage}.json"


def stage_ends(run: SparkRun) -> dict[str, str | None]:
    """Each finished stage and its failure (None: it succeeded)."""
    ends: dict[str, str | None] = {}
    for result in run.results:
        if isinstance(result, StagedMessage) and result.payload.get(STAGE_END):
            failure = result.payload.get(BATCH_FAILURE)
            ends[result.stage] = None if failure is None else str(failure)
    return ends


def unfinished(run: SparkRun, stage: str) -> str:
    return run.failure or f"the Spark application ended before stage {stage} finished"


def split(run: SparkRun, first: str, later: Sequence[str], run_id: str) -> SparkRun:
    """The first stage's share of a pipeline application's results; the later stages' shares are
    kept for their steps. The application's failure is the first stage's only if it failed."""
    ends = stage_ends(run)
    prune(STASH_ROOT)
    for stage in later:
        payloads = [
            dict(r.payload)
            for r in run.results
            if isinstance(r, StagedMessage) and r.stage == stage and not r.payload.get(STAGE_END)
        ]
        failure = ends[stage] if stage in ends else unfinished(run, stage)
        stash(stash_path(run_id, stage), payloads, failure, run)
    return SparkRun(
        results=[r for r in run.results if not isinstance(r, StagedMessage)],
        failure=ends[first] if first in ends else unfinished(run, first),
        details=run.details,
        provenance=run.provenance,
    )


def stash(
    path: Path, payloads: Sequence[Mapping[str, Any]], failure: str | None, run: SparkRun
) -> None:
    """Keep a later stage's messages for its step; written whole, then renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "payloads": [{k: v for k, v in p.items() if k != STAGE} for p in payloads],
        "failure": failure,
        "details": dg.serialize_value(dict(run.details)),
        "provenance": dg.serialize_value(dict(run.provenance)),
    }
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(record), encoding="utf-8")
    partial.replace(path)


def replay(context: dg.AssetExecutionContext, stage: str) -> SparkRun | None:
    """What this run's pipeline application reported for `stage`, as this step's results; None
    when no earlier step of the run ran it. The kept messages are removed once read."""
    path = stash_path(context.run.run_id, stage)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    path.unlink(missing_ok=True)
    provenance = dg.deserialize_value(record["provenance"], dict)
    context.log.info(f"Stage {stage} ran in this run's earlier Spark application; reporting it")
    return SparkRun(
        results=[with_metadata(r, provenance) for r in replayed(context, record["payloads"])],
        failure=record["failure"],
        details=dg.deserialize_value(record["details"], dict),
        provenance=provenance,
    )


def prune(root: Path) -> None:
    """Drop what earlier runs kept for steps that never ran (their upstream step failed)."""
    if not root.is_dir():
        return
    cutoff = time.time() - STALE_AFTER_SECONDS
    for folder in root.iterdir():
        try:
            if folder.stat().st_mtime < cutoff:
                for kept in folder.iterdir():
                    kept.unlink(missing_ok=True)
                folder.rmdir()
        except OSError:
            continue  # another process is pruning or writing it
