"""landing -> raw: a faithful, typed Parquet copy of each delivered SDTM file plus provenance.

    spark-submit --py-files spark_jobs.zip ingest.py \
        --input  <lake>/landing/clinical/<STUDY>/<DELIVERY> \
        --output <lake>/raw/clinical --quarantine <lake>/quarantine/clinical \
        --study <STUDY> --delivery <DELIVERY> [--datasets dm,ae,...] [--run-id ID]

Every file is validated whole (structure, encoding, manifest size and sha256) before a row of
it is kept. A file that fails is rejected with a one-line reason, recorded under
quarantine/<family>/rejected_files, and left untouched in landing; the other domains go on.
"""

from __future__ import annotations

import argparse
import datetime as dt
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from spark_jobs.contracts import SDTM_CONTRACTS, domain_of_file
from spark_jobs.contracts.layout import (
    MANIFEST_NAME,
    REJECTED_FILES_DATASET,
    Delivery,
    PartitionKeyError,
)
from spark_jobs.formats.sources import (
    FileInspection,
    RowPlan,
    SourceColumn,
    file_format,
    inspect_bytes,
    iter_file_rows,
)
from spark_jobs.runtime.reporting import JobReporter, json_value, path_value, table_schema_value
from spark_jobs.runtime.session import JobError, build_session, run_job
from spark_jobs.storage.filesystem import FileStatus, LakeStorage
from spark_jobs.storage.partitions import PartitionWriter, lineage_record, write_observed

PROVENANCE_FIELDS = (
    T.StructField("_source_row", T.LongType(), False),
    T.StructField("_source_uri", T.StringType(), False),
    T.StructField("_source_sha256", T.StringType(), False),
    T.StructField("_delivery", T.StringType(), False),
    T.StructField("_ingested_run_id", T.StringType(), False),
)
# Files that document a delivery rather than carry data: kept in landing, not ingested.
DOCUMENT_EXTENSIONS = (".xml", ".pdf", ".md", ".txt", ".html", ".htm", ".docx", ".rtf")


@dataclass(frozen=True)
class IngestArgs:
    input: str
    output: str
    quarantine: str
    delivery: Delivery
    datasets: tuple[str, ...]
    run_id: str
    checks_only: bool = False


def parse_args(argv: Sequence[str] | None = None) -> IngestArgs:
    parser = argparse.ArgumentParser(prog="ingest.py", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--input", required=True, help="landing folder of one delivery")
    parser.add_argument("--output", required=True, help="raw zone root of the source family")
    parser.add_argument("--quarantine", required=True, help="quarantine zone root")
    parser.add_argument("--study", required=True)
    parser.add_argument("--delivery", required=True)
    parser.add_argument("--datasets", default=",".join(c.name for c in SDTM_CONTRACTS))
    parser.add_argument("--run-id", default=None)
    parser.add_argument(
        "--checks-only",
        action="store_true",
        help="re-inspect the landing files and report checks; write nothing",
    )
    ns = parser.parse_args(argv)
    known = {c.name for c in SDTM_CONTRACTS}
    datasets = tuple(d.strip().lower() for d in ns.datasets.split(",") if d.strip())
    unknown = sorted(set(datasets) - known)
    if unknown:
        parser.error(f"unknown datasets {unknown}; known: {sorted(known)}")
    try:
        delivery = Delivery(ns.study, ns.delivery)
    except PartitionKeyError as error:
        parser.error(str(error))
    return IngestArgs(
        input=ns.input.rstrip("/"),
        output=ns.output.rstrip("/"),
        quarantine=ns.quarantine.rstrip("/"),
        delivery=delivery,
        datasets=datasets,
        run_id=ns.run_id or uuid.uuid4().hex,
        checks_only=ns.checks_only,
    )


@dataclass(frozen=True)
class LandingFile:
    status: FileStatus
    dataset: str | None
    problem: str | None  # why it cannot be ingested at all (unknown domain, unsupported type)


def classify_landing(listing: Sequence[FileStatus]) -> tuple[list[LandingFile], list[FileStatus]]:
    """Data files (with their dataset or a problem) and documentation files of a delivery."""
    data_files: list[LandingFile] = []
    documents: list[FileStatus] = []
    for status in listing:
        name = status.name
        if name == MANIFEST_NAME or name.startswith("."):
            continue
        if status.is_dir:
            data_files.append(LandingFile(status, None, "unexpected folder inside a delivery"))
            continue
        if name.lower().endswith(DOCUMENT_EXTENSIONS):
            documents.append(status)
            continue
        fmt = file_format(name)
        dataset = domain_of_file(name)
        if fmt is None:
            problem = "unsupported file type (expected .xpt, .csv or .parquet)"
        elif dataset is None:
            stem = name.split(".", 1)[0]
            problem = f"unknown domain {stem.upper()!r}: no dataset contract for this file"
        else:
            problem = None
        data_files.append(LandingFile(status, dataset, problem))
    return data_files, documents


def read_manifest(storage: LakeStorage, landing_uri: str) -> dict[str, dict[str, Any]] | None:
    uri = f"{landing_uri}/{MANIFEST_NAME}"
    if not storage.exists(uri):
        return None
    try:
        manifest = storage.read_json(uri)
        return {f["name"]: f for f in manifest["files"]}
    except (ValueError, KeyError, TypeError) as error:
        raise JobError(f"{uri}: unreadable delivery manifest ({error})") from None


def check_against_manifest(
    inspection: FileInspection, manifest: dict[str, dict[str, Any]] | None
) -> FileInspection:
    """Reject a file whose bytes differ from what the delivery manifest promised."""
    if manifest is None or not inspection.accepted:
        return inspection
    entry = manifest.get(inspection.name)
    if entry is None:
        reason = f"not listed in {MANIFEST_NAME}; added after the delivery was landed"
    elif int(entry.get("size", -1)) != inspection.size:
        reason = (
            f"size {inspection.size} bytes differs from {entry.get('size')} in {MANIFEST_NAME} "
            "(truncated or changed after landing)"
        )
    elif entry.get("sha256") != inspection.sha256:
        reason = f"sha256 differs from {MANIFEST_NAME} (changed after landing)"
    else:
        return inspection
    return replace(inspection, accepted=False, reason=reason)


def inspect_files(spark: SparkSession, files: Sequence[LandingFile]) -> list[FileInspection]:
    """Validate the bytes of each file on the executors, one task per file's content."""
    # Spark's binaryFile source skips empty files; they need no executor to be judged.
    empty = {
        f.status.uri: inspect_bytes(f.status.name, f.status.uri, b"")
        for f in files
        if f.status.size == 0
    }
    uris = [f.status.uri for f in files if f.status.uri not in empty]
    names: dict[str, str] = {f.status.uri: f.status.name for f in files}
    by_uri: dict[str, FileInspection] = dict(empty)
    if uris:
        binaries = spark.read.format("binaryFile").load(uris).select("path", "content")
        records = binaries.rdd.map(
            lambda row: inspect_bytes(
                str(names.get(row.path) or row.path.rsplit("/", 1)[-1]),
                row.path,
                bytes(row.content),
            ).as_record()
        ).collect()
        by_uri.update({r["uri"]: FileInspection.from_record(r) for r in records})
    missing = [f.status.uri for f in files if f.status.uri not in by_uri]
    if missing:
        raise JobError(f"Spark could not read {missing[0]} (listed but not returned)")
    return [by_uri[f.status.uri] for f in files]


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


def union_columns(inspections: Sequence[FileInspection]) -> list[SourceColumn]:
    """Columns of a domain over all its files, in order of first appearance.

    A column typed differently in two files becomes text, so nothing is lost in raw.
    """
    order: list[str] = []
    types: dict[str, set[str]] = defaultdict(set)
    labels: dict[str, str] = {}
    for inspection in inspections:
        for column in inspection.columns:
            if column.name not in types:
                order.append(column.name)
                labels[column.name] = column.label
            types[column.name].add(column.type)
    return [
        SourceColumn(
            name, next(iter(types[name])) if len(types[name]) == 1 else "string", labels[name]
        )
        for name in order
    ]


def spark_type(name: str) -> T.DataType:
    return T._parse_datatype_string(name)  # pyright: ignore[reportPrivateUsage]


def raw_schema(columns: Sequence[SourceColumn]) -> T.StructType:
    fields = [T.StructField(c.name, spark_type(c.type), True) for c in columns]
    return T.StructType([*fields, *PROVENANCE_FIELDS])


def read_domain_rows(
    spark: SparkSession,
    inspections: Sequence[FileInspection],
    columns: Sequence[SourceColumn],
    delivery: Delivery,
    run_id: str,
) -> DataFrame:
    """All rows of a domain's accepted files in the domain's union schema, with provenance."""
    schema = raw_schema(columns)
    frames: list[DataFrame] = []
    plans: dict[str, RowPlan] = {}
    for inspection in inspections:
        if inspection.format == "parquet":
            frames.append(_parquet_rows(spark, inspection, columns, delivery, run_id))
            continue
        positions = {c.name: i for i, c in enumerate(inspection.columns)}
        kinds = {c.name: c.type for c in inspection.columns}
        plans[inspection.uri] = RowPlan(
            uri=inspection.uri,
            format=inspection.format,
            source_positions=tuple(positions.get(c.name) for c in columns),
            to_text=tuple(c.type == "string" and kinds.get(c.name) == "double" for c in columns),
            provenance=(inspection.uri, inspection.sha256, delivery.key, run_id),
        )
    if plans:
        contents = spark.read.format("binaryFile").load(list(plans)).select("path", "content")
        rows = contents.rdd.flatMap(lambda row: iter_file_rows(plans[row.path], bytes(row.content)))
        # Row number sits between the data and the other provenance columns in the tuples.
        data_fields = schema.fields[: len(columns)]
        tuple_schema = T.StructType([*data_fields, *PROVENANCE_FIELDS])
        frames.append(spark.createDataFrame(rows, tuple_schema).select(*schema.fieldNames()))
    result = frames[0]
    for frame in frames[1:]:
        result = result.unionByName(frame)
    return result


def _parquet_rows(
    spark: SparkSession,
    inspection: FileInspection,
    columns: Sequence[SourceColumn],
    delivery: Delivery,
    run_id: str,
) -> DataFrame:
    df = spark.read.parquet(inspection.uri)
    df = df.toDF(*[c.strip().upper() for c in df.columns])
    present = set(df.columns)
    numbered = df.rdd.zipWithIndex().map(lambda pair: (*pair[0], pair[1] + 1))
    df = numbered.toDF([*df.columns, "_source_row"])
    selected = [
        (F.col(c.name) if c.name in present else F.lit(None)).cast(c.type).alias(c.name)
        for c in columns
    ]
    return df.select(
        *selected,
        F.col("_source_row").cast("long").alias("_source_row"),
        F.lit(inspection.uri).alias("_source_uri"),
        F.lit(inspection.sha256).alias("_source_sha256"),
        F.lit(delivery.key).alias("_delivery"),
        F.lit(run_id).alias("_ingested_run_id"),
    )


def record_rejections(
    storage: LakeStorage, args: IngestArgs, rejected: Sequence[dict[str, Any]]
) -> None:
    """Write one JSON record per rejected file under quarantine/<family>/rejected_files."""
    if not rejected:
        return
    folder = f"{args.quarantine}/{REJECTED_FILES_DATASET}/{args.delivery.hive_path}"
    storage.mkdirs(folder)
    for record in rejected:
        storage.write_json(f"{folder}/{record['file']}.json", record)


def ingest(args: IngestArgs, reporter: JobReporter) -> None:
    spark = build_session(f"clinical-ingest-{args.delivery.key}")
    storage = LakeStorage(spark)
    writer = PartitionWriter(storage, args.run_id)
    application_id = spark.sparkContext.applicationId
    listing = storage.list(args.input)
    if not listing:
        raise JobError(f"{args.input}: landing folder is missing or empty")
    manifest = read_manifest(storage, args.input)
    data_files, documents = classify_landing(listing)
    detected_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")

    def rejection(
        name: str, uri: str, size: int, reason: str, dataset: str | None, sha256: str | None = None
    ) -> dict[str, Any]:
        return {
            "file": name,
            "uri": uri,
            "size": size,
            "sha256": sha256,
            "dataset": dataset,
            "reason": reason,
            "partition": args.delivery.key,
            "run_id": args.run_id,
            "detected_at": detected_at,
        }

    rejected: list[dict[str, Any]] = []
    for landing_file in data_files:
        if landing_file.problem:
            status = landing_file.status
            reporter.error(
                f"delivery {args.delivery.key}: {status.name}: {landing_file.problem}; "
                "kept in landing and recorded as rejected"
            )
            rejected.append(
                rejection(
                    status.name, status.uri, status.size, landing_file.problem, landing_file.dataset
                )
            )

    wanted = [f for f in data_files if f.problem is None and f.dataset in args.datasets]
    inspections = [check_against_manifest(i, manifest) for i in inspect_files(spark, wanted)]
    inspections = [
        inspect_parquet(spark, i) if i.format == "parquet" and i.accepted else i
        for i in inspections
    ]
    by_dataset: dict[str, list[FileInspection]] = defaultdict(list)
    for landing_file, inspection in zip(wanted, inspections, strict=True):
        assert landing_file.dataset is not None
        by_dataset[landing_file.dataset].append(inspection)
    if manifest is not None:
        present = {s.name for s in listing}
        for name in sorted(set(manifest) - present):
            dataset = domain_of_file(name)
            if dataset in args.datasets:
                by_dataset[dataset].append(
                    FileInspection(
                        name=name,
                        uri=f"{args.input}/{name}",
                        size=0,
                        sha256="",
                        format=file_format(name) or "unknown",
                        accepted=False,
                        reason=f"listed in {MANIFEST_NAME} but missing from landing",
                    )
                )

    for dataset in args.datasets:
        files = by_dataset.get(dataset, [])
        for inspection in files:
            if not inspection.accepted:
                reporter.error(
                    f"delivery {args.delivery.key}: {inspection.name}: "
                    f"{inspection.reason}; kept in landing, raw_{dataset} rejected"
                )
                rejected.append(
                    rejection(
                        inspection.name,
                        inspection.uri,
                        inspection.size,
                        inspection.reason or "rejected",
                        dataset,
                        inspection.sha256 or None,
                    )
                )
        ingest_dataset(spark, args, reporter, writer, dataset, files, application_id)

    if not args.checks_only:
        record_rejections(storage, args, rejected)
    if documents:
        reporter.info(
            f"delivery {args.delivery.key}: documentation files kept in landing, "
            f"not ingested: {', '.join(d.name for d in documents)}"
        )


def ingest_dataset(
    spark: SparkSession,
    args: IngestArgs,
    reporter: JobReporter,
    writer: PartitionWriter,
    dataset: str,
    files: Sequence[FileInspection],
    application_id: str,
) -> None:
    """Write raw/<dataset> for the delivery, or an empty partition saying why there is none."""
    asset_key = f"raw_{dataset}"
    dataset_uri = f"{args.output}/{dataset}"
    staging = writer.staging_uri(dataset_uri, args.delivery)
    sources = [
        {k: v for k, v in i.as_record().items() if k != "columns"}
        | {"columns": [c.name for c in i.columns]}
        for i in files
    ]
    if not files:
        status, reason = "absent", f"no {dataset} file in delivery {args.delivery.key}"
    elif any(not i.accepted for i in files):
        status = "rejected"
        reason = "; ".join(f"{i.name}: {i.reason}" for i in files if not i.accepted)
    else:
        status, reason = "accepted", None

    if args.checks_only:
        rejected = [s for s in sources if not s["accepted"]]
        reporter.check(
            asset_key,
            "files_readable",
            status == "accepted",
            blocking_severity=status != "accepted",
            metadata={
                "reason": reason,
                "rejected_files": json_value(rejected),
                "files": json_value([s["name"] for s in sources]),
            },
        )
        return
    common = {
        "dataset": asset_key,
        "zone": "raw",
        "delivery": args.delivery,
        "run_id": args.run_id,
        "application_id": application_id,
    }
    if status != "accepted":
        writer.discard(staging)
        lineage = lineage_record(
            **common,
            status=status,
            reason=reason,
            sources=sources,
            rows={"in": 0, "out": 0},
            content_hash=None,
            schema=[],
        )
        final = writer.commit(dataset_uri, args.delivery, staging, lineage)
        reporter.warning(f"{asset_key} {args.delivery.key}: {status}: {reason}")
        reporter.materialization(
            asset_key,
            {
                "status": status,
                "reason": reason,
                "dagster/row_count": 0,
                "source_files": json_value(sources),
                "path": path_value(final),
                "spark_application_id": application_id,
            },
        )
        reporter.check(
            asset_key,
            "files_readable",
            False,
            blocking_severity=True,
            metadata={
                "reason": reason,
                "rejected_files": json_value([s for s in sources if not s["accepted"]]),
            },
        )
        return

    columns = union_columns(files)
    rows_in = sum(i.rows or 0 for i in files)
    frame = read_domain_rows(spark, files, columns, args.delivery, args.run_id)
    written = write_observed(frame, staging, f"raw_{dataset}")
    if written.rows != rows_in:
        writer.discard(staging)
        raise JobError(
            f"{asset_key} {args.delivery.key}: wrote {written.rows} rows but the files hold "
            f"{rows_in}; nothing committed"
        )
    schema = [
        (f.name, f.dataType.simpleString(), _label(columns, f.name)) for f in frame.schema.fields
    ]
    lineage = lineage_record(
        **common,
        status=status,
        sources=sources,
        rows={"in": rows_in, "out": written.rows},
        content_hash=written.content_hash,
        schema=[{"name": n, "type": t} for n, t, _ in schema],
    )
    final = writer.commit(dataset_uri, args.delivery, staging, lineage)
    reporter.info(
        f"{asset_key} {args.delivery.key}: {written.rows} rows from {len(files)} file(s) -> {final}"
    )
    reporter.materialization(
        asset_key,
        {
            "status": status,
            "dagster/row_count": written.rows,
            "rows_in": rows_in,
            "rows_out": written.rows,
            "content_hash": written.content_hash,
            "source_files": json_value(sources),
            "dagster/column_schema": table_schema_value(schema),
            "path": path_value(final),
            "spark_application_id": application_id,
        },
        data_version=written.content_hash,
    )
    reporter.check(
        asset_key,
        "files_readable",
        True,
        blocking_severity=False,
        metadata={"files": json_value([s["name"] for s in sources])},
    )


def _label(columns: Sequence[SourceColumn], name: str) -> str | None:
    for column in columns:
        if column.name == name:
            return column.label or None
    return None


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    run_job("ingest", lambda reporter: ingest(args, reporter))


if __name__ == "__main__":
    main()
