"""The baseline of `make bench-families`: the sensor or omics aggregation as a bare PySpark
script a user would write, in one application, with no rules, checks, lineage or orchestration.

    spark-submit <our launcher's options> benchmarks/bare_families.py sensor|omics \
        --folder <delivery folder> --out <folder>

sensor: read the Parquet files, drop exact duplicates and impossible readings, correct the
clock, aggregate to minutes, then to subject-days (steps, wear time, heart rate min/mean/max,
resting heart rate). omics: read the counts, library size and detected genes per sample, QC,
log-CPM, per-gene variance over the passing samples, the top 50 genes, their values per
sample. Both write Parquet. It imports nothing of ours.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F


def sensor(spark: SparkSession, folder: Path, out: Path) -> None:
    rows = spark.read.parquet(str(folder / "*.parquet")).dropDuplicates()
    rows = rows.where(
        (F.col("HEART_RATE").isNull() | F.col("HEART_RATE").between(20, 250))
        & F.col("STEPS").between(0, 10)
    )
    true_time = F.expr("timestamp_millis(unix_millis(TIMESTAMP) - CLOCK_OFFSET_S * 1000)")
    minutes = (
        rows.withColumn("MINUTE", F.date_trunc("minute", true_time))
        .groupBy("USUBJID", "MINUTE")
        .agg(
            F.count(F.lit(1)).alias("worn"),
            F.sum("STEPS").alias("steps"),
            F.count("HEART_RATE").alias("readings"),
            F.min("HEART_RATE").alias("hr_min"),
            F.max("HEART_RATE").alias("hr_max"),
            F.sum("HEART_RATE").alias("hr_sum"),
        )
    )
    minutes.write.mode("overwrite").parquet(str(out / "minutes"))
    minutes = spark.read.parquet(str(out / "minutes"))
    resting = (F.col("worn") == 60) & (F.col("steps") == 0) & (F.col("readings") > 0)
    days = minutes.groupBy("USUBJID", F.to_date("MINUTE").alias("DAY")).agg(
        F.sum("steps").alias("total_steps"),
        (F.sum("worn") / 60.0).alias("wear_minutes"),
        F.min("hr_min").alias("hr_min"),
        F.max("hr_max").alias("hr_max"),
        (F.sum("hr_sum") / F.sum("readings")).alias("hr_mean"),
        F.avg(F.when(resting, F.col("hr_sum") / F.col("readings"))).alias("resting_hr"),
    )
    days.write.mode("overwrite").parquet(str(out / "days"))


def omics(spark: SparkSession, folder: Path, out: Path, top: int = 50) -> None:
    counts = spark.read.parquet(str(folder / "counts_*.parquet"))
    samples = counts.groupBy("SAMPLE_ID").agg(
        F.sum("COUNT").alias("library"), F.count(F.when(F.col("COUNT") > 0, 1)).alias("detected")
    )
    genes = counts.select("GENE_ID").distinct().count()
    passing = samples.where((F.col("library") >= 1_000_000) & (F.col("detected") >= 0.5 * genes))
    values = counts.join(F.broadcast(passing), "SAMPLE_ID").withColumn(
        "log_cpm", F.log2((F.col("COUNT") + 0.5) / (F.col("library") + 1) * 1e6)
    )
    values.write.mode("overwrite").parquet(str(out / "values"))
    values = spark.read.parquet(str(out / "values"))
    ranked = Window.orderBy(F.desc("variance"), "GENE_ID")
    chosen = (
        values.groupBy("GENE_ID")
        .agg(F.var_samp("log_cpm").alias("variance"))
        .withColumn("rank", F.row_number().over(ranked))
        .where(F.col("rank") <= top)
    )
    result: DataFrame = values.join(F.broadcast(chosen), "GENE_ID")
    result.write.mode("overwrite").parquet(str(out / "top_genes"))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("family", choices=("sensor", "omics"))
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    spark = SparkSession.Builder().appName(f"bare-{args.family}").getOrCreate()
    (sensor if args.family == "sensor" else omics)(spark, args.folder, args.out)
    spark.stop()


if __name__ == "__main__":
    main()
