"""Landing bytes -> accepted/rejected files and rows, without Spark (`spark_jobs.formats.sources`).

These functions run inside executors, so every rejection must be a one-line reason rather
than an exception, and accepted files must yield exactly their rows with provenance.
"""

from __future__ import annotations

import hashlib
import io
import struct
import zipfile
import zlib

import pytest

from clinical_platform.generators.sdtm import generate_sdtm
from clinical_platform.generators.xport_writer import write_xport
from spark_jobs.formats.csv_text import csv_records
from spark_jobs.formats.inspection import (
    NUMERIC,
    TEXT,
    FileInspection,
    SourceColumn,
    file_format,
    inspect_bytes,
)
from spark_jobs.formats.rows import RowPlan, iter_file_rows

URI = "file:/lake/landing/clinical/S01/2024-01-15/"


def inspect(name: str, content: bytes) -> FileInspection:
    return inspect_bytes(name, URI + name, content)


def tiny_png() -> bytes:
    """A real 1x1 PNG image."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00"))
        + chunk(b"IEND", b"")
    )


def tiny_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("dm.csv", "STUDYID\nS01\n")
    return buffer.getvalue()


def small_xpt() -> bytes:
    """Three DM rows with a text and a numeric column, written by our own XPORT writer."""
    buffer = io.BytesIO()
    write_xport(
        buffer,
        "DM",
        [("USUBJID", "char", 12, "Subject"), ("AGE", "numeric", 8, "Age")],
        [("S01-001", 63.0), ("S01-002", None), ("S01-003", 70.5)],
        dataset_label="Demographics",
    )
    return buffer.getvalue()


@pytest.fixture(scope="module")
def generated_dm(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    folder = tmp_path_factory.mktemp("sdtm")
    generate_sdtm(folder, 5, study="S01")
    return (folder / "dm.xpt").read_bytes()


# ---------------------------------------------------------------------------- CSV


def test_csv_with_bom_is_accepted_with_clean_header() -> None:
    """A UTF-8 BOM is not part of the first column name; names are stripped and upper-cased."""
    content = "\ufeff studyid ,Usubjid,AGE\nS01,S01-001,63\nS01,S01-002,\n".encode()
    found = inspect("dm.csv", content)
    assert found.accepted, found.reason
    assert found.format == "csv"
    assert found.rows == 2
    assert found.columns == (
        SourceColumn("STUDYID", TEXT),
        SourceColumn("USUBJID", TEXT),
        SourceColumn("AGE", TEXT),
    )
    assert found.size == len(content)
    assert found.sha256 == hashlib.sha256(content).hexdigest()
    assert found.uri == URI + "dm.csv"


def test_csv_blank_lines_and_crlf_are_not_records() -> None:
    """Blank lines are skipped, Windows line ends and quoted commas are ordinary CSV."""
    found = inspect("ae.csv", b'A,B\r\n\r\n1,"x, y"\r\n\r\n2,z\r\n')
    assert (found.accepted, found.rows) == (True, 2)


def test_csv_invalid_utf8_names_byte_and_line() -> None:
    """Latin-1 text is refused with the byte offset and line of the first bad byte."""
    content = "STUDYID,SITE\nS01,Köln\n".encode("latin-1")
    found = inspect("dm.csv", content)
    assert not found.accepted
    assert found.reason == "invalid UTF-8 at byte 18 (line 2); CSV files must be UTF-8"
    assert content[18:19] == "ö".encode("latin-1")


def test_csv_row_of_wrong_width_names_the_line() -> None:
    """One record with an extra field rejects the whole file, naming its physical line."""
    found = inspect("dm.csv", b"A,B\n1,2\n\n3,4,5\n6,7\n")
    assert not found.accepted
    assert found.reason == "line 4 has 3 fields, the header has 2"
    assert found.rows is None


def test_csv_unterminated_quote_is_malformed() -> None:
    """An unterminated quote is a malformed file, reported with its line."""
    found = inspect("dm.csv", b'A,B\n"1,2\n')
    assert not found.accepted
    assert found.reason is not None and found.reason.startswith("malformed CSV at line 2")


def test_csv_cell_of_a_mebibyte_is_read_exactly() -> None:
    """A cell far over the `csv` module's default 131,072-character limit is read back exactly.

    Rejecting the file for it would lose every other row; `max_length` quarantines that row.
    """
    cell = ('padded text, "quoted"\nsecond line ü ' * 40_000)[: 1 << 20]
    assert len(cell) == 1 << 20
    quoted = cell.replace('"', '""')
    content = f'STUDYID,AETERM,AESEQ\nS01,"{quoted}",1\nS01,short,2\n'.encode()
    assert csv_records(content) == (
        ["STUDYID", "AETERM", "AESEQ"],
        [["S01", cell, "1"], ["S01", "short", "2"]],
    )
    found = inspect("ae.csv", content)
    assert (found.accepted, found.reason, found.rows) == (True, None, 2)
    plan = RowPlan(URI + "ae.csv", "csv", (0, 1, 2), (False, False, False), ())
    assert [row[1] for row in iter_file_rows(plan, content)] == [cell, "short"]


@pytest.mark.parametrize(
    ("content", "what"),
    [
        (tiny_png(), "a PNG image"),
        (tiny_zip(), "a ZIP archive"),
    ],
)
def test_binary_named_csv_is_rejected_saying_what_it_looks_like(content: bytes, what: str) -> None:
    """An image or archive with a .csv name is reported for what it really is."""
    found = inspect("vs.csv", content)
    assert not found.accepted
    assert found.reason == f"not a CSV text file (looks like {what})"


@pytest.mark.parametrize("content", [b"A,A\n1,2\n", b"A,,B\n1,2,3\n"])
def test_csv_duplicate_or_empty_column_names_are_rejected(content: bytes) -> None:
    """Column names must be unique and non-empty, or rows could not be mapped."""
    found = inspect("dm.csv", content)
    assert not found.accepted
    assert found.reason in ("column A appears twice", "a column has an empty name")


@pytest.mark.parametrize("name", ["dm.csv", "dm.xpt", "dm.parquet"])
def test_empty_file_is_rejected(name: str) -> None:
    """Zero bytes are rejected whatever the declared format."""
    found = inspect(name, b"")
    assert (found.accepted, found.reason, found.size) == (False, "empty file (0 bytes)", 0)
    assert found.sha256 == hashlib.sha256(b"").hexdigest()


def test_csv_with_only_blank_lines_has_no_header() -> None:
    """A file of blank lines has no header and is rejected."""
    assert inspect("dm.csv", b"\n\r\n\n").reason == "no header row"


# ---------------------------------------------------------------------------- XPORT


def test_generated_xpt_is_accepted(generated_dm: bytes) -> None:
    """A whole generated DM file: five rows, its label and typed columns."""
    found = inspect("dm.xpt", generated_dm)
    assert found.accepted, found.reason
    assert (found.format, found.rows, found.dataset_label) == ("xpt", 5, "Demographics")
    types = {c.name: c.type for c in found.columns}
    assert (types["USUBJID"], types["AGE"]) == (TEXT, NUMERIC)
    assert found.columns[0] == SourceColumn("STUDYID", TEXT, "Study Identifier")


@pytest.mark.parametrize(
    ("cut", "reason"),
    [
        (80, "truncated: last observation is incomplete"),
        (7, "truncated: size 5433 bytes is not a whole number of 80-byte records"),
        (2720, "truncated inside the headers"),
    ],
)
def test_truncated_xpt_is_rejected(generated_dm: bytes, cut: int, reason: str) -> None:
    """A file cut mid-observation, mid-record or inside its headers is never half ingested."""
    assert len(generated_dm) == 5440
    found = inspect("dm.xpt", generated_dm[:-cut])
    assert not found.accepted
    assert found.reason is not None and found.reason.startswith(reason)
    assert found.rows is None and found.columns == ()


def test_csv_named_xpt_is_rejected() -> None:
    """A CSV named .xpt fails the XPORT header check, saying what it looks like."""
    found = inspect("dm.xpt", b"STUDYID,USUBJID\nS01,S01-001\n")
    assert not found.accepted
    assert found.reason is not None
    assert found.reason.startswith("not a SAS XPORT v5 file (bad header; looks like")


# ---------------------------------------------------------------------------- Parquet, others


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"STUDYID,USUBJID\nS01,S01-001\n", "not a Parquet file (looks like text)"),
        (tiny_png(), "not a Parquet file (looks like a PNG image)"),
        (b"PAR1" + bytes(20), "truncated Parquet file (no footer)"),
    ],
)
def test_parquet_named_file_that_is_not_parquet(content: bytes, reason: str) -> None:
    """Text, images and footer-less files named .parquet are rejected before Spark reads them."""
    found = inspect("lb.parquet", content)
    assert (found.accepted, found.reason, found.format) == (False, reason, "parquet")


def test_parquet_with_both_magics_is_left_to_spark() -> None:
    """Columns and rows of Parquet come from Spark on the driver, not from this inspection."""
    found = inspect("lb.parquet", b"PAR1" + bytes(20) + b"PAR1")
    assert (found.accepted, found.rows, found.columns) == (True, None, ())


@pytest.mark.parametrize("name", ["dm.txt", "dm", "dm.xlsx", "dm.csv.gz"])
def test_unknown_extension_is_rejected(name: str) -> None:
    """Only .xpt, .csv and .parquet are ingested; anything else is rejected by name."""
    found = inspect(name, b"STUDYID\nS01\n")
    assert (found.accepted, found.format) == (False, "unknown")
    assert found.reason == f"unsupported file type {name!r}"


def test_extension_is_case_insensitive() -> None:
    """DM.XPT and dm.xpt are the same format; a name without extension has none."""
    assert [file_format(n) for n in ("DM.XPT", "ae.Csv", "lb.PARQUET", "notes")] == [
        "xpt",
        "csv",
        "parquet",
        None,
    ]


def test_inspection_record_round_trips() -> None:
    """The record stored in lineage rebuilds the same inspection."""
    found = inspect("dm.xpt", small_xpt())
    assert FileInspection.from_record(found.as_record()) == found


# ---------------------------------------------------------------------------- rows


def test_csv_rows_numbered_from_one_with_provenance() -> None:
    """Union columns are picked by position (None where the file lacks one), then the row
    number, then the provenance values."""
    plan = RowPlan(
        uri=URI + "dm.csv",
        format="csv",
        source_positions=(1, None, 0),
        to_text=(False, False, False),
        provenance=(URI + "dm.csv", "abc123"),
    )
    rows = list(iter_file_rows(plan, b"A,B\n\n1,x\n2,y\n"))
    assert rows == [
        ("x", None, "1", 1, URI + "dm.csv", "abc123"),
        ("y", None, "2", 2, URI + "dm.csv", "abc123"),
    ]


def test_xpt_rows_convert_numbers_to_text_only_where_the_union_is_text() -> None:
    """AGE is text in the union (another file had it as text): 63.0 -> "63", 70.5 -> "70.5",
    missing stays None; where the union is numeric the float is kept."""
    content = small_xpt()
    as_text = RowPlan(URI + "dm.xpt", "xpt", (0, 1), (False, True), ("u",))
    as_number = RowPlan(URI + "dm.xpt", "xpt", (0, 1), (False, False), ("u",))
    assert list(iter_file_rows(as_text, content)) == [
        ("S01-001", "63", 1, "u"),
        ("S01-002", None, 2, "u"),
        ("S01-003", "70.5", 3, "u"),
    ]
    assert list(iter_file_rows(as_number, content)) == [
        ("S01-001", 63.0, 1, "u"),
        ("S01-002", None, 2, "u"),
        ("S01-003", 70.5, 3, "u"),
    ]


def test_generated_xpt_rows_match_inspection(generated_dm: bytes) -> None:
    """Every inspected row is yielded, numbered 1..n."""
    found = inspect("dm.xpt", generated_dm)
    positions = tuple(range(len(found.columns)))
    plan = RowPlan(found.uri, "xpt", positions, (False,) * len(positions), (found.sha256,))
    rows = list(iter_file_rows(plan, generated_dm))
    assert [row[-2] for row in rows] == [1, 2, 3, 4, 5]
    assert {row[-1] for row in rows} == {found.sha256}
    assert {row[0] for row in rows} == {"S01"}


def test_rows_of_parquet_are_refused() -> None:
    """Parquet rows come from Spark's reader, never from this row iterator."""
    plan = RowPlan("file:/x/lb.parquet", "parquet", (0,), (False,), ())
    with pytest.raises(ValueError, match="rows of parquet files are read by Spark"):
        list(iter_file_rows(plan, b"PAR1PAR1"))


def test_to_text_drops_float_noise_only_for_whole_numbers() -> None:
    """Whole numbers become integers as text; others keep their shortest repr."""
    buffer = io.BytesIO()
    write_xport(
        buffer,
        "VS",
        [("VISITNUM", "numeric", 8, "")],
        [(9.299999999999999,), (12.0,), (-0.0,), (1e15,), (0.1,)],
    )
    plan = RowPlan("u", "xpt", (0,), (True,), ())
    values = [row[0] for row in iter_file_rows(plan, buffer.getvalue())]
    assert values == ["9.299999999999999", "12", "0", "1000000000000000.0", "0.1"]
