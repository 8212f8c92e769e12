"""Level 1: the ingest job's steps on a few files: classify, check, inspect, read, guard writes."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from clinical_platform.generators.sdtm import generate_sdtm
from clinical_platform.generators.xport_writer import write_xport
from spark_jobs import ingest
from spark_jobs.contracts.layout import Delivery, LakeLayout, Zone
from spark_jobs.contracts.outputs import PROVENANCE_NAMES, SOURCE_ROW, output
from spark_jobs.formats import raw_rows, xport
from spark_jobs.formats.inspection import FileInspection, SourceColumn
from spark_jobs.runtime.session import JobError
from spark_jobs.storage.filesystem import FileStatus
from spark_jobs.storage.lineage import UndeclaredSchemaError, require_declared_schema
from spark_jobs.storage.tables import LakeTables

DELIVERY = Delivery("S01", "2024-01-15")
LANDING = "file:/lake/landing/clinical/S01/2024-01-15"


def status(name: str, size: int = 10, is_dir: bool = False) -> FileStatus:
    return FileStatus(f"{LANDING}/{name}", name, size, is_dir)


def inspection(name: str, **fields: object) -> FileInspection:
    base: dict[str, object] = {
        "name": name,
        "uri": f"{LANDING}/{name}",
        "size": 100,
        "sha256": "a" * 64,
        "format": name.rsplit(".", 1)[-1],
        "accepted": True,
    }
    return FileInspection(**{**base, **fields})  # pyright: ignore[reportArgumentType]


def vs_xpt(rows: int) -> bytes:
    """VS rows with a numeric result; VISITNUM in the middle to test column order."""
    buffer = io.BytesIO()
    write_xport(
        buffer,
        "VS",
        [
            ("USUBJID", "char", 8, "Subject"),
            ("VSSEQ", "numeric", 8, "Sequence"),
            ("VSSTRESN", "numeric", 8, "Result"),
        ],
        [(f"S01-{i:03d}", float(i), 100.0 + i) for i in range(1, rows + 1)],
    )
    return buffer.getvalue()


# ---------------------------------------------------------------------------- landing


def test_classify_landing_sorts_data_documents_and_problems() -> None:
    listing = [
        status("_delivery.json"),
        status(".DS_Store"),
        status("define.xml"),
        status("dm.xpt"),
        status("lbch.csv"),
        status("notes.xpt"),
        status("vs.sas7bdat"),
        status("extra", is_dir=True),
        status("ae.xpt._COPYING_"),
        status("~$notes.csv"),
    ]
    landing = ingest.classify_landing(listing)
    assert [d.name for d in landing.documents] == ["define.xml"]
    assert [(s.name, reason.split(" (")[0].split(";")[0]) for s, reason in landing.skipped] == [
        (".DS_Store", "hidden file"),
        ("ae.xpt._COPYING_", "temporary file of a transfer or an editor"),
        ("~$notes.csv", "temporary file of a transfer or an editor"),
    ]
    data = landing.data_files
    assert [(f.status.name, f.dataset, f.problem) for f in data] == [
        ("dm.xpt", "dm", None),
        ("lbch.csv", "lb", None),
        ("notes.xpt", None, "unknown domain 'NOTES': no dataset contract for this file"),
        ("vs.sas7bdat", "vs", "unsupported file type (expected .xpt, .csv or .parquet)"),
        ("extra", None, "unexpected folder inside a delivery"),
    ]


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        (None, "not listed in _delivery.json; added after the delivery was landed"),
        (
            {"size": 99, "sha256": "a" * 64},
            "size 100 bytes differs from 99 in _delivery.json (truncated or changed after landing)",
        ),
        (
            {"size": 100, "sha256": "b" * 64},
            "sha256 differs from _delivery.json (changed after landing)",
        ),
        ({"size": 100, "sha256": "a" * 64}, None),
    ],
)
def test_manifest_check(entry: dict[str, object] | None, reason: str | None) -> None:
    manifest = {} if entry is None else {"vs.xpt": {"name": "vs.xpt", **entry}}
    checked = ingest.check_against_manifest(inspection("vs.xpt"), manifest)
    assert (checked.accepted, checked.reason) == (reason is None, reason)


def test_files_listed_but_missing_are_rejected_per_dataset() -> None:
    manifest = {"dm.xpt": {}, "vs.xpt": {}, "define.xml": {}}
    found = ingest.missing_from_landing(manifest, [status("dm.xpt")], LANDING)
    assert [(d, i.inspection.name, i.inspection.reason) for d, i in found] == [
        ("vs", "vs.xpt", "listed in _delivery.json but missing from landing")
    ]


def test_dataset_status_and_the_files_readable_check() -> None:
    good, bad = inspection("lbch.xpt"), inspection("lbhe.xpt", accepted=False, reason="truncated")
    assert ingest.dataset_status("lb", DELIVERY.key, []) == (
        "absent",
        "no lb file in delivery S01/2024-01-15",
    )
    assert ingest.dataset_status("lb", DELIVERY.key, [good, bad]) == (
        "rejected",
        "lbhe.xpt: truncated",
    )
    assert ingest.dataset_status("lb", DELIVERY.key, [good]) == ("accepted", "")
    sources = [good.source_record(), bad.source_record()]
    failed = ingest.files_readable("rejected", "lbhe.xpt: truncated", sources)
    assert (failed.name, failed.passed, failed.blocking) == ("files_readable", False, True)
    assert failed.metadata["rejected_files"] == [sources[1]]
    passed = ingest.files_readable("accepted", "", sources[:1])
    assert (passed.passed, dict(passed.metadata)) == (True, {"files": ["lbch.xpt"]})
    rechecked = ingest.files_readable("accepted", "", sources[:1], checks_only=True)
    assert dict(rechecked.metadata) == {"reason": None, "rejected_files": [], "files": ["lbch.xpt"]}


# ---------------------------------------------------------------------------- columns


def test_union_columns_put_declared_columns_first_and_text_wins_a_type_conflict() -> None:
    csv = inspection(
        "vs.csv",
        columns=(SourceColumn("EXTRA", "string"), SourceColumn("VSSEQ", "string")),
    )
    xpt = inspection(
        "vs.xpt",
        columns=(SourceColumn("VSSEQ", "double", "Sequence"), SourceColumn("USUBJID", "string")),
    )
    columns = raw_rows.union_columns([csv, xpt], output(Zone.RAW, "vs"))
    assert [(c.name, c.type) for c in columns] == [
        ("USUBJID", "string"),
        ("VSSEQ", "string"),
        ("EXTRA", "string"),
    ]


# ---------------------------------------------------------------------------- executors


def test_files_are_inspected_and_read_in_byte_ranges(
    spark: SparkSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file split into many ranges gives every row once, numbered, with provenance."""
    (tmp_path / "vs.xpt").write_bytes(vs_xpt(25))
    (tmp_path / "ae.xpt").write_bytes(vs_xpt(3)[:-7])  # cut: not whole 80-byte records
    (tmp_path / "ex.xpt").write_bytes(b"")
    files = [
        FileStatus(f"file:{tmp_path / n}", n, (tmp_path / n).stat().st_size, False)
        for n in ("vs.xpt", "ae.xpt", "ex.xpt")
    ]
    found = raw_rows.inspect_files(spark, files)
    assert [(f.inspection.accepted, f.inspection.rows) for f in found] == [
        (True, 25),
        (False, None),
        (False, None),
    ]
    assert found[1].inspection.reason is not None and found[1].inspection.reason.startswith(
        "truncated"
    )
    assert found[2].inspection.reason == "empty file (0 bytes)"
    # 24-byte observations, ranges of at most 5 rows: 5 tasks for 25 rows.
    monkeypatch.setattr(raw_rows, "MIN_RANGE_BYTES", 120)
    monkeypatch.setattr(raw_rows, "MAX_RANGE_BYTES", 120)
    vs = [found[0]]
    assert found[0].xport_layout is not None
    assert len(xport.plan_row_ranges(found[0].xport_layout, 120)) == 5
    columns = raw_rows.union_columns([f.inspection for f in vs], output(Zone.RAW, "vs"))
    frame = raw_rows.read_domain_rows(spark, vs, columns, DELIVERY, "run-1")
    assert frame.columns == ["USUBJID", "VSSEQ", "VSSTRESN", *PROVENANCE_NAMES]
    rows = sorted(frame.collect(), key=lambda r: r["_source_row"])
    assert [r["_source_row"] for r in rows] == list(range(1, 26))
    assert [(r["USUBJID"], r["VSSEQ"], r["VSSTRESN"]) for r in rows[:2]] == [
        ("S01-001", 1.0, 101.0),
        ("S01-002", 2.0, 102.0),
    ]
    assert {(r["_source_uri"], r["_delivery"], r["_ingested_run_id"]) for r in rows} == {
        (files[0].uri, "S01/2024-01-15", "run-1")
    }
    assert {r["_source_sha256"] for r in rows} == {found[0].inspection.sha256}


def test_byte_ranges_give_the_rows_of_a_whole_file_read(
    spark: SparkSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A generated lbch.xpt (846 rows) cut into 17 ranges reads as the whole file decoded
    in one piece: the same values, in the same row numbers."""
    generate_sdtm(tmp_path, 12, study="RANGE01")
    path = tmp_path / "lbch.xpt"
    (found,) = raw_rows.inspect_files(
        spark, [FileStatus(f"file:{path}", path.name, path.stat().st_size, False)]
    )
    assert found.xport_layout is not None
    data = path.read_bytes()
    whole = list(xport.iter_rows(data, found.xport_layout))
    ranged_bytes = 50 * found.xport_layout.header.observation_length
    monkeypatch.setattr(raw_rows, "MIN_RANGE_BYTES", ranged_bytes)
    monkeypatch.setattr(raw_rows, "MAX_RANGE_BYTES", ranged_bytes)
    assert len(xport.plan_row_ranges(found.xport_layout, ranged_bytes)) == 17
    columns = raw_rows.union_columns([found.inspection], output(Zone.RAW, "lb"))
    frame = raw_rows.read_domain_rows(spark, [found], columns, DELIVERY, "run-1")
    assert frame.rdd.getNumPartitions() == 17
    names = [c.name for c in columns]
    ranged = {r["_source_row"]: tuple(r[n] for n in names) for r in frame.collect()}
    assert len(whole) == 846 and len(ranged) == len(whole)
    assert [ranged[number] for number in range(1, len(whole) + 1)] == whole


def test_an_xpt_file_without_observations_gives_no_rows(
    spark: SparkSession, tmp_path: Path
) -> None:
    """A domain with no records yet (a header and no observations) is accepted with 0 rows."""
    (tmp_path / "vs.xpt").write_bytes(vs_xpt(0))
    files = [
        FileStatus(
            f"file:{tmp_path / 'vs.xpt'}", "vs.xpt", (tmp_path / "vs.xpt").stat().st_size, False
        )
    ]
    found = raw_rows.inspect_files(spark, files)
    assert [(f.inspection.accepted, f.inspection.rows) for f in found] == [(True, 0)]
    columns = raw_rows.union_columns([f.inspection for f in found], output(Zone.RAW, "vs"))
    frame = raw_rows.read_domain_rows(spark, found, columns, DELIVERY, "run-1")
    assert frame.columns == ["USUBJID", "VSSEQ", "VSSTRESN", *PROVENANCE_NAMES]
    assert frame.count() == 0


def test_a_csv_file_is_read_whole_beside_an_xpt_file(spark: SparkSession, tmp_path: Path) -> None:
    (tmp_path / "vs.xpt").write_bytes(vs_xpt(2))
    (tmp_path / "vs2.csv").write_bytes(b"USUBJID,VSSEQ,EXTRA\nS01-009,9,x\n")
    files = [
        FileStatus(f"file:{tmp_path / n}", n, (tmp_path / n).stat().st_size, False)
        for n in ("vs.xpt", "vs2.csv")
    ]
    found = raw_rows.inspect_files(spark, files)
    columns = raw_rows.union_columns([f.inspection for f in found], output(Zone.RAW, "vs"))
    frame = raw_rows.read_domain_rows(spark, found, columns, DELIVERY, "run-1")
    rows = {(r["USUBJID"], r["VSSEQ"], r["VSSTRESN"], r["EXTRA"]) for r in frame.collect()}
    # VSSEQ is text in the union (the CSV has it as text): 1.0 from the XPT becomes "1".
    assert rows == {
        ("S01-001", "1", 101.0, None),
        ("S01-002", "2", 102.0, None),
        ("S01-009", "9", None, "x"),
    }


# ---------------------------------------------------------------------------- writes


def test_a_column_the_contract_does_not_declare_is_never_written(
    spark: SparkSession, tmp_path: Path
) -> None:
    """The deliberate mismatch: a job adds a column its contract lacks, and staging refuses
    before it creates a branch or writes a file."""
    curated = output(Zone.CURATED, "sv")
    schema = ", ".join(f"`{c.name}` {c.type}" for c in curated.columns)
    frame = spark.createDataFrame([], schema)
    require_declared_schema(frame, curated)  # as declared: accepted
    extended = frame.selectExpr("*", "'x' AS SVCOMMENT")
    tables = LakeTables(spark, LakeLayout(str(tmp_path / "lake")), "run-1")
    with pytest.raises(UndeclaredSchemaError) as refused:
        tables.stage(extended, curated, DELIVERY)
    assert isinstance(refused.value, JobError)
    assert str(refused.value) == (
        "curated_sv: the job would write a schema its contract does not declare "
        "(column SVCOMMENT is written but not declared); nothing written"
    )
    assert not (tmp_path / "lake").exists()


@pytest.mark.parametrize("own_metadata_column", [False, True])
def test_parquet_rows_are_numbered_as_the_file_holds_them(
    spark: SparkSession, tmp_path: Path, own_metadata_column: bool
) -> None:
    """Row numbers follow the file across row groups and splits: on the JVM where Spark has
    `_metadata.row_index`, by zipWithIndex where a file's own `_metadata` column hides it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {"value": [f"v{i}" for i in range(30_000)]}
    if own_metadata_column:
        columns["_metadata"] = ["x"] * 30_000
    path = tmp_path / "rows.parquet"
    pq.write_table(pa.table(columns), path, row_group_size=2_000)
    split = "spark.sql.files.maxPartitionBytes"
    spark.conf.set(split, "20000")  # several splits of one file, in any order
    try:
        rows = raw_rows.numbered_parquet(spark, path.as_uri())
        if spark.version >= "3.5":  # Spark 3.4 reads this small file as one split
            assert rows.rdd.getNumPartitions() > 1
        found = {r.VALUE: r[SOURCE_ROW] for r in rows.collect()}
    finally:
        spark.conf.unset(split)
    assert found == {f"v{i}": i + 1 for i in range(30_000)}
