"""Landing files -> one DataFrame per domain: inspection and decoding on the executors.

XPT files are inspected in one streaming pass each (sha256 and structure, bounded memory) and
then decoded as record-aligned byte ranges, many tasks per large file; CSV files are parsed
whole (quoted fields may span lines); Parquet files are read by Spark itself. Columns keep the
types the files had: the raw zone is a faithful copy.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from spark_jobs.contracts.layout import Delivery
from spark_jobs.contracts.outputs import (
    DELIVERY,
    INGESTED_RUN_ID,
    PROVENANCE,
    PROVENANCE_NAMES,
    SOURCE_ROW,
    SOURCE_SHA256,
    SOURCE_URI,
    DatasetOutput,
)
from spark_jobs.formats import xport
from spark_jobs.formats.inspection import (
    FileInspection,
    Inspected,
    SourceColumn,
    inspect_chunks,
)
from spark_jobs.formats.rows import RowPlan, iter_file_rows, iter_xport_range
from spark_jobs.storage.byte_ranges import chunks, open_ranges
from spark_jobs.storage.filesystem import FileStatus

# A decoding task reads at most this many bytes of one XPT file; larger files are split.
MAX_RANGE_BYTES = 64 << 20
# ... and at least this many, so small files are not cut into tasks that cost more than they do.
MIN_RANGE_BYTES = 1 << 20


def inspect_landing_file(name: str, uri: str, size: int) -> Inspected:
    """Executor side: stream one landing file through its inspection."""
    with open_ranges(uri) as reader:
        return inspect_chunks(name, uri, size, chunks(reader, size))


def inspect_files(spark: SparkSession, files: Sequence[FileStatus]) -> list[Inspected]:
    """Validate the bytes of each file on the executors, one task per file."""
    if not files:
        return []
    wanted = [(f.name, f.uri, f.size) for f in files]
    found = (
        spark.sparkContext.parallelize(wanted, len(wanted))
        .map(lambda file: inspect_landing_file(*file))
        .collect()
    )
    return list(found)


def union_columns(files: Sequence[FileInspection], raw: DatasetOutput) -> list[SourceColumn]:
    """Columns of a domain over all its files: declared ones in declared order, then others.

    A column typed differently in two files becomes text, so nothing is lost in raw.
    """
    types: dict[str, set[str]] = defaultdict(set)
    labels: dict[str, str] = {}
    for inspection in files:
        for column in inspection.columns:
            labels.setdefault(column.name, column.label)
            types[column.name].add(column.type)
    declared = [c for c in raw.column_names if c in types]
    order = declared + [name for name in types if name not in declared]
    merged = {
        name: next(iter(kinds)) if len(kinds) == 1 else "string" for name, kinds in types.items()
    }
    return [SourceColumn(name, merged[name], labels[name]) for name in order]


@functools.cache
def spark_type(name: str) -> T.DataType:
    """The Spark type of a type name; parsed once per name (each parse is a trip to the JVM,
    and a domain's schema names the same few types for hundreds of columns)."""
    return T._parse_datatype_string(name)  # pyright: ignore[reportPrivateUsage]


def raw_schema(columns: Sequence[SourceColumn]) -> T.StructType:
    fields = [T.StructField(c.name, spark_type(c.type), True) for c in columns]
    provenance = [T.StructField(c.name, spark_type(c.type), False) for c in PROVENANCE]
    return T.StructType([*fields, *provenance])


def _row_plan(
    inspection: FileInspection, columns: Sequence[SourceColumn], delivery: Delivery, run_id: str
) -> RowPlan:
    positions = {c.name: i for i, c in enumerate(inspection.columns)}
    kinds = {c.name: c.type for c in inspection.columns}
    return RowPlan(
        uri=inspection.uri,
        format=inspection.format,
        source_positions=tuple(positions.get(c.name) for c in columns),
        to_text=tuple(c.type == "string" and kinds.get(c.name) == "double" for c in columns),
        provenance=(inspection.uri, inspection.sha256, delivery.key, run_id),
    )


@dataclass(frozen=True)
class Piece:
    """A unit of decoding work: a byte range of an XPT file, or a whole CSV file."""

    plan: RowPlan
    size: int
    layout: xport.XportLayout | None = None
    first: int = 0  # observations [first, end) of an XPT file
    end: int = 0


def row_pieces(
    found: Sequence[Inspected], plans: dict[str, RowPlan], range_bytes: int
) -> list[Piece]:
    pieces: list[Piece] = []
    for item in found:
        inspection, layout = item.inspection, item.xport_layout
        plan = plans[inspection.uri]
        if layout is None:
            pieces.append(Piece(plan, inspection.size))
            continue
        for first, end in xport.plan_row_ranges(layout, range_bytes):
            pieces.append(Piece(plan, inspection.size, layout, first, end))
    return pieces


def range_bytes_for(spark: SparkSession, found: Sequence[Inspected]) -> int:
    """Ranges small enough to give every core two tasks, within the bounds above."""
    total = sum(f.inspection.size for f in found)
    per_task = total // max(1, 2 * spark.sparkContext.defaultParallelism)
    return min(MAX_RANGE_BYTES, max(MIN_RANGE_BYTES, per_task))


def read_piece(piece: Piece) -> Iterator[tuple[Any, ...]]:
    """Executor side: the rows of one piece, read from the lake by byte range."""
    with open_ranges(piece.plan.uri) as reader:
        if piece.layout is None:
            yield from iter_file_rows(piece.plan, b"".join(chunks(reader, piece.size)))
            return
        offset, length = xport.byte_range(piece.layout, piece.first, piece.end)
        observations = reader.read(offset, length)
        yield from iter_xport_range(piece.plan, piece.layout, observations, piece.first)


def read_domain_rows(
    spark: SparkSession,
    found: Sequence[Inspected],
    columns: Sequence[SourceColumn],
    delivery: Delivery,
    run_id: str,
) -> DataFrame:
    """All rows of a domain's accepted files in the domain's union schema, with provenance."""
    schema = raw_schema(columns)
    frames = [
        _parquet_rows(spark, f.inspection, columns, delivery, run_id)
        for f in found
        if f.inspection.format == "parquet"
    ]
    decoded = [f for f in found if f.inspection.format != "parquet"]
    if decoded:
        plans = {
            f.inspection.uri: _row_plan(f.inspection, columns, delivery, run_id) for f in decoded
        }
        pieces = row_pieces(decoded, plans, range_bytes_for(spark, decoded))
        # A file with a header and no observations (a domain with no records yet) has no piece.
        slices = max(len(pieces), 1)
        rows = spark.sparkContext.parallelize(pieces, slices).flatMap(read_piece)
        # The row number sits between the data and the other provenance values in the tuples.
        fields = {f.name: f for f in schema.fields}
        order = [SOURCE_ROW, SOURCE_URI, SOURCE_SHA256, DELIVERY, INGESTED_RUN_ID]
        tuple_schema = T.StructType([*schema.fields[: len(columns)], *[fields[n] for n in order]])
        frames.append(spark.createDataFrame(rows, tuple_schema).select(*schema.fieldNames()))
    result = frames[0]
    for frame in frames[1:]:
        result = result.unionByName(frame)
    return result


def numbered_parquet(spark: SparkSession, uri: str) -> DataFrame:
    """A Parquet file's rows, names upper-cased, each with its 1-based row number in the file.

    Spark 3.5 reads the number with the rows (`_metadata.row_index`, right across row groups
    and splits), so 86 million sensor readings never pass through Python. Older Spark (EMR
    6.x's 3.4) and a file with its own `_metadata` column number them with `zipWithIndex`.
    """
    df = spark.read.parquet(uri)
    upper = [F.col(f"`{c}`").alias(c.strip().upper()) for c in df.columns]
    try:
        return df.select(*upper, (F.col("_metadata.row_index") + 1).alias(SOURCE_ROW))
    except AnalysisException:
        renamed = df.toDF(*[c.strip().upper() for c in df.columns])
        numbered = renamed.rdd.zipWithIndex().map(lambda pair: (*pair[0], pair[1] + 1))
        return numbered.toDF([*renamed.columns, SOURCE_ROW])


def _parquet_rows(
    spark: SparkSession,
    inspection: FileInspection,
    columns: Sequence[SourceColumn],
    delivery: Delivery,
    run_id: str,
) -> DataFrame:
    df = numbered_parquet(spark, inspection.uri)
    present = set(df.columns)
    selected = [
        (F.col(c.name) if c.name in present else F.lit(None)).cast(c.type).alias(c.name)
        for c in columns
    ]
    provenance = {
        SOURCE_URI: F.lit(inspection.uri),
        SOURCE_ROW: F.col(SOURCE_ROW).cast("long"),
        SOURCE_SHA256: F.lit(inspection.sha256),
        DELIVERY: F.lit(delivery.key),
        INGESTED_RUN_ID: F.lit(run_id),
    }
    return df.select(*selected, *[provenance[name].alias(name) for name in PROVENANCE_NAMES])


def inspect_parquet(spark: SparkSession, inspection: FileInspection) -> FileInspection:
    """Columns and row count of an accepted Parquet file, from Spark's own reader."""
    try:
        df = spark.read.parquet(inspection.uri)
        columns = tuple(
            SourceColumn(f.name.strip().upper(), f.dataType.simpleString())
            for f in df.schema.fields
        )
        rows = df.count()
    except Exception as error:  # noqa: BLE001 - any reader failure means an unreadable file
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error)
        return replace(
            inspection, accepted=False, reason=f"not a readable Parquet file ({first_line})"
        )
    names = [c.name for c in columns]
    if len(set(names)) != len(names):
        return replace(inspection, accepted=False, reason="a column name appears twice")
    return replace(inspection, rows=rows, columns=columns)
