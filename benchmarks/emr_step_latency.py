"""How long after an EMR step reaches COMPLETED does Dagster record the asset materialized?

Runs `raw_dm` of a small generated delivery through `EmrStepLauncher` against a local moto
server, with the test harness's cluster player running each step's spark-submit here, and
measures, per run, the materialization event's timestamp minus the moment the player set the
step to COMPLETED (both wall clock, same machine). Target: median <= 2 s.

Baseline, measured in the same process on the same emulator: the same launcher polling
describe_step with plain exponential backoff (2 s doubling by 1.5 up to 20 s, the production
defaults) without the "job closed its Pipes channel" signal that switches the launcher to fast
polling near the end.

    .venv/bin/python benchmarks/emr_step_latency.py [--runs 5]

Not a test: it prints numbers and asserts nothing. Needs Java (Spark) and moto[server].
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

import dagster as dg  # noqa: E402

from clinical_platform.generators.sdtm import generate_sdtm  # noqa: E402
from clinical_platform.launchers.aws import S3Uri  # noqa: E402
from clinical_platform.launchers.emr import EmrStepLauncher  # noqa: E402
from clinical_platform.launchers.emr_cluster import (  # noqa: E402
    EmrClusterSpec,
    run_job_flow_request,
)
from clinical_platform_tests.helpers import land, materialize  # noqa: E402
from clinical_platform_tests.launchers.emulator import (  # noqa: E402
    FAKE_AWS_ENV,
    LOG_URI,
    REAL_AWS_ENV,
    REGION,
    STAGING_URI,
    AwsEmulator,
    ClusterPlayer,
    cancel_steps_installed,
    moto_server,
)
from spark_jobs.contracts.layout import Delivery  # noqa: E402

DELIVERY = Delivery("SYNTH01", "2024-01-15")


class BackoffOnlyLauncher(EmrStepLauncher):
    """The baseline: ignores the job's closed Pipes channel and just backs off."""

    def _wait(
        self,
        context: dg.AssetExecutionContext,
        emr: Any,
        cluster_id: str,
        step_id: str,
        finishing: Callable[[], bool],
    ) -> dict[str, Any]:
        return super()._wait(context, emr, cluster_id, step_id, lambda: False)


def measure(launcher: EmrStepLauncher, lake: Path, player: ClusterPlayer) -> float:
    """Seconds from the step's COMPLETED to the recorded materialization of raw_dm."""
    instance = dg.DagsterInstance.ephemeral()
    already = len(player.played)
    result = materialize(
        lake, DELIVERY, selection=["raw_dm"], instance=instance, resources={"spark": launcher}
    )
    if not result.success:
        raise SystemExit(f"benchmark run {result.run_id} failed; see the log above")
    step = player.played[already]
    recorded = [
        entry.timestamp
        for entry in instance.all_logs(result.run_id)
        if entry.dagster_event_type == dg.DagsterEventType.ASSET_MATERIALIZATION
    ]
    return recorded[0] - step.ended_at


def summary(delays: list[float]) -> str:
    ordered = sorted(delays)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return (
        f"median {statistics.median(ordered):.2f} s, p90 {p90:.2f} s "
        f"(runs: {', '.join(f'{d:.2f}' for d in delays)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per launcher setting")
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    for name in REAL_AWS_ENV:
        os.environ.pop(name, None)
    os.environ.update(FAKE_AWS_ENV)

    with (
        tempfile.TemporaryDirectory(prefix="emr-latency-") as scratch,
        moto_server() as aws,
        cancel_steps_installed(),
    ):
        os.environ["AWS_ENDPOINT_URL"] = aws.endpoint
        work = Path(scratch)
        generate_sdtm(work / "delivery", subjects=20)
        land(work / "delivery", DELIVERY, work / "lake")
        cluster_id = start_cluster(aws)
        player = ClusterPlayer(aws, work / "cluster")
        player.start()
        try:
            settings: dict[str, Any] = {
                "staging_uri": STAGING_URI,
                "cluster_id": cluster_id,
                "region": REGION,
                "endpoint_url": aws.endpoint,
            }
            adaptive, baseline = [], []
            for _ in range(args.runs):  # interleaved, so machine load hits both alike
                adaptive.append(measure(EmrStepLauncher(**settings), work / "lake", player))
                baseline.append(measure(BackoffOnlyLauncher(**settings), work / "lake", player))
        finally:
            player.stop()

    print("\nCOMPLETED -> materialization recorded (moto + cluster player, this machine)")
    print(f"  EmrStepLauncher (fast polling once the job closes Pipes): {summary(adaptive)}")
    print(f"  baseline, backoff only (2 s x1.5 up to 20 s):             {summary(baseline)}")
    ratio = statistics.median(baseline) / max(statistics.median(adaptive), 1e-3)
    print(f"  baseline median / launcher median: {ratio:.1f}x; target: launcher median <= 2 s")


def start_cluster(aws: AwsEmulator) -> str:
    aws.create_bucket()
    request = run_job_flow_request(EmrClusterSpec(log_uri=LOG_URI), S3Uri.parse(STAGING_URI))
    started = time.monotonic()
    cluster_id = aws.client("emr").run_job_flow(**request)["JobFlowId"]
    print(f"cluster {cluster_id} up in {time.monotonic() - started:.2f} s (emulated)")
    return cluster_id


if __name__ == "__main__":
    main()
