"""What one landing file is, and whether it can be ingested: judged from its bytes alone.

Runs inside Spark executors, so it uses only the standard library and our own readers. A file
is either accepted whole (with its columns and row count) or rejected with a one-line reason;
it is never half ingested.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from spark_jobs.contracts import DATA_EXTENSIONS
from spark_jobs.formats import xport
from spark_jobs.formats.csv_text import SourceFormatError, csv_records
from spark_jobs.formats.sniff import looks_like

SUPPORTED_FORMATS = {extension: extension for extension in DATA_EXTENSIONS}
NUMERIC = "double"
TEXT = "string"


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

    def source_record(self) -> dict[str, Any]:
        """The file as lineage records list it: columns by name only."""
        return {**self.as_record(), "columns": [c.name for c in self.columns]}


@dataclass(frozen=True)
class Inspected:
    """An inspection and, for an accepted XPT file, the layout its rows are decoded with."""

    inspection: FileInspection
    xport_layout: xport.XportLayout | None = None


def file_format(name: str) -> str | None:
    """The declared format of a landing file from its extension, or None if unsupported."""
    extension = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    return SUPPORTED_FORMATS.get(extension)


def inspect_bytes(name: str, uri: str, content: bytes) -> FileInspection:
    """Validate a whole file held in memory and describe it; never raises for bad content."""
    base = _base(name, uri, len(content), hashlib.sha256(content).hexdigest())
    if not content:
        return FileInspection(**base, accepted=False, reason="empty file (0 bytes)")
    try:
        if base["format"] == "xpt":
            return xport_inspection(base, xport.inspect(content)).inspection
        if base["format"] == "csv":
            header, rows = csv_records(content)
            columns = tuple(SourceColumn(c, TEXT) for c in header)
            reject_duplicate_columns(columns)
            return FileInspection(**base, accepted=True, rows=len(rows), columns=columns)
        if base["format"] == "parquet":
            return parquet_inspection(base, content[:64], content[-4:])
    except (SourceFormatError, xport.XportFormatError) as error:
        return FileInspection(**base, accepted=False, reason=str(error))
    return FileInspection(**base, accepted=False, reason=f"unsupported file type {name!r}")


def _base(name: str, uri: str, size: int, sha256: str) -> dict[str, Any]:
    fmt = file_format(name) or "unknown"
    return {"name": name, "uri": uri, "size": size, "sha256": sha256, "format": fmt}


def xport_inspection(base: dict[str, Any], layout: xport.XportLayout) -> Inspected:
    columns = tuple(
        SourceColumn(v.name.upper(), NUMERIC if v.kind == "numeric" else TEXT, v.label)
        for v in layout.header.variables
    )
    reject_duplicate_columns(columns)
    inspection = FileInspection(
        **base,
        accepted=True,
        rows=layout.row_count,
        dataset_label=layout.header.dataset_label,
        columns=columns,
    )
    return Inspected(inspection, layout)


def parquet_inspection(base: dict[str, Any], head: bytes, last4: bytes) -> FileInspection:
    """Parquet files only need their two magics here; Spark's reader does the rest."""
    if head[:4] != b"PAR1" or last4 != b"PAR1":
        reason = (
            "truncated Parquet file (no footer)"
            if head[:4] == b"PAR1"
            else f"not a Parquet file (looks like {looks_like(head)})"
        )
        return FileInspection(**base, accepted=False, reason=reason)
    return FileInspection(**base, accepted=True)


def reject_duplicate_columns(columns: Sequence[SourceColumn]) -> None:
    seen: set[str] = set()
    for column in columns:
        if not column.name:
            raise SourceFormatError("a column has an empty name")
        if column.name in seen:
            raise SourceFormatError(f"column {column.name} appears twice")
        seen.add(column.name)


def inspect_chunks(name: str, uri: str, size: int, chunks: Iterable[bytes]) -> Inspected:
    """Validate a file read front to back in chunks; XPT and Parquet in bounded memory.

    Every byte is hashed even after a problem is found, so a rejected file's sha256 is known.
    CSV is parsed whole: quoted fields may span lines, so a CSV file cannot be split.
    """
    fmt = file_format(name)
    if fmt not in ("xpt", "parquet") or not size:
        return Inspected(inspect_bytes(name, uri, b"".join(chunks)))
    digest = hashlib.sha256()
    scanner = xport.XportScanner(size) if fmt == "xpt" else None
    problem: str | None = None
    head, last4 = b"", b""
    for chunk in chunks:
        digest.update(chunk)
        head = head or chunk[:64]
        last4 = (last4 + chunk)[-4:]
        if scanner is not None and problem is None:
            try:
                scanner.feed(chunk)
            except xport.XportFormatError as error:
                problem = str(error)
    base = _base(name, uri, size, digest.hexdigest())
    if scanner is None:
        return Inspected(parquet_inspection(base, head, last4))
    try:
        if problem is None:
            return xport_inspection(base, scanner.finish())
    except (SourceFormatError, xport.XportFormatError) as error:
        problem = str(error)
    return Inspected(FileInspection(**base, accepted=False, reason=problem))
