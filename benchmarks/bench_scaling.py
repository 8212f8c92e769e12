"""Data at a multiple of the pilot's volume, a broken copy of the pilot, and the Spark session
the in-process benchmarks share.

Subjects are cloned under new ids (`01-701-1015` -> `01-701-1015-03`), so natural keys stay
unique and every clone is a subject of DM: rules find what they find in the pilot, times the
scale. Copies are interleaved by subject, as a real delivery of that size would be.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from clinical_platform.catalog import catalog_settings
from clinical_platform.generators.xport_writer import write_xport
from clinical_platform.launchers.local import (
    DEFAULT_CONF,
    DEFAULT_DRIVER_JAVA_OPTIONS,
    JARS_DIR,
    jar_classpath,
)
from spark_jobs.contracts.layout import Delivery, LakeLayout, Zone
from spark_jobs.contracts.outputs import output
from spark_jobs.contracts.tables import spark_conf
from spark_jobs.ingest import IngestArgs, ingest
from spark_jobs.runtime.arguments import DeliveryArgs
from spark_jobs.runtime.reporting import JobReporter
from spark_jobs.storage.tables import Committed, LakeTables, delivered, table_shaped

PILOT_FILES = ("dm.xpt", "vs.xpt", "lbch.xpt", "lbhe.xpt")


def product_session(lake: LakeLayout, name: str) -> SparkSession:
    """A local session with the settings our launcher gives a job (JIT, memory, catalog)."""
    classpath = jar_classpath(JARS_DIR)
    builder = (
        SparkSession.Builder()
        .master("local[*]")
        .appName(name)
        .config("spark.driver.extraClassPath", classpath)
        .config("spark.driver.extraJavaOptions", DEFAULT_DRIVER_JAVA_OPTIONS)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.sources.partitionColumnTypeInference.enabled", "false")
        .config("spark.sql.ansi.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
    )
    for key, value in {**DEFAULT_CONF, **spark_conf(catalog_settings(lake))}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def republish(tables: LakeTables, name: str, delivery: Delivery, rows: DataFrame) -> int:
    """Replace a raw partition by `rows`, with a lineage record like ingest's."""
    raw = output(Zone.RAW, name)
    record = tables.committed_record(raw, delivery)
    assert record is not None
    staged = tables.stage(table_shaped(rows, raw, tables, delivery), raw, delivery)
    snapshot = tables.publish(staged)
    changed = {**record, "rows": {"in": staged.rows, "out": staged.rows}}
    tables.record(Committed(raw, delivery, snapshot, changed))
    return staged.rows


def raw_rows(tables: LakeTables, name: str, delivery: Delivery) -> DataFrame:
    raw = output(Zone.RAW, name)
    record = tables.committed_record(raw, delivery)
    assert record is not None
    return delivered(tables.read(raw, delivery), [(c["name"], c["type"]) for c in record["schema"]])


def build_raw(
    spark: SparkSession, pilot: Path, lake: LakeLayout, delivery: Delivery, scale: int
) -> int:
    """Ingest the pilot's DM, VS and LB, then clone every subject `scale` times; the rows of
    VS and LB."""
    landing = Path(lake.landing(delivery).removeprefix("file:"))
    landing.mkdir(parents=True)
    for name in PILOT_FILES:
        shutil.copyfile(pilot / name, landing / name)
    job = DeliveryArgs(lake, delivery, f"bench-ingest-{delivery.delivery}", checks_only=False)
    ingest(IngestArgs(job, ("dm", "vs", "lb")), JobReporter(None))
    tables = LakeTables(spark, lake, f"bench-scale-{scale}")
    copies = spark.range(scale).withColumnRenamed("id", "copy")
    total = 0
    for name in ("dm", "vs", "lb"):
        rows = raw_rows(tables, name, delivery)
        if scale == 1:
            total += rows.count() if name != "dm" else 0
            continue
        cloned = (
            rows.crossJoin(copies)
            .withColumn("USUBJID", clone_id(F.col("USUBJID"), F.col("copy")))
            .drop("copy")
            .select(*rows.columns)
            .orderBy("USUBJID", "_source_uri", "_source_row")
        )
        written = republish(tables, name, delivery, cloned)
        total += written if name != "dm" else 0
    return total


def clone_id(subject: Column, copy: Column) -> Column:
    """Copy 0 keeps the subject's id; copy n gets `-nn` (`-nnn` from 100 copies on)."""
    suffix = F.concat(F.lit("-"), F.lpad(copy.cast("string"), 2, "0"))
    return F.when(copy == 0, subject).otherwise(F.concat(F.rtrim(subject), suffix))


# What the broken copy of the pilot breaks: (dataset, every n-th row, column, new value).
BREAKAGE: tuple[tuple[str, int, str, Any], ...] = (
    ("vs", 97, "VSDTC", "2013-13-45"),  # iso8601
    ("vs", 89, "STUDYID", "OTHERSTUDY"),  # study_matches
    ("vs", 83, "VSSTRESN", 99999.0),  # plausible_range (where the test has one)
    ("vs", 79, "VSDTC", "2031-02-03"),  # future_date
    ("lb", 71, "USUBJID", "01-999-9999"),  # subject_in_dm
    ("lb", 67, "LBDTC", "2019-02-30T25:00"),  # iso8601
    ("lb", 61, "LBSTRESU", "furlongs"),  # terminology / standard unit
    ("lb", 113, "LBSTRESN", -5.0e6),  # reference range, plausible range
)


def break_pilot(spark: SparkSession, lake: LakeLayout, delivery: Delivery) -> list[str]:
    """Break values of the delivery's raw VS and LB so that several rules fail."""
    tables = LakeTables(spark, lake, "bench-break")
    done = []
    for name in ("vs", "lb"):
        rows = raw_rows(tables, name, delivery)
        for dataset, every, column, value in BREAKAGE:
            if dataset != name or column not in rows.columns:
                continue
            hit = (F.col("_source_row") % every) == 0
            rows = rows.withColumn(column, F.when(hit, F.lit(value)).otherwise(F.col(column)))
            done.append(f"{name}.{column} := {value!r} in every {every}th row")
        republish(tables, name, delivery, rows)
    return done


# ---- SAS XPORT files at a multiple of the pilot, for whole-pipeline runs ---------------------


def scaled_delivery(pilot: Path, out: Path, scale: int, names: Sequence[str] | None = None) -> Path:
    """Every pilot .xpt file (or those `names`) with each subject cloned `scale` times;
    returns `out`."""
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted(pilot.glob("*.xpt")):
        if names is not None and path.name not in names:
            continue
        frame = cast(pd.DataFrame, pd.read_sas(path, format="xport", encoding="latin-1"))
        text = [c for c in frame.columns if frame[c].dtype != "float64"]
        frame[text] = frame[text].astype(object).where(frame[text].notna(), None)
        widest = {
            c: max((len(str(v).encode("latin-1")) for v in frame[c] if v), default=1) for c in text
        }
        if "USUBJID" in widest:
            widest["USUBJID"] += 1 + max(2, math.ceil(math.log10(max(scale, 2))))
        variables = [
            (c, "char", widest[c], "") if c in widest else (c, "numeric", 8, "")
            for c in frame.columns
        ]
        with (out / path.name).open("wb") as stream:
            write_xport(stream, path.stem.upper(), variables, cloned_rows(frame, scale))
    return out


def cloned_rows(frame: pd.DataFrame, scale: int) -> Iterator[list[Any]]:
    """The frame's rows once per copy, copy n under subject ids ending `-0n`."""
    names = list(frame.columns)
    subject = names.index("USUBJID") if "USUBJID" in names else None
    rows = [list(r) for r in frame.itertuples(index=False, name=None)]
    width = max(2, math.ceil(math.log10(max(scale, 2))))
    for copy in range(scale):
        for row in rows:
            if subject is not None and copy and row[subject]:
                row = [*row]
                row[subject] = f"{row[subject]}-{copy:0{width}d}"
            yield row
