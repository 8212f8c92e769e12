"""Cost of the data-quality pass: full curation vs. a bare read-cast-write, same session.

    .venv/bin/python benchmarks/curate_overhead.py [--scale 10] [--repeat 2] [--pilot DIR]

Builds VS and LB at `scale` times the CDISC pilot volume (subjects cloned under new ids, so
natural keys stay unique), then, in one Spark session, times for each dataset:
  baseline: read raw Parquet, cast every contract column to its type, write Parquet;
  curate:   the real curation (conform, every rule, duplicates, quarantine split, both
            writes with observed metrics, reconciliation, commit) as curate.py runs it.
Prints seconds and the ratio curate/baseline per dataset and overall (target <= 1.3).
Timings on shared machines are noisy: compare the ratio, not the seconds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from spark_jobs.contracts import contract_for  # noqa: E402
from spark_jobs.contracts.layout import Delivery, LakeLayout  # noqa: E402
from spark_jobs.curate import CurateArgs, DatasetCuration, dm_reference  # noqa: E402
from spark_jobs.ingest import IngestArgs, ingest  # noqa: E402
from spark_jobs.runtime.arguments import DeliveryArgs  # noqa: E402
from spark_jobs.runtime.reporting import JobReporter  # noqa: E402
from spark_jobs.storage.filesystem import LakeStorage  # noqa: E402

DELIVERY = Delivery("CDISCPILOT01", "2024-01-15")


def session() -> SparkSession:
    spark = (
        SparkSession.Builder().master("local[*]")
        .appName("curate-overhead-benchmark")
        .config("spark.sql.shuffle.partitions", "8")
        .config("spark.ui.enabled", os.environ.get("BENCH_UI", "false"))
        .config("spark.sql.ansi.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.sources.partitionColumnTypeInference.enabled", "false")
        .config("spark.driver.memory", "4g")
        # Large generated methods must be JIT-compiled: measured 2-4x faster rule evaluation.
        .config(
            "spark.driver.extraJavaOptions",
            os.environ.get("BENCH_JAVA_OPTIONS", "-XX:-DontCompileHugeMethods"),
        )
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def build_raw(spark: SparkSession, pilot: Path, lake: LakeLayout, scale: int) -> None:
    """Ingest the pilot once, then clone VS, LB and DM `scale` times under new subject ids."""
    landing = Path(lake.landing(DELIVERY).removeprefix("file:"))
    landing.mkdir(parents=True)
    for name in ("dm.xpt", "vs.xpt", "lbch.xpt", "lbhe.xpt"):
        shutil.copyfile(pilot / name, landing / name)
    job = DeliveryArgs(lake, DELIVERY, "bench-ingest", checks_only=False)
    ingest(IngestArgs(job, ("dm", "vs", "lb")), JobReporter(None))
    copies = spark.range(scale).withColumnRenamed("id", "copy")
    for name in ("dm", "vs", "lb"):
        uri = lake.partition("raw", name, DELIVERY)
        raw = spark.read.parquet(uri)
        rows = raw.count() * scale
        cloned = (
            raw.crossJoin(copies)
            .withColumn(
                "USUBJID", F.concat(F.col("USUBJID"), F.lit("-c"), F.col("copy").cast("string"))
            )
            .drop("copy")
            .select(*raw.columns)
            # Delivery order (by subject), as a real dataset of this size would be: the copies
            # of a row must not sit side by side, or Parquet run-length encoding makes the
            # baseline's write unrealistically cheap (measured: 7x smaller output than curated).
            .orderBy("USUBJID", "_source_uri", "_source_row")
        )
        staging = uri + "-scaled"
        cloned.write.mode("overwrite").parquet(staging)
        lineage = LakeStorage(spark).read_json(lake.lineage("raw", name, DELIVERY))
        shutil.rmtree(uri.removeprefix("file:"))
        Path(staging.removeprefix("file:")).rename(uri.removeprefix("file:"))
        lineage["rows"] = {"in": rows, "out": rows}
        LakeStorage(spark).write_json(lake.lineage("raw", name, DELIVERY), lineage)


def bare_cast_write(spark: SparkSession, lake: LakeLayout, name: str, out: str) -> None:
    """The baseline: the same read and typed write, without any rule."""
    contract = contract_for(name, DELIVERY.study)
    raw = spark.read.parquet(lake.partition("raw", name, DELIVERY))
    typed: DataFrame = raw.select(
        *[
            F.col(c.name).cast(c.type.spark_sql).alias(c.name)
            for c in contract.columns
            if c.name in raw.columns
        ],
        *[c for c in raw.columns if c.startswith("_")],
    )
    typed.write.mode("overwrite").parquet(out)


def curate_once(spark: SparkSession, lake: LakeLayout, name: str, run: str) -> None:
    args = CurateArgs(DeliveryArgs(lake, DELIVERY, run, False), (name,), dt.date(2026, 1, 1))
    storage = LakeStorage(spark)
    context = dm_reference(spark, storage, args)
    contract = contract_for(name, DELIVERY.study)
    DatasetCuration(spark, args, JobReporter(None), contract, storage, context).run()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--pilot", default=str(ROOT.parent / "shared" / "data" / "cdisc_pilot"))
    ns = parser.parse_args()
    spark = session()
    with tempfile.TemporaryDirectory(prefix="curate-bench-") as tmp:
        lake = LakeLayout(str(Path(tmp) / "lake"))
        build_raw(spark, Path(ns.pilot), lake, ns.scale)
        totals = {"baseline": 0.0, "curate": 0.0}
        for name in ("vs", "lb"):
            rows = spark.read.parquet(lake.partition("raw", name, DELIVERY)).count()
            samples: dict[str, list[float]] = {"baseline": [], "curate": []}
            # Warm-up pass of each, then alternate so drift hits both equally.
            bare_cast_write(spark, lake, name, f"{lake.root}/bench/warm-{name}")
            curate_once(spark, lake, name, f"warm-{name}")
            for i in range(ns.repeat):
                start = time.perf_counter()
                bare_cast_write(spark, lake, name, f"{lake.root}/bench/{name}-{i}")
                samples["baseline"].append(time.perf_counter() - start)
                start = time.perf_counter()
                curate_once(spark, lake, name, f"bench-{name}-{i}")
                samples["curate"].append(time.perf_counter() - start)
            base, full = (statistics.median(samples[k]) for k in ("baseline", "curate"))
            totals["baseline"] += base
            totals["curate"] += full
            print(
                f"{name}: {rows:,} rows  baseline {base:6.2f}s  curate {full:6.2f}s  "
                f"ratio {full / base:.2f}"
            )
        ratio = totals["curate"] / totals["baseline"]
        print(f"VS+LB at {ns.scale}x: curate/baseline = {ratio:.2f} (target <= 1.30)")
    spark.stop()


if __name__ == "__main__":
    main()
