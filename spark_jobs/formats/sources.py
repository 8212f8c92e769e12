"""Landing files -> rows: format detection, structural validation and parsing.

These functions run inside Spark executors on the bytes of one file, so they use only the
standard library and our own XPORT reader. Validation reads the whole file before any row is
emitted: a file is either accepted completely or rejected with a one-line reason, never half
ingested.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from spark_jobs.formats import xport

SUPPORTED_FORMATS = {"xpt": "xpt", "csv": "csv", "parquet": "parquet"}
NUMERIC = "double"
TEXT = "string"

_LOOKS_LIKE = {
    "empty": "an empty file",
    "sas-xport-v5": "a SAS XPORT v5 file",
    "sas-xport-v8": "a SAS XPORT v8 file",
    "png": "a PNG image",
    "jpeg": "a JPEG image",
    "gif": "a GIF image",
    "pdf": "a PDF document",
    "zip": "a ZIP archive",
    "gzip": "a gzip archive",
    "parquet": "a Parquet file",
    "sas7bdat": "a SAS7BDAT dataset",
    "html": "an HTML page",
    "xml": "an XML document",
    "json": "a JSON document",
    "text": "text",
    "binary": "binary data",
}


def looks_like(prefix: bytes) -> str:
    """Human words for what some bytes appear to be, for error messages."""
    return _LOOKS_LIKE.get(xport.sniff_format(prefix), "binary data")


@dataclass(frozen=True)
class SourceColumn:
    name: str
    type: str  # Spark SQL type name as stored in raw ("double", "string", "bigint" ...)
    label: str = ""


@dataclass(frozen=True)
class FileInspection:
    """What one landing file is, and whether it can be ingested."""

    name: str
    uri: str
    size: int
    sha256: str
    format: str
    accepted: bool
    reason: str | None = None
    rows: int | None = None
    dataset_label: str = ""
    columns: tuple[SourceColumn, ...] = field(default_factory=tuple)

    def as_record(self) -> dict[str, Any]:
        record = asdict(self)
        record["columns"] = [asdict(c) for c in self.columns]
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> FileInspection:
        columns = tuple(SourceColumn(**c) for c in record.get("columns", ()))
        return cls(**{**record, "columns": columns})


def file_format(name: str) -> str | None:
    """The declared format of a landing file from its extension, or None if unsupported."""
    extension = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    return SUPPORTED_FORMATS.get(extension)


def inspect_bytes(name: str, uri: str, content: bytes) -> FileInspection:
    """Validate a whole file and describe it; never raises for bad content."""
    sha256 = hashlib.sha256(content).hexdigest()
    fmt = file_format(name) or "unknown"
    base = {"name": name, "uri": uri, "size": len(content), "sha256": sha256, "format": fmt}
    if not content:
        return FileInspection(**base, accepted=False, reason="empty file (0 bytes)")
    try:
        if fmt == "xpt":
            layout = xport.inspect(content)
            columns = tuple(
                SourceColumn(v.name.upper(), NUMERIC if v.kind == "numeric" else TEXT, v.label)
                for v in layout.header.variables
            )
            _reject_duplicate_columns(columns)
            return FileInspection(
                **base,
                accepted=True,
                rows=layout.row_count,
                dataset_label=layout.header.dataset_label,
                columns=columns,
            )
        if fmt == "csv":
            header, rows = _csv_records(content)
            columns = tuple(SourceColumn(c, TEXT) for c in header)
            _reject_duplicate_columns(columns)
            return FileInspection(**base, accepted=True, rows=sum(1 for _ in rows), columns=columns)
        if fmt == "parquet":
            if content[:4] != b"PAR1" or content[-4:] != b"PAR1":
                what = looks_like(content[:64])
                reason = (
                    "truncated Parquet file (no footer)"
                    if content[:4] == b"PAR1"
                    else f"not a Parquet file (looks like {what})"
                )
                return FileInspection(**base, accepted=False, reason=reason)
            # Columns and rows of Parquet come from Spark's own reader on the driver.
            return FileInspection(**base, accepted=True)
    except SourceFormatError as error:
        return FileInspection(**base, accepted=False, reason=str(error))
    except xport.XportFormatError as error:
        return FileInspection(**base, accepted=False, reason=str(error))
    return FileInspection(**base, accepted=False, reason=f"unsupported file type {name!r}")


class SourceFormatError(ValueError):
    """Content that does not match its declared format; the message is the user-facing reason."""


def _reject_duplicate_columns(columns: Sequence[SourceColumn]) -> None:
    seen: set[str] = set()
    for column in columns:
        if not column.name:
            raise SourceFormatError("a column has an empty name")
        if column.name in seen:
            raise SourceFormatError(f"column {column.name} appears twice")
        seen.add(column.name)


def _decode_utf8(content: bytes) -> str:
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        if b"\x00" in content[:1024] or xport.sniff_format(content[:64]) not in ("text", "json"):
            raise SourceFormatError(
                f"not a CSV text file (looks like {looks_like(content[:64])})"
            ) from None
        line = content[: error.start].count(b"\n") + 1
        raise SourceFormatError(
            f"invalid UTF-8 at byte {error.start} (line {line}); CSV files must be UTF-8"
        ) from None


def _csv_records(content: bytes) -> tuple[list[str], list[list[str]]]:
    """Header and data records of a strict CSV file (every record has the header's width)."""
    text = _decode_utf8(content)
    if "\x00" in text:
        raise SourceFormatError(f"not a CSV text file (looks like {looks_like(content[:64])})")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header: list[str] | None = None
        records: list[list[str]] = []
        for record in reader:
            if not record or (len(record) == 1 and record[0] == ""):
                continue  # a blank line is not a record
            if header is None:
                header = [name.strip().upper() for name in record]
                continue
            if len(record) != len(header):
                raise SourceFormatError(
                    f"line {reader.line_num} has {len(record)} fields, the header has {len(header)}"
                )
            records.append(record)
    except csv.Error as error:
        raise SourceFormatError(f"malformed CSV at line {reader.line_num}: {error}") from None
    if header is None:
        raise SourceFormatError("no header row")
    return header, records


def format_number(value: float) -> str:
    """Text of a number read as a double, without float noise for whole numbers."""
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


@dataclass(frozen=True)
class RowPlan:
    """How to turn one file's records into rows of its domain's union schema."""

    uri: str
    format: str
    source_positions: tuple[int | None, ...]  # per union column: index in the file, or None
    to_text: tuple[bool, ...]  # per union column: numeric source value must become text
    provenance: tuple[Any, ...]  # values appended to every row (uri, sha256 placeholders ...)


def iter_file_rows(plan: RowPlan, content: bytes) -> Iterator[tuple[Any, ...]]:
    """Rows of one accepted file, each followed by its 1-based row number and provenance."""
    if plan.format == "xpt":
        records: Iterator[Sequence[Any]] = xport.iter_rows(content, xport.inspect(content))
    elif plan.format == "csv":
        records = iter(_csv_records(content)[1])
    else:
        raise ValueError(f"{plan.uri}: rows of {plan.format} files are read by Spark")
    for number, record in enumerate(records, start=1):
        values = []
        for position, to_text in zip(plan.source_positions, plan.to_text, strict=True):
            if position is None:
                values.append(None)
                continue
            value = record[position]
            if to_text and isinstance(value, float):
                value = format_number(value)
            values.append(value)
        yield (*values, number, *plan.provenance)
