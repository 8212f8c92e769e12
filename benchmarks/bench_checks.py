"""Targets 3 and 4 of `make bench`: what the checks themselves cost, and cuallee instead.

    .venv/bin/python benchmarks/bench_checks.py --scale 10 --pairs 3 --json out.json \
        [--lake <a lake with raw at 10x, as the growth run leaves it>] [--seconds N]

One Spark session with our launcher's settings (driver memory, JIT options, catalog), one
lake. First a deliberately broken copy of the pilot's VS and LB is curated by us and
validated by cuallee, and the failing rows per rule are compared (this also warms the JVM for
what follows). Then VS and LB at `scale` times the pilot (subjects cloned, as
curate_overhead.py does; or the growth run's lake) are curated in rounds of three, in
rotating order:
  off:     the real curation with every row rule's effect set to off (the contract a study
           could configure): the same conforming, duplicate collapse, writes, reconciliation;
  ours:    the real curation, every rule, quarantine with reasons, reconciliation;
  cuallee: after `off` has written, a separate validation pass with cuallee's pyspark
           backend: re-read raw, the same conforming, then `satisfies` with the same rule
           SQL our rules generate (spark_jobs/quality/rule_sql.py), so the rule set is equal.
Target 3 = ours / off (<= 1.3); target 4 = ours / (off + cuallee) (<= 0.8).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench_common import PILOT, PILOT_STUDY, median
from bench_scaling import break_pilot, build_raw, product_session
from cuallee import Check, CheckLevel
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from spark_jobs.contracts import DatasetContract, Effect, contract_for
from spark_jobs.contracts.layout import Delivery, LakeLayout, Zone
from spark_jobs.contracts.outputs import output
from spark_jobs.curate import CurateArgs, DatasetCuration, dm_reference
from spark_jobs.quality.conform import conform_types, parse_dates
from spark_jobs.quality.evaluate import (
    ROW_RULE_KINDS,
    collapse_duplicates,
    mark_subjects_in_dm,
    rule_items,
    with_row_identity,
)
from spark_jobs.quality.rule_sql import EvaluationContext
from spark_jobs.runtime.arguments import DeliveryArgs
from spark_jobs.runtime.reporting import CheckOutcome, JobReporter
from spark_jobs.storage.tables import LakeTables, delivered

Datasets = tuple[str, ...]
SCALED = Delivery(PILOT_STUDY, "2024-01-15")
BROKEN = Delivery(PILOT_STUDY, "2023-12-01")
BROKEN_DATASETS = ("vs", "lb")
TIMED_DATASETS = ("vs", "lb")  # the volume; DM (306 rows at 1x) is only their reference
TODAY = dt.date(2026, 1, 1)


class CountingReporter(JobReporter):
    """Keeps each rule's failing-row count (`vs.iso8601`), as Dagster shows it on the check."""

    def __init__(self, dataset: str) -> None:
        super().__init__(None)
        self.dataset = dataset
        self.failing: dict[str, int] = {}

    def checks(self, asset_key: str, outcomes: Iterable[CheckOutcome]) -> None:
        for outcome in outcomes:
            if "failing_rows" in outcome.metadata:
                failing = int(outcome.metadata["failing_rows"])
                self.failing[f"{self.dataset}.{outcome.name}"] = failing


def rules_off(contract: DatasetContract) -> DatasetContract:
    """The contract with every row rule switched off, as a study's configuration can."""
    rules = tuple(
        replace(r, effect=Effect.OFF) if r.kind in ROW_RULE_KINDS else r for r in contract.rules
    )
    return replace(contract, rules=rules)


def curation(
    spark: SparkSession, lake: LakeLayout, delivery: Delivery, run: str, datasets: Datasets
) -> tuple[CurateArgs, LakeTables, EvaluationContext]:
    args = CurateArgs(DeliveryArgs(lake, delivery, run, False), datasets, TODAY)
    tables = LakeTables(spark, lake, run)
    return args, tables, dm_reference(spark, tables, args)


def curate(
    spark: SparkSession, lake: LakeLayout, delivery: Delivery, run: str, *, checks: bool
) -> dict[str, int]:
    """Our curation of the datasets, in process as the curate job runs it."""
    datasets = BROKEN_DATASETS if delivery == BROKEN else TIMED_DATASETS
    args, tables, context = curation(spark, lake, delivery, run, datasets)
    failing: dict[str, int] = {}
    for name in datasets:
        contract = contract_for(name, delivery.study)
        chosen = contract if checks else rules_off(contract)
        reporter = CountingReporter(name)
        DatasetCuration(spark, args, reporter, chosen, tables, context).run()
        failing |= reporter.failing
    return failing


def conformed(
    tables: LakeTables, contract: DatasetContract, delivery: Delivery, context: EvaluationContext
) -> tuple[DataFrame, dict[str, str]]:
    """Raw conformed as our evaluation does before its rules: typed, duplicates collapsed,
    key multiplicity and DM membership known, dates parsed."""
    raw_out = output(Zone.RAW, contract.name)
    record = tables.committed_record(raw_out, delivery)
    assert record is not None
    raw = delivered(
        tables.read(raw_out, delivery), [(c["name"], c["type"]) for c in record["schema"]]
    )
    data = [c for c in raw.columns if not c.startswith("_")]
    source_types = {f.name: f.dataType.simpleString() for f in raw.schema.fields if f.name in data}
    df = with_row_identity(conform_types(raw, contract, source_types), contract)
    df = collapse_duplicates(df.repartition(*contract.natural_key), contract)
    df = df.withColumn(
        "__key_rows", F.count(F.lit(1)).over(Window.partitionBy(*contract.natural_key))
    )
    return parse_dates(mark_subjects_in_dm(df, contract, context), contract), source_types


def cuallee_validation(
    spark: SparkSession, lake: LakeLayout, delivery: Delivery, run: str
) -> dict[str, int]:
    """cuallee's pyspark backend over every dataset: violations per rule of our rule set."""
    datasets = BROKEN_DATASETS if delivery == BROKEN else TIMED_DATASETS
    _, tables, context = curation(spark, lake, delivery, run, datasets)
    violations: dict[str, int] = {}
    for name in datasets:
        contract = contract_for(name, delivery.study)
        frame, source_types = conformed(tables, contract, delivery, context)
        check = Check(CheckLevel.WARNING, f"bench_{name}")
        rules = list(rule_items(contract, source_types, context).items())
        for rule, pairs in rules:
            failing = " OR ".join(f"coalesce({c}, false)" for c, _ in pairs) or "false"
            # The rule's name in the predicate keeps two rules with equal SQL apart.
            check.satisfies("USUBJID", f"NOT ({failing}) OR '{rule}' IS NULL")
        rows = check.validate(frame).orderBy("id").collect()
        found = zip(rules, rows, strict=True)
        violations |= {f"{name}.{rule}": int(row["violations"]) for (rule, _), row in found}
    return violations


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def correctness(spark: SparkSession, lake: LakeLayout, pilot: Path) -> dict[str, Any]:
    """Ours vs cuallee on a broken copy of the pilot: failing rows per rule must be equal."""
    build_raw(spark, pilot, lake, BROKEN, 1)
    broken = break_pilot(spark, lake, BROKEN)
    ours = curate(spark, lake, BROKEN, "bench-broken", checks=True)
    theirs = cuallee_validation(spark, lake, BROKEN, "bench-broken-cuallee")
    rules = sorted(set(ours) | set(theirs))
    table = [{"rule": r, "ours": ours.get(r), "cuallee": theirs.get(r)} for r in rules]
    failing = [row for row in table if row["ours"]]
    return {
        "broken": broken,
        "rules": table,
        "agree": all(row["ours"] == row["cuallee"] for row in table) and len(failing) >= 3,
        "failing_rules": len(failing),
    }


def rounds(
    spark: SparkSession, lake: LakeLayout, pairs: int, seconds: float
) -> dict[str, list[float]]:
    """Up to `pairs` rounds; another only while it would end within `seconds` (0: no limit)."""
    samples: dict[str, list[float]] = {"off": [], "ours": [], "cuallee": []}
    started = time.perf_counter()
    for index in range(pairs):
        last = sum(samples[k][-1] for k in samples) if index else 0.0
        if index and seconds and time.perf_counter() - started + last > seconds:
            print(f"    time budget: stopping after {index} round(s)", flush=True)
            break
        steps: list[tuple[str, Callable[[], object]]] = [
            ("off", lambda i=index: curate(spark, lake, SCALED, f"off-{i}", checks=False)),
            ("cuallee", lambda i=index: cuallee_validation(spark, lake, SCALED, f"cu-{i}")),
            ("ours", lambda i=index: curate(spark, lake, SCALED, f"ours-{i}", checks=True)),
        ]
        if index % 2 == 1:  # ours first, then off and its validation
            steps = [steps[2], steps[0], steps[1]]
        for name, action in steps:
            samples[name].append(timed(action))
        print(
            "    round {}/{}: off {:.1f}s  cuallee {:.1f}s  ours {:.1f}s".format(
                index + 1, pairs, *(samples[k][-1] for k in ("off", "cuallee", "ours"))
            ),
            flush=True,
        )
    return samples


def summarise(samples: Mapping[str, list[float]]) -> dict[str, Any]:
    off_plus = [o + c for o, c in zip(samples["off"], samples["cuallee"], strict=True)]
    return {
        "samples": dict(samples),
        "off": median(samples["off"]),
        "ours": median(samples["ours"]),
        "off_plus_cuallee": median(off_plus),
    }


def scaled_rows(spark: SparkSession, lake: LakeLayout) -> int:
    tables = LakeTables(spark, lake, "bench-count")
    return sum(tables.read(output(Zone.RAW, n), SCALED).count() for n in TIMED_DATASETS)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=0, help="for the rounds; 0: no limit")
    parser.add_argument("--pilot", default=str(PILOT))
    parser.add_argument(
        "--lake", help=f"a lake whose raw {SCALED.key} is already at --scale (growth's)"
    )
    parser.add_argument("--json", required=True, help="where to write the results")
    ns = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-checks-") as tmp:
        lake = LakeLayout(ns.lake or str(Path(tmp) / "lake"))
        spark = product_session(lake, "bench-checks")
        started = time.perf_counter()
        agreement = correctness(spark, lake, Path(ns.pilot))
        print(f"    correctness on the broken pilot: {time.perf_counter() - started:.0f}s")
        if ns.lake:
            rows = scaled_rows(spark, lake)
        else:
            rows = build_raw(spark, Path(ns.pilot), lake, SCALED, ns.scale)
        print(f"    {ns.scale}x VS+LB: {rows:,} raw rows", flush=True)
        result = {"scale": ns.scale, "rows": rows, "correctness": agreement}
        result |= summarise(rounds(spark, lake, ns.pairs, ns.seconds))
        spark.stop()
    Path(ns.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    sys.exit(main())
