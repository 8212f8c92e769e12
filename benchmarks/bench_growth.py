"""Target 5 of `make bench`: the whole pipeline at 1x, 10x (and, with --full, 100x) the pilot.

Each scale is one delivery of SAS XPORT files with every pilot subject cloned (see
bench_scaling.py), landed and materialized from landing to features as a user would, on a
fresh lake. Reported: seconds per million delivered rows, and the peak resident memory of the
Dagster process (`clinical-platform`) and of the largest Spark driver JVM.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from bench_common import GIB, PILOT, PILOT_DELIVERY, PILOT_STUDY, Result, Timed, gib
from bench_pipeline import Delivered, Workspace, ours_whole
from bench_scaling import scaled_delivery


def measure(scratch: Path, scale: int, pilot: Path, log: Path) -> tuple[int, Timed]:
    """One land -> features run at `scale`; its lake is kept at `lake_of(scratch, scale)`."""
    folder = pilot if scale == 1 else scaled_delivery(pilot, scratch / f"x{scale}", scale)
    delivered = Delivered(folder, PILOT_STUDY, PILOT_DELIVERY)
    rows = delivered.rows
    print(f"  5. growth: {scale}x, {rows:,} rows", flush=True)
    timed = ours_whole(Workspace(scratch / f"growth-{scale}"), delivered, log, keep=True)
    print(f"    {timed.seconds:.1f}s, Dagster {gib(timed.root_peak)}, JVM {gib(timed.jvm_peak)}")
    if folder != pilot:
        shutil.rmtree(folder)
    return rows, timed


def lake_of(scratch: Path, scale: int) -> Path:
    """The lake a growth run left behind: raw, curated and features of the scaled delivery."""
    return scratch / f"growth-{scale}" / "run-01" / "lake"


def growth_results(
    scratch: Path, scales: list[int], pilot_runs: list[Timed], pilot: Path = PILOT
) -> list[Result]:
    """One row per larger scale for time per million rows and each peak, against 1x.

    At 1x the pilot runs of target 1 are reused when there are any (their median time and
    their highest peaks), so the pilot is not run again.
    """
    log = scratch / "logs" / "growth.log"
    measured: dict[int, tuple[int, Timed]] = {}
    pilot_rows = Delivered(pilot, PILOT_STUDY, PILOT_DELIVERY).rows
    if pilot_runs:
        middle = sorted(pilot_runs, key=lambda t: t.seconds)[len(pilot_runs) // 2]
        peaks = (max(t.root_peak for t in pilot_runs), max(t.jvm_peak for t in pilot_runs))
        measured[1] = (pilot_rows, Timed(middle.seconds, *peaks))
    for scale in scales:
        if scale not in measured:
            measured[scale] = measure(scratch, scale, pilot, log)
    rows_1, base = measured[1]
    results = []
    for scale in sorted(s for s in measured if s != 1):
        rows, timed = measured[scale]
        per_million = (base.seconds / rows_1 * 1e6, timed.seconds / rows * 1e6)
        note = (
            f"1x {rows_1:,} rows {base.seconds:.0f}s; {scale}x {rows:,} rows {timed.seconds:.0f}s"
        )
        results.append(
            Result(f"5. growth {scale}x: s per M rows", *per_million, 1.0, note, unit="s/M")
        )
        peaks = (
            ("Dagster", base.root_peak, timed.root_peak, "flat = at most 1.25x the 1x peak"),
            (
                "Spark driver",
                base.jvm_peak,
                timed.jvm_peak,
                "largest JVM of the run; -Xmx 2g (DEFAULT_CONF)",
            ),
        )
        results += [
            Result(
                f"5. growth {scale}x: peak RSS {process}",
                first / GIB,
                grown / GIB,
                1.25,
                why,
                unit="GiB",
            )
            for process, first, grown, why in peaks
        ]
    return results
