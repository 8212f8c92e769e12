"""The application whose loaded classes become the driver's class-data archive (`cds.py`).

Plain PySpark on the `clinical` catalog the launcher configures (a scratch lake): a namespace,
an Iceberg table, a write to a branch and its fast-forward, a read with a filter and an
aggregation, the files metadata, a Parquet write: the classes every job loads.
"""

import sys
import tempfile

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

spark = SparkSession.Builder().getOrCreate()
spark.sql("CREATE NAMESPACE IF NOT EXISTS clinical.probe")
spark.sql(
    "CREATE TABLE clinical.probe.rows (id BIGINT, name STRING, value DOUBLE, day DATE, "
    "study STRING) USING iceberg PARTITIONED BY (study)"
)
rows = spark.range(1000).select(
    F.col("id"),
    F.concat(F.lit("S"), F.col("id").cast("string")).alias("name"),
    (F.col("id") * 0.5).alias("value"),
    F.to_date(F.lit("2024-01-15")).alias("day"),
    F.lit("P").alias("study"),
)
rows.writeTo("clinical.probe.rows").append()
spark.sql("ALTER TABLE clinical.probe.rows CREATE BRANCH stage_probe")
rows.writeTo("clinical.probe.rows.branch_stage_probe").overwrite(F.col("study") == "P")
spark.sql("CALL clinical.system.fast_forward('probe.rows', 'main', 'stage_probe')").collect()
found = (
    spark.table("clinical.probe.rows")
    .where(F.col("value") > 10)
    .groupBy("study")
    .agg(F.count("*"), F.sum(F.xxhash64("id", "name").cast("decimal(38,0)")))
    .collect()
)
spark.sql("SELECT file_path FROM clinical.probe.rows.files").collect()
with tempfile.TemporaryDirectory() as folder:
    rows.write.parquet(folder + "/rows")
spark.stop()
sys.exit(0 if found else 1)
