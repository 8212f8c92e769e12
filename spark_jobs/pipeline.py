"""Several stages of the same deliveries in one Spark application: landing -> raw -> curated ->
features without a JVM start, a session and a catalog per stage.

    spark-submit --py-files spark_jobs.zip pipeline.py \
        --stage "ingest --lake L --study S --delivery D --datasets dm,ae" \
        --stage "curate --lake L --study S --delivery D --datasets dm,ae" \
        --stage "features --lake L --study S --delivery D"

Each `--stage` is the command line of that stage's own entry point, run exactly as that job runs
it, in order, in this one session. The first stage reports as its own job would; the later ones
report as Pipes custom messages tagged with their stage (see `STAGE` in the protocol), which the
Dagster step of each stage replays. A stage that fails stops the later ones. A failing blocking
check of a single delivery stops a later stage only when that stage reads the blocked asset
(as Dagster skips only the assets downstream of it); a batch's next stage refuses such a
delivery on its own. Each stage ends with a message saying whether it succeeded, and why not.
"""

from __future__ import annotations

import argparse
import shlex
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from spark_jobs import curate, features, ingest
from spark_jobs.contracts.outputs import family_outputs
from spark_jobs.contracts.protocol import ZONE_OF_STAGE, EntryPoint
from spark_jobs.runtime.reporting import JobReporter
from spark_jobs.runtime.session import JobError, run_job

StageBody = Callable[[Any, JobReporter], None]
# Each stage's own argument parser and body; their order is the order stages may run in.
STAGES: dict[str, tuple[Callable[[Sequence[str]], Any], StageBody]] = {
    EntryPoint.INGEST: (ingest.parse_args, ingest.ingest),
    EntryPoint.CURATE: (curate.parse_args, curate.curate),
    EntryPoint.FEATURES: (features.parse_args, features.featurize),
}


@dataclass(frozen=True)
class Stage:
    name: str
    args: Any  # the stage's own parsed arguments (IngestArgs, CurateArgs, FeatureArgs)

    @property
    def single_delivery(self) -> bool:
        return len(self.args.batch) <= 1

    @property
    def reads(self) -> frozenset[str]:
        """The assets this stage's job reads: the declared inputs of the outputs it writes."""
        datasets = getattr(self.args, "datasets", None)  # features writes all of its outputs
        family = self.args.job.layout.family
        return frozenset(
            key
            for output in family_outputs(family, ZONE_OF_STAGE[self.name])
            if datasets is None or output.name in datasets
            for key in output.inputs
        )


def parse_args(argv: Sequence[str] | None = None) -> list[Stage]:
    parser = argparse.ArgumentParser(
        prog="pipeline.py", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument(
        "--stage",
        action="append",
        required=True,
        help="a stage's entry point and its own arguments, as one shell-quoted string",
    )
    ns = parser.parse_args(argv)
    stages: list[Stage] = []
    for text in ns.stage:
        words = shlex.split(text)
        if not words or words[0] not in STAGES:
            parser.error(f"--stage {text!r}: must start with one of {sorted(STAGES)}")
        parse, _ = STAGES[words[0]]
        stages.append(Stage(words[0], parse(words[1:])))
    order, names = list(STAGES), [s.name for s in stages]
    if len(set(names)) != len(names) or names != sorted(names, key=order.index):
        parser.error(f"stages must be distinct and in the order {order}")
    return stages


def stage_failure(name: str, error: Exception) -> str:
    """The one line the stage's own job would have exited with."""
    if isinstance(error, JobError):
        return f"{name}: {str(error).replace(chr(10), ' ')}"
    traceback.print_exc()
    last = traceback.format_exception_only(type(error), error)[-1].strip()
    return f"{name} failed unexpectedly: {last}"


def run_stages(stages: Sequence[Stage], reporter: JobReporter) -> None:
    """Every stage in order. The first failure stops the rest, and fails the application as it
    would have failed the stage's own job; a blocking check of one delivery stops the stages
    that read its asset (and the ones after them)."""
    stopped: str | None = None
    failed: str | None = None
    for index, stage in enumerate(stages):
        blocked = [
            f"{asset} {check}"
            for asset, check in reporter.blocking_failures
            if asset in stage.reads and stage.single_delivery
        ]
        if stopped is None and blocked:
            stopped = f"blocking check {', '.join(blocked)} failed"
        if stopped is not None:
            reporter.stage_ended(stage.name, f"{stage.name}: not run: {stopped}")
            continue
        with reporter.for_stage(stage.name if index else None):
            try:
                STAGES[stage.name][1](stage.args, reporter)
            except Exception as error:  # noqa: BLE001 - told to Dagster as this stage's failure
                failed = stage_failure(stage.name, error)
        reporter.stage_ended(stage.name, failed)
        if failed is not None:
            stopped = f"{stage.name} failed"
    if failed is not None:
        raise JobError(failed)


def main(argv: Sequence[str] | None = None) -> None:
    stages = parse_args(argv)
    run_job(EntryPoint.PIPELINE, lambda reporter: run_stages(stages, reporter))


if __name__ == "__main__":
    main()
