"""The baseline of `make bench` target 1: the same stages as a bare PySpark script a user
would write, in one application, with no checks, no orchestration and no lineage.

    spark-submit <our launcher's options> benchmarks/bare_pipeline.py --plan plan.json \
        --folder <delivery folder> --namespace bare

Reads every SAS XPORT file of the delivery with `pandas.read_sas` (the reader a user
reaches for first; its decoding runs on the driver, which for the pilot's 20 MB is cheaper
than distributing it), writes raw (one Iceberg table per domain, typed as the file was, plus
source file and row), curated (the contract's columns cast to their types, deduplicated on the
natural key) and a subject profile (one row per DM subject with a few aggregates of AE, EX,
VS and LB), all in the `clinical` catalog the launcher configures. The plan (domains, file
stems, natural keys, column types) is written by the benchmark from our contracts, so this
script imports nothing of ours.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, cast

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F


def read_xport(spark: SparkSession, path: Path) -> DataFrame:
    frame = cast(pd.DataFrame, pd.read_sas(path, format="xport", encoding="latin-1"))
    for name in frame.columns:
        if frame[name].dtype != "float64":
            # Text as Python objects (missing = None): Arrow takes them as strings.
            frame[name] = frame[name].astype(object).where(frame[name].notna(), None)
    frame["_source_row"] = range(1, len(frame) + 1)
    return spark.createDataFrame(frame).withColumn("_source_uri", F.lit(str(path)))


def write_table(frame: DataFrame, table: str, study: str, delivery: str) -> None:
    (
        frame.withColumn("study", F.lit(study))
        .withColumn("delivery", F.lit(delivery))
        .writeTo(table)
        .using("iceberg")
        .partitionedBy(F.col("study"), F.col("delivery"))
        .createOrReplace()
    )


def ingest(spark: SparkSession, plan: dict[str, Any], folder: Path, namespace: str) -> list[str]:
    """Raw: each domain's files as they are (split domains such as lbch + lbhe unioned)."""
    written = []
    for dataset in plan["datasets"]:
        paths = [folder / f"{stem}.xpt" for stem in dataset["files"]]
        frames = [read_xport(spark, p) for p in paths if p.exists()]
        if not frames:
            continue
        raw = frames[0]
        for other in frames[1:]:
            raw = raw.unionByName(other, allowMissingColumns=True)
        write_table(raw, f"clinical.{namespace}_raw.{dataset['name']}", *plan["partition"])
        written.append(dataset["name"])
    return written


def curate(spark: SparkSession, plan: dict[str, Any], names: list[str], namespace: str) -> None:
    """Curated: the contract's columns typed, one row per natural key."""
    for dataset in plan["datasets"]:
        if dataset["name"] not in names:
            continue
        raw = spark.table(f"clinical.{namespace}_raw.{dataset['name']}")
        typed = raw.select(
            *[
                F.col(name).cast(kind).alias(name)
                for name, kind in dataset["columns"].items()
                if name in raw.columns
            ],
            "_source_uri",
            "_source_row",
        )
        key = [k for k in dataset["natural_key"] if k in typed.columns]
        curated = typed.dropDuplicates(key)
        write_table(curated, f"clinical.{namespace}_curated.{dataset['name']}", *plan["partition"])


def subject_profile(spark: SparkSession, namespace: str, key: str) -> DataFrame:
    """One row per DM subject: a pseudonym, demographics and a few aggregates per domain."""

    def curated(name: str) -> DataFrame:
        return spark.table(f"clinical.{namespace}_curated.{name}")

    ae = (
        curated("ae")
        .groupBy("USUBJID")
        .agg(
            F.count(F.lit(1)).alias("ae_count"),
            F.sum(F.when(F.col("AESER") == "Y", 1).otherwise(0)).alias("ae_serious"),
        )
    )
    ex = (
        curated("ex")
        .groupBy("USUBJID")
        .agg(F.count(F.lit(1)).alias("ex_records"), F.sum("EXDOSE").alias("ex_total_dose"))
    )
    vs = (
        curated("vs")
        .groupBy("USUBJID")
        .agg(
            F.count(F.lit(1)).alias("vs_count"),
            F.avg(F.when(F.col("VSTESTCD") == "WEIGHT", F.col("VSSTRESN"))).alias("weight_mean"),
            F.avg(F.when(F.col("VSTESTCD") == "SYSBP", F.col("VSSTRESN"))).alias("sysbp_mean"),
        )
    )
    lb = (
        curated("lb")
        .groupBy("USUBJID")
        .agg(
            F.count(F.lit(1)).alias("lb_count"),
            F.sum(F.when(F.col("LBNRIND").isin("LOW", "HIGH"), 1).otherwise(0)).alias(
                "lb_abnormal"
            ),
        )
    )
    dm = curated("dm").select(
        F.sha2(F.concat(F.lit(key), F.col("STUDYID"), F.lit("/"), F.col("USUBJID")), 256).alias(
            "subject_pseudonym"
        ),
        "USUBJID",
        F.least(F.col("AGE"), F.lit(90)).alias("age"),
        "SEX",
        "RACE",
        "ARM",
    )
    profile = dm
    for part in (ae, ex, vs, lb):
        profile = profile.join(part, "USUBJID", "left")
    return profile.drop("USUBJID")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--plan", required=True)
    parser.add_argument("--folder", required=True)
    parser.add_argument("--namespace", default="bare")
    parser.add_argument("--key", default="bench-key")
    ns = parser.parse_args()
    plan = json.loads(Path(ns.plan).read_text())
    spark = (
        SparkSession.Builder()
        .appName("bare-pipeline")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("WARN")
    for zone in ("raw", "curated", "features"):
        spark.sql(f"CREATE NAMESPACE IF NOT EXISTS clinical.{ns.namespace}_{zone}")
    names = ingest(spark, plan, Path(ns.folder), ns.namespace)
    curate(spark, plan, names, ns.namespace)
    write_table(
        subject_profile(spark, ns.namespace, ns.key),
        f"clinical.{ns.namespace}_features.subject_profile",
        *plan["partition"],
    )
    spark.stop()


if __name__ == "__main__":
    main()
