"""A multi-gigabyte SAS XPORT file ingested with the Spark driver's heap at 1 GB (issue 15).

    .venv/bin/python benchmarks/bench_large_xpt.py [--gib 2] [--heap 1g] [--scratch DIR]

The pilot's vs.xpt with every subject cloned until the file reaches `--gib` GiB, landed as a
delivery of its own and ingested by `spark-submit` of our ingest job with the command our
local launcher builds, except `spark.driver.memory`. In local mode the tasks run in the
driver's JVM, so the heap bounds the whole ingest; each task decodes one byte range of the
file (fixed-length XPORT rows), never the whole file.

Prints the file's size and rows, the ingest's seconds and rows per second, the JVM's peak
resident memory, and, as the baseline measured in the same run, the pilot's own vs.xpt
ingested the same way: the ratio of seconds per million rows (large / pilot) says whether the
time grows in proportion to the data. PASS when the large ingest succeeds with every row.
"""

from __future__ import annotations

import argparse
import math
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_common import CLI, PILOT, Timed, gib, machine, run_timed  # noqa: E402
from bench_pipeline import Delivered, Workspace, land, submit, xpt_rows  # noqa: E402
from bench_scaling import scaled_delivery  # noqa: E402

from spark_jobs.contracts.layout import LakeLayout  # noqa: E402

STUDY, DELIVERY = "BIGXPT01", "2024-01-15"


@dataclass(frozen=True)
class Ingested:
    size: int
    rows: int
    timed: Timed
    raw_rows: int

    @property
    def seconds_per_million(self) -> float:
        return self.timed.seconds / (self.rows / 1e6)


def ingest_vs(workspace: Workspace, folder: Path, heap: str, log: Path) -> Ingested:
    """Land `folder` and ingest its vs.xpt with `heap` for the driver; count what raw holds."""
    run_dir, env = workspace.fresh()
    lake = run_dir / "lake"
    land(Delivered(folder, STUDY, DELIVERY), lake, env, log)
    arguments = [
        *["--lake", LakeLayout(str(lake)).root, "--study", STUDY, "--delivery", DELIVERY],
        *["--run-id", "bench-large-xpt", "--datasets", "vs"],
    ]
    command, spark_env = submit(lake, "ingest", arguments, {"spark.driver.memory": heap})
    timed = run_timed(command, spark_env, log)
    counted = subprocess.run(
        [str(CLI), "sql", "select count(*) from raw.clinical_vs", "--format", "csv"],
        env={**env, "CLINICAL_LAKE_URI": str(lake)},
        capture_output=True,
        text=True,
        check=True,
    )
    file = folder / "vs.xpt"
    return Ingested(file.stat().st_size, xpt_rows(file), timed, int(counted.stdout.split()[-1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--gib", type=float, default=2.0, help="size of the large file")
    parser.add_argument("--heap", default="1g", help="spark.driver.memory of the ingest")
    parser.add_argument("--scratch", type=Path, help="working folder (default: a temporary one)")
    args = parser.parse_args()
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="bench-large-xpt-"))
    workspace, log = Workspace(scratch / "runs"), scratch / "bench.log"
    pilot_folder = scaled_delivery(PILOT, scratch / "pilot", 1, names=("vs.xpt",))
    scale = math.ceil(args.gib * 2**30 / (PILOT / "vs.xpt").stat().st_size)
    print(f"{machine()}; writing vs.xpt at {scale}x the pilot ...", flush=True)
    large_folder = scaled_delivery(PILOT, scratch / "large", scale, names=("vs.xpt",))
    try:
        pilot = ingest_vs(workspace, pilot_folder, args.heap, log)
        large = ingest_vs(workspace, large_folder, args.heap, log)
    finally:
        shutil.rmtree(scratch / "large", ignore_errors=True)
    ratio = large.seconds_per_million / pilot.seconds_per_million
    passed = large.raw_rows == large.rows and pilot.raw_rows == pilot.rows
    print("| file | size | rows | ingest | rows/s | JVM peak RSS | driver heap |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, run in (("pilot vs.xpt (baseline)", pilot), (f"vs.xpt x{scale}", large)):
        print(
            f"| {name} | {gib(run.size)} | {run.rows:,} | {run.timed.seconds:.1f} s | "
            f"{run.rows / run.timed.seconds:,.0f} | {gib(run.timed.jvm_peak)} | {args.heap} |"
        )
    print(
        f"s per M rows, large / pilot: {ratio:.2f}; raw rows {large.raw_rows:,} of "
        f"{large.rows:,}: {'PASS' if passed else 'FAIL'} (log {log})"
    )
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
