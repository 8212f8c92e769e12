"""The sensor and omics families at scale: our pipeline (landing -> raw -> curated -> features,
every rule, check and lineage record, one Spark application) against a bare PySpark script of
the same aggregation (`bare_families.py`), both through our launcher's spark-submit command.

    make bench-families                      # sensor, 1,000 subject-days (86.4M readings)
    python benchmarks/bench_families.py omics --samples 1000 --genes 20000

Prints rows per second per core for both and their ratio; the ratio is what compares, since
these machines' speed varies from day to day. Every check of our run must pass (the sensor's
quarantine warning aside) and its features must have one row per subject-day (sensor) or per
passing sample and top gene (omics); the benchmark fails when the features' lineage record is not
`accepted`.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import PSEUDONYM_KEY, ROOT, Timed, gib, machine, run_timed
from bench_pipeline import bare_command, submit

from clinical_platform.generators.omics import generate_omics
from clinical_platform.generators.sensor import generate_sensor
from clinical_platform.lake import land_delivery, read_lineage
from spark_jobs.contracts.layout import Delivery, LakeLayout

STUDY = {"sensor": "SENSOR01", "omics": "OMICS01"}
DELIVERY = "2024-03-01"
BARE_SCRIPT = ROOT / "benchmarks" / "bare_families.py"


def generate(family: str, args: argparse.Namespace, folder: Path) -> int:
    """Write the delivery; its row count."""
    if family == "sensor":
        subjects = math.ceil(args.subject_days / args.days)
        return generate_sensor(folder, subjects, args.days, study=STUDY[family]).rows
    return generate_omics(folder, args.samples, args.genes, batches=1, study=STUDY[family]).rows


def ours(family: str, lake: Path, log: Path) -> Timed:
    layout = LakeLayout(str(lake), family=family)
    common = f"--lake {layout.root} --family {family} --study {STUDY[family]} --delivery {DELIVERY}"
    stages = [
        f"ingest {common} --run-id bench",
        f"curate {common} --run-id bench",
        f"features {common} --run-id bench",
    ]
    command, env = submit(lake, "pipeline", [a for s in stages for a in ("--stage", s)])
    return run_timed(command, {**env, "CLINICAL_PSEUDONYM_KEY": PSEUDONYM_KEY}, log)


def bare(family: str, lake: Path, folder: Path, out: Path, log: Path) -> Timed:
    command, env = bare_command(lake, [family, "--folder", str(folder), "--out", str(out)])
    script = command.index(str(ROOT / "benchmarks" / "bare_pipeline.py"))
    command[script] = str(BARE_SCRIPT)
    return run_timed(command, env, log)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("family", choices=("sensor", "omics"), nargs="?", default="sensor")
    parser.add_argument("--subject-days", type=int, default=1000, help="sensor: subject-days")
    parser.add_argument("--days", type=int, default=10, help="sensor: days per subject")
    parser.add_argument("--samples", type=int, default=1000, help="omics: samples")
    parser.add_argument("--genes", type=int, default=20_000, help="omics: genes")
    parser.add_argument("--scratch", type=Path, help="working folder (default: a temporary one)")
    args = parser.parse_args()
    family = args.family
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix=f"bench-{family}-"))
    folder, log = scratch / "delivery", scratch / "bench.log"
    print(f"{machine()}; generating the {family} delivery ...", flush=True)
    rows = generate(family, args, folder)
    size = sum(p.stat().st_size for p in folder.iterdir())
    lake = scratch / "lake"
    land_delivery(folder, Delivery(STUDY[family], DELIVERY), LakeLayout(str(lake), family=family))
    try:
        baseline = bare(family, scratch / "bare-lake", folder, scratch / "bare-out", log)
        timed = ours(family, lake, log)
    finally:
        shutil.rmtree(scratch / "bare-out", ignore_errors=True)
    feature = "sensor_daily" if family == "sensor" else "omics_top_genes"
    layout = LakeLayout(str(lake), family=family)
    record = read_lineage(layout, "features", feature, Delivery(STUDY[family], DELIVERY))
    accepted = record is not None and record.get("status") == "accepted"
    cores = len(os.sched_getaffinity(0))
    print(f"{family}: {rows:,} rows, {gib(size)} landed, {cores} cores")
    print("| run | seconds | rows/s/core | JVM peak RSS |")
    print("|---|---:|---:|---:|")
    for name, run in (("bare PySpark (baseline)", baseline), ("our pipeline", timed)):
        print(
            f"| {name} | {run.seconds:.1f} | {rows / run.seconds / cores:,.0f} | "
            f"{gib(run.jvm_peak)} |"
        )
    print(f"ours / bare: {timed.seconds / baseline.seconds:.2f} (log {log})")
    out = record["rows"]["out"] if record else 0
    print(f"features_{feature}: {out:,} rows, {'PASS' if accepted else 'FAIL: not committed'}")
    return 0 if accepted else 1


if __name__ == "__main__":
    raise SystemExit(main())
