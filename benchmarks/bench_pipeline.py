"""Targets 1 and 2 of `make bench`: whole deliveries and one stage, ours against bare Spark.

Ours runs exactly as a user does: `clinical-platform land` then `clinical-platform
materialize` as subprocesses, each pair on a fresh lake and a fresh DAGSTER_HOME. The
baselines are `spark-submit` with the command our local launcher builds (same JVM options,
jars, catalog and Spark settings), so only what we add on top is measured.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from bench_common import (
    CLI,
    PSEUDONYM_KEY,
    ROOT,
    Result,
    Timed,
    median,
    paired,
    run_timed,
)

from clinical_platform.launchers.base import SparkJob
from clinical_platform.launchers.bundle import build_bundle
from clinical_platform.launchers.local import LocalSparkLauncher
from spark_jobs.contracts import SDTM_CONTRACTS, domain_of_file
from spark_jobs.contracts.layout import LakeLayout, local_path

BARE_SCRIPT = ROOT / "benchmarks" / "bare_pipeline.py"


@dataclass(frozen=True)
class Delivered:
    """A folder of delivery files and the partition it is landed as."""

    folder: Path
    study: str
    delivery: str

    @property
    def rows(self) -> int:
        return sum(xpt_rows(p) for p in self.folder.glob("*.xpt"))


def xpt_rows(path: Path) -> int:
    import pandas as pd  # only for counting; the benchmarks never load pandas into Spark jobs

    with pd.read_sas(path, format="xport", chunksize=200_000) as reader:
        return sum(len(chunk) for chunk in reader)


class Workspace:
    """A fresh lake and Dagster instance per run, under one scratch folder."""

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        self.runs = 0

    def fresh(self) -> tuple[Path, dict[str, str]]:
        self.runs += 1
        run_dir = self.scratch / f"run-{self.runs:02d}"
        shutil.rmtree(run_dir, ignore_errors=True)
        home = run_dir / "dagster_home"
        home.mkdir(parents=True)
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "CLINICAL_PSEUDONYM_KEY": PSEUDONYM_KEY,
            "CLINICAL_LAKE_URI": str(run_dir / "lake"),
            "PYTHONWARNINGS": "ignore",
        }
        return run_dir, env

    def clean(self, run_dir: Path) -> None:
        shutil.rmtree(run_dir, ignore_errors=True)


def land(delivered: Delivered, lake: Path, env: Mapping[str, str], log: Path) -> Timed:
    command = [str(CLI), "land", "--study", delivered.study, "--delivery", delivered.delivery]
    return run_timed([*command, "--lake", str(lake), str(delivered.folder)], env, log)


def materialize(
    delivered: Delivered, lake: Path, env: Mapping[str, str], log: Path, select: str | None
) -> Timed:
    command = [
        str(CLI),
        "materialize",
        "--study",
        delivered.study,
        "--delivery",
        delivered.delivery,
        "--lake",
        str(lake),
    ]
    return run_timed([*command, *(["--select", select] if select else [])], env, log)


def submit(
    lake: Path, entry_point: str, arguments: list[str], spark_conf: Mapping[str, str] | None = None
) -> tuple[list[str], dict[str, str]]:
    """The spark-submit command and environment our local launcher would use for a job (with
    `spark_conf` over its settings)."""
    launcher = LocalSparkLauncher(lake_uri=str(lake), spark_conf=dict(spark_conf or {}))
    code_dir = build_bundle().write_to(Path(local_path(launcher.local_system.code_dir)))
    command = launcher.command(SparkJob(entry_point, arguments), code_dir)
    return command, launcher.environment({})


def bare_command(lake: Path, arguments: list[str]) -> tuple[list[str], dict[str, str]]:
    """Our launcher's command with our job and code bundle replaced by the bare script."""
    command, env = submit(lake, "ingest", [])
    return [*command[: command.index("--py-files")], str(BARE_SCRIPT), *arguments], env


def write_plan(path: Path, delivered: Delivered) -> Path:
    """What the bare script needs from our contracts: files, natural keys, column types."""
    stems = sorted(p.stem.lower() for p in delivered.folder.glob("*.xpt"))
    datasets = [
        {
            "name": c.name,
            "files": [s for s in stems if domain_of_file(s) == c.name],
            "natural_key": list(c.natural_key),
            "columns": {col.name: col.type.spark_sql for col in c.columns},
        }
        for c in SDTM_CONTRACTS
    ]
    plan = {"partition": [delivered.study, delivered.delivery], "datasets": datasets}
    path.write_text(json.dumps(plan, indent=1))
    return path


# ---- one run of each side -----------------------------------------------------------------


def ours_whole(
    workspace: Workspace, delivered: Delivered, log: Path, *, keep: bool = False
) -> Timed:
    """Land and materialize every stage on a fresh lake; `keep` leaves the lake in place."""
    run_dir, env = workspace.fresh()
    lake = run_dir / "lake"
    landed = land(delivered, lake, env, log)
    done = materialize(delivered, lake, env, log, None)
    if not keep:
        workspace.clean(run_dir)
    return Timed(
        landed.seconds + done.seconds,
        max(landed.root_peak, done.root_peak),
        max(landed.jvm_peak, done.jvm_peak),
    )


def bare_whole(workspace: Workspace, delivered: Delivered, log: Path) -> Timed:
    run_dir, _ = workspace.fresh()
    plan = write_plan(run_dir / "plan.json", delivered)
    arguments = ["--plan", str(plan), "--folder", str(delivered.folder), "--key", PSEUDONYM_KEY]
    command, spark_env = bare_command(run_dir / "lake", arguments)
    timed = run_timed(command, {**spark_env, "PYTHONWARNINGS": "ignore"}, log)
    workspace.clean(run_dir)
    return timed


def landed_lake(
    workspace: Workspace, delivered: Delivered, log: Path
) -> tuple[Path, dict[str, str]]:
    run_dir, env = workspace.fresh()
    land(delivered, run_dir / "lake", env, log)
    return run_dir, env


def ours_ingest(workspace: Workspace, delivered: Delivered, log: Path) -> Timed:
    run_dir, env = landed_lake(workspace, delivered, log)
    timed = materialize(delivered, run_dir / "lake", env, log, "raw_*")
    workspace.clean(run_dir)
    return timed


def bare_ingest(workspace: Workspace, delivered: Delivered, log: Path) -> Timed:
    """spark-submit of ingest.py with the arguments the raw step gives it, without Dagster
    (no Pipes variables: the job reports to its log only)."""
    run_dir, _ = landed_lake(workspace, delivered, log)
    arguments = [
        *["--lake", LakeLayout(str(run_dir / "lake")).root],
        *["--study", delivered.study, "--delivery", delivered.delivery],
        *["--run-id", "bench-ingest", "--datasets", ",".join(c.name for c in SDTM_CONTRACTS)],
    ]
    command, env = submit(run_dir / "lake", "ingest", arguments)
    timed = run_timed(command, env, log)
    workspace.clean(run_dir)
    return timed


# ---- the targets ---------------------------------------------------------------------------


def compare(
    name: str,
    limit: float | None,
    sides: tuple[Callable[[], Timed], Callable[[], Timed]],
    pairs: int,
    allows: Callable[[float], bool],
    note: str = "",
) -> tuple[Result, list[Timed]]:
    """Paired runs of (baseline, ours); also returns ours' runs for their memory peaks."""
    print(f"  {name}", flush=True)
    our_runs: list[Timed] = []

    def ours() -> float:
        our_runs.append(sides[1]())
        return our_runs[-1].seconds

    base, mine = paired(lambda: sides[0]().seconds, ours, pairs, allows)
    note = f"{note}; {len(base)} pair(s)" if note else f"{len(base)} pair(s)"
    result = Result(name, median(base), median(mine), limit, note)
    result.samples = {"baseline": base, "ours": mine}
    return result, our_runs


def demo_delivery(scratch: Path) -> Delivered:
    """The 120-subject delivery `clinical-platform demo` generates."""
    from clinical_platform.demo import DEMO_DELIVERY_DATE, DEMO_STUDY

    folder = scratch / "demo-delivery"
    study = ["--study", DEMO_STUDY]
    if not folder.exists():
        subprocess.run(
            [str(CLI), "generate", "sdtm", "--subjects", "120", "--out", str(folder), *study],
            check=True,
            capture_output=True,
        )
    return Delivered(folder, DEMO_STUDY, DEMO_DELIVERY_DATE)


def latency_result(
    scratch: Path, delivered: Delivered, pairs: int, allows: Callable[[float], bool], *, demo: bool
) -> tuple[Result, list[Timed]]:
    """Target 1: land -> features, ours against the bare script (1b, the demo, is reported)."""
    workspace = Workspace(scratch / ("demo" if demo else "pilot"))
    log = scratch / "logs" / "latency.log"
    sides = (
        lambda: bare_whole(workspace, delivered, log),
        lambda: ours_whole(workspace, delivered, log),
    )
    label = "1b. latency: 120-subject demo" if demo else "1. latency: CDISC pilot"
    note = f"{delivered.rows:,} rows"
    return compare(f"{label}, land -> features", None if demo else 1.5, sides, pairs, allows, note)


def orchestration_result(
    scratch: Path, delivered: Delivered, pairs: int, allows: Callable[[float], bool]
) -> Result:
    """Target 2: the ingest stage through Dagster against spark-submit of the same job."""
    workspace = Workspace(scratch / "orchestration")
    log = scratch / "logs" / "orchestration.log"
    sides = (
        lambda: bare_ingest(workspace, delivered, log),
        lambda: ours_ingest(workspace, delivered, log),
    )
    note = "pilot; spark-submit ingest.py vs materialize --select 'raw_*'"
    return compare("2. orchestration overhead", 1.1, sides, pairs, allows, note)[0]
