"""`make bench`: every target of issue 17 in one table, each a ratio of paired runs.

    .venv/bin/python benchmarks/bench.py [--quick] [--pairs 3] [--budget-min 28] [--full]
        [--only latency,orchestration,growth,checks] [--output docs/benchmarks.md]

Targets (ratio = ours / baseline, medians of up to `--pairs` paired runs measured here, now):
  1. land -> features of the CDISC pilot vs a bare PySpark script of the same stages (<= 1.5);
     the 120-subject demo delivery is reported alongside (1b, run last);
  2. `clinical-platform materialize --select 'raw_*'` vs spark-submit of ingest.py (<= 1.1);
  5. 1x -> 10x (100x with --full): seconds per million rows must not rise, peak memory of the
     Dagster process and of the Spark driver must stay flat (<= 1.25x);
  3. curation with every rule vs with the row rules off, at 10x pilot volume (<= 1.3), on the
     lake the 10x growth run left;
  4. ours vs the rules-off curation plus a cuallee validation pass, at 10x (<= 0.8), and
     cuallee's failing rows per rule equal to ours on a broken copy of the pilot.
Every target gets its first pair; further pairs only while the run fits `--budget-min` (each
target has a share of it; the notes say how many pairs each row got). `--full` lifts the
budget. Seconds vary with the machine's load: read the ratios; never assert on seconds.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

# Dagster's beta/preview notices on importing our definitions are not the benchmark's news.
warnings.filterwarnings("ignore")

from bench_common import (  # noqa: E402
    PILOT,
    PILOT_DELIVERY,
    PILOT_STUDY,
    ROOT,
    Budget,
    Result,
    Timed,
    machine,
)
from bench_growth import growth_results, lake_of  # noqa: E402
from bench_pipeline import (  # noqa: E402
    Delivered,
    demo_delivery,
    latency_result,
    orchestration_result,
)

TARGETS = ("latency", "orchestration", "checks", "growth")
T = TypeVar("T")


def checks_results(
    scratch: Path, scale: int, pairs: int, seconds: float, lake: Path | None
) -> tuple[list[Result], list[str]]:
    """Targets 3 and 4, in a process of their own so their Spark session ends with them."""
    out = scratch / "checks.json"
    print(f"  3./4. checks at {scale}x (one Spark session)", flush=True)
    options = ["--scale", str(scale), "--pairs", str(pairs), "--seconds", f"{seconds:.0f}"]
    options += ["--json", str(out)]
    options += ["--lake", str(lake)] if lake else []
    log = scratch / "logs" / "checks.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as spark_log:  # Spark's own warnings; progress goes to stdout
        finished = subprocess.run(
            [sys.executable, str(ROOT / "benchmarks" / "bench_checks.py"), *options],
            stderr=spark_log,
            check=False,
        )
    if finished.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise RuntimeError(f"bench_checks.py exited {finished.returncode}:\n{tail}")
    return checks_rows(json.loads(out.read_text()))


def checks_rows(found: dict[str, Any]) -> tuple[list[Result], list[str]]:
    rounds = len(found["samples"]["ours"])
    rows = f"{found['scale']}x VS+LB, {found['rows']:,} raw rows; {rounds} round(s)"
    agreement = found["correctness"]
    agree = "PASS" if agreement["agree"] else "FAIL"
    results = [
        Result(
            "3. checks' own cost: all rules vs rules off", found["off"], found["ours"], 1.3, rows
        ),
        Result(
            "4. vs cuallee: ours vs rules off + cuallee pass",
            found["off_plus_cuallee"],
            found["ours"],
            0.8,
            rows,
        ),
        Result(
            f"4b. cuallee's failing rows per rule = ours: {agree}",
            None,
            None,
            None,
            f"{agreement['failing_rules']} rules failing on the broken pilot; table below",
        ),
    ]
    details = [
        "Failing rows per rule on the broken pilot (" + "; ".join(agreement["broken"]) + "):",
        "",
        "| dataset.rule | ours | cuallee |",
        "|---|---:|---:|",
        *[f"| {r['rule']} | {r['ours']} | {r['cuallee']} |" for r in agreement["rules"]],
    ]
    return results, details


def cell(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return f"{value:.2f} {unit}" if unit != "s" else f"{value:.1f} s"


def table(results: list[Result], header: str, pairs: int) -> list[str]:
    lines = [
        f"Machine: {header}. Medians of {pairs} paired run(s) per target.",
        "",
        "| target | baseline | ours | ratio | target | result | notes |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    for r in results:
        ratio = "-" if r.ratio is None else f"{r.ratio:.2f}"
        limit = "report" if r.limit is None else f"<= {r.limit:g}"
        lines.append(
            f"| {r.target} | {cell(r.baseline, r.unit)} | {cell(r.ours, r.unit)} | {ratio} "
            f"| {limit} | {r.verdict} | {r.note} |"
        )
    return lines


# Cumulative shares of the time budget by which each target must be done, in run order.
SHARES = {"latency": 0.36, "orchestration": 0.47, "growth": 0.63, "checks": 0.93, "demo": 1.0}
CORRECTNESS_SECONDS = 120  # the broken-pilot comparison that precedes the checks' rounds


def run_targets(
    scratch: Path, ns: argparse.Namespace, pairs: int, budget: Budget
) -> tuple[list[Result], list[str]]:
    """Every selected target, in the order of SHARES."""
    only = set(ns.only.split(","))
    pilot = Delivered(PILOT, PILOT_STUDY, PILOT_DELIVERY)
    results: list[Result] = []
    details: list[str] = []
    pilot_runs: list[Timed] = []

    def allows(target: str) -> Callable[[float], bool]:
        return lambda seconds: budget.allows(SHARES[target], seconds)

    if "latency" in only:
        found = guarded(
            "1. latency",
            lambda: latency_result(scratch, pilot, pairs, allows("latency"), demo=False),
        )
        if found:
            results.append(found[0])
            pilot_runs = found[1]
        else:
            results.append(failed_row("1. latency: CDISC pilot"))
    if "orchestration" in only:
        found = guarded(
            "2. orchestration",
            lambda: orchestration_result(scratch, pilot, pairs, allows("orchestration")),
        )
        results.append(found or failed_row("2. orchestration overhead"))
    lake = None
    if "growth" in only:
        scales = [1, ns.scale, 100] if ns.full else [1, ns.scale]
        grown = guarded("5. growth", lambda: growth_results(scratch, scales, pilot_runs))
        results += grown or [failed_row("5. growth")]
        lake = lake_of(scratch, ns.scale) if grown else None
    if "checks" in only:
        seconds = budget.deadline(SHARES["checks"]) - time.monotonic() - CORRECTNESS_SECONDS
        checked = guarded(
            "3./4. checks",
            lambda: checks_results(scratch, ns.scale, pairs, max(seconds, 1.0), lake),
        )
        results += checked[0] if checked else [failed_row("3./4. checks")]
        details = checked[1] if checked else []
    if "latency" in only:
        demo = guarded(
            "1b. demo",
            lambda: latency_result(
                scratch, demo_delivery(scratch), pairs, allows("demo"), demo=True
            ),
        )
        results.append(demo[0] if demo else failed_row("1b. latency: 120-subject demo"))
    return results, details


FAILURES: list[str] = []


def guarded(name: str, measure: Callable[[], T]) -> T | None:
    """A target that fails becomes a FAIL row with its error; the others still run."""
    try:
        return measure()
    except Exception as error:  # noqa: BLE001 - reported in the table and below it
        FAILURES.append(f"{name}: {error}")
        print(f"  {name} failed: {error}", flush=True)
        return None


def failed_row(name: str) -> Result:
    return Result(name, None, None, 0.0, "the run failed; error below the table")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one pair per target")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--only", default=",".join(TARGETS), help=",".join(TARGETS))
    parser.add_argument("--full", action="store_true", help="growth at 100x too (slow)")
    parser.add_argument("--scale", type=int, default=10, help="of targets 3-5 (dev: smaller)")
    parser.add_argument(
        "--budget-min", type=float, default=26, help="wall time to fit pairs into; 0: no limit"
    )
    parser.add_argument("--output", help="markdown file to write the table into")
    ns = parser.parse_args()
    pairs = 1 if ns.quick else ns.pairs
    header = machine()
    budget = Budget(0 if ns.full else ns.budget_min)
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        results, details = run_targets(Path(tmp), ns, pairs, budget)
    minutes = (time.monotonic() - budget.start) / 60
    lines = table(results, header, pairs)
    mode = " (--quick)" if ns.quick else ""
    lines += ["", f"Total wall time: {minutes:.1f} min{mode}, budget {ns.budget_min:g} min."]
    if not ns.full and "growth" in set(ns.only.split(",")):
        lines.append("Growth at 100x was not run: it needs --full (see below).")
    if FAILURES:
        lines += ["", "Errors:", *[f"- {failure}" for failure in FAILURES]]
    if details:
        lines += ["", *details]
    print("\n".join(lines))
    if ns.output:
        write_output(Path(ns.output), lines)
    return 0


def write_output(path: Path, lines: list[str]) -> None:
    """Replace the table between the markers of the file, or write the file if it has none."""
    start, end = "<!-- bench:start -->", "<!-- bench:end -->"
    block = "\n".join([start, *lines, end])
    text = path.read_text() if path.exists() else ""
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = (text + "\n\n" if text else "") + block + "\n"
    path.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
