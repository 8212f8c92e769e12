"""Strict CSV: UTF-8 (a BOM tolerated), every record as wide as the header, nothing guessed.

Spark's own CSV reader keeps rows with too many or too few fields and turns invalid UTF-8 into
U+FFFD without a word; a delivery file is either read exactly or rejected with the line.
"""

from __future__ import annotations

import csv
import io
import sys

from spark_jobs.formats.sniff import looks_like, sniff_format


def _lift_field_size_limit() -> int:
    """Let a field be as long as the platform allows (the `csv` default is 131,072 chars).

    A delivery has no cell-size limit: an over-long value is the contract's `max_length`
    problem for that row alone, not a reason to reject the whole file. `sys.maxsize` overflows
    the C long `csv` stores the limit in where that is 32 bits (Windows), so halve until it fits.
    """
    limit = sys.maxsize
    while True:
        try:
            csv.field_size_limit(limit)
            return limit
        except OverflowError:
            limit //= 2


FIELD_SIZE_LIMIT = _lift_field_size_limit()


class SourceFormatError(ValueError):
    """Content that does not match its declared format; the message is the user-facing reason."""


def decode_utf8(content: bytes) -> str:
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        if b"\x00" in content[:1024] or sniff_format(content[:64]) not in ("text", "json"):
            raise SourceFormatError(
                f"not a CSV text file (looks like {looks_like(content[:64])})"
            ) from None
        line = content[: error.start].count(b"\n") + 1
        raise SourceFormatError(
            f"invalid UTF-8 at byte {error.start} (line {line}); CSV files must be UTF-8"
        ) from None


def csv_records(content: bytes) -> tuple[list[str], list[list[str]]]:
    """Header (upper-cased names) and data records of a strict CSV file."""
    text = decode_utf8(content)
    if "\x00" in text:
        raise SourceFormatError(f"not a CSV text file (looks like {looks_like(content[:64])})")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    records: list[list[str]] = []
    try:
        for record in reader:
            if not record or (len(record) == 1 and record[0] == ""):
                continue  # a blank line is not a record
            if header is None:
                header = [name.strip().upper() for name in record]
            elif len(record) != len(header):
                raise SourceFormatError(
                    f"line {reader.line_num} has {len(record)} fields, the header has {len(header)}"
                )
            else:
                records.append(record)
    except csv.Error as error:
        raise SourceFormatError(f"malformed CSV at line {reader.line_num}: {error}") from None
    if header is None:
        raise SourceFormatError("no header row")
    return header, records
