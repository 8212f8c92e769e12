"""SAS XPORT v5 writer for the generators: the other half of `spark_jobs.formats.xport`.

Only the synthetic-data generator (and tests) write XPORT files, so the writer lives here and
is not shipped to Spark in the code bundle. Output is byte-for-byte deterministic for a fixed
creation time and reads back exactly through the reader (see tests/test_xport.py).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import BinaryIO

from spark_jobs.formats.sniff import xport_header_prefix
from spark_jobs.formats.xport import RECORD_LENGTH

_ZEROS30 = b"0" * 30
_NAMESTR_140 = struct.Struct(">hhhh8s40s8shhh2s8shhi52s")
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_MAX_CHAR_LENGTH = 200
_IBM_MISSING = b"." + bytes(7)
_IBM_MAX_EXPONENT = 127


def ieee_to_ibm(value: float | None) -> bytes:
    """Encode as an 8-byte IBM 370 float; None and NaN become the SAS missing value ".".

    Exact for every finite double with 16**-65 <= |value| < 16**63 (IBM has 53 to 56 mantissa
    bits there). Smaller magnitudes are rounded to nearest, ties to even, into denormal IBM
    form and reach zero below 2**-313. Zero, including -0.0, is written as eight zero bytes
    because readers take a lone sign byte for a missing value. Raises ValueError beyond the
    IBM range and for infinities.
    """
    if value is None:
        return _IBM_MISSING
    try:
        number = float(value)
    except OverflowError:
        raise ValueError(f"value {value!r} is outside the IBM float range") from None
    if math.isnan(number):
        return _IBM_MISSING
    if math.isinf(number):
        raise ValueError(f"value {number!r} cannot be stored in a SAS XPORT file")
    if number == 0.0:
        return bytes(8)
    sign = 0x80 if number < 0 else 0
    fraction, exp2 = math.frexp(abs(number))  # abs = fraction * 2**exp2, 0.5 <= fraction < 1
    mantissa53 = int(math.ldexp(fraction, 53))  # abs = mantissa53 * 2**(exp2 - 53), exact
    exponent = 64 + -(-exp2 // 4)  # smallest e with abs < 16**(e - 64)
    if exponent > _IBM_MAX_EXPONENT:
        raise ValueError(f"value {number!r} is outside the IBM float range (|x| < 7.2e75)")
    exponent = max(exponent, 0)
    shift = exp2 - 53 - (4 * exponent - 312)  # mantissa56 = mantissa53 * 2**shift
    if shift >= 0:  # always, unless the exponent was clamped to 0 above
        mantissa = mantissa53 << shift
    else:  # below 16**-65: denormal, fewer than 52 bits, so rounding cannot carry out
        mantissa = _round_shift_right(mantissa53, -shift)
        if not mantissa:
            return bytes(8)
    return bytes([sign | exponent]) + mantissa.to_bytes(7, "big")


def _round_shift_right(value: int, bits: int) -> int:
    """value / 2**bits rounded to nearest, ties to even."""
    quotient = value >> bits
    remainder = value - (quotient << bits)
    half = 1 << (bits - 1)
    if remainder > half or (remainder == half and quotient & 1):
        quotient += 1
    return quotient


# --------------------------------------------------------------------------- writer

_WRITER_VERSION = b"9.4".ljust(8)
_WRITER_OS = b"PYTHON".ljust(8)
_FLUSH_BYTES = 1 << 20


def _sas_datetime(moment: datetime) -> bytes:
    """ddMMMyy:hh:mm:ss as in the header records, independent of the locale."""
    text = (
        f"{moment.day:02d}{_MONTHS[moment.month - 1]}{moment.year % 100:02d}:"
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    )
    return text.encode("ascii")


def _header_record(name: str, numbers: bytes = _ZEROS30) -> bytes:
    """An 80-byte header record with its 30-digit numeric tail."""
    return xport_header_prefix(name) + numbers + b"  "


def _sas_name(name: str, what: str) -> bytes:
    """Validate a SAS v5 name and return it upper-cased, blank-padded to 8 bytes."""
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a string, got {name!r}")
    if not name:
        raise ValueError(f"{what} must not be empty")
    if len(name) > 8:
        raise ValueError(f"{what} {name!r} is longer than 8 characters")
    valid = name.isascii() and (name[0].isalpha() or name[0] == "_")
    if not valid or not all(c.isalnum() or c == "_" for c in name):
        raise ValueError(f"{what} {name!r} is not a SAS name (letters, digits, _)")
    return name.upper().encode("ascii").ljust(8)


def _label_bytes(label: str, what: str, encoding: str) -> bytes:
    """Validate a label (at most 40 characters and 40 encoded bytes), blank-padded."""
    if not isinstance(label, str):
        raise TypeError(f"{what} must be a string, got {label!r}")
    encoded = label.encode(encoding)
    if len(label) > 40 or len(encoded) > 40:
        raise ValueError(f"{what} {label!r} is longer than 40 characters/bytes")
    return encoded.ljust(40)


def write_xport(
    out: BinaryIO,
    dataset_name: str,
    variables: Sequence[tuple[str, str, int, str]],
    rows: Iterable[Sequence[str | float | int | None]],
    dataset_label: str = "",
    encoding: str = "latin-1",
    created: datetime | None = None,
) -> int:
    """Write a one-member XPORT v5 file and return the number of rows written.

    variables are (name, kind "numeric"/"char", length, label); numeric length is 8, char
    length 1..200. Names are stored upper-case. Character values are encoded with `encoding`
    and blank padded (trailing blanks do not survive a round trip; None is written as blank);
    numeric None/NaN is the missing value ".". Output is byte-for-byte deterministic for a fixed
    `created`. Raises ValueError for invalid names, labels, kinds, lengths or values; the check
    on the last row happens after earlier rows were written, so discard `out` on error. A final
    all-blank observation is refused because readers cannot tell it from padding.
    """
    name_bytes = _sas_name(dataset_name, "dataset name")
    label_bytes = _label_bytes(dataset_label, "dataset label", encoding)
    if not variables:
        raise ValueError("at least one variable is required")
    if len(variables) > 9999:
        raise ValueError("at most 9999 variables fit in an XPORT v5 file")
    namestrs = bytearray()
    kinds: list[tuple[bool, int]] = []
    seen: set[bytes] = set()
    position = 0
    for number, spec in enumerate(variables, start=1):
        if len(spec) != 4:
            raise ValueError(f"variable #{number}: expected (name, kind, length, label)")
        var_name, kind, length, label = spec
        var_bytes = _sas_name(var_name, "variable name")
        if var_bytes in seen:
            raise ValueError(f"duplicate variable name {var_name!r}")
        seen.add(var_bytes)
        if kind == "numeric":
            if length != 8:
                raise ValueError(f"numeric variable {var_name!r} must have length 8")
            ntype = 1
        elif kind == "char":
            if not isinstance(length, int) or not 1 <= length <= _MAX_CHAR_LENGTH:
                raise ValueError(
                    f"char variable {var_name!r} length must be 1 to {_MAX_CHAR_LENGTH}"
                )
            ntype = 2
        else:
            raise ValueError(f"variable {var_name!r} has kind {kind!r} (use numeric or char)")
        namestrs += _NAMESTR_140.pack(
            ntype, 0, length, number, var_bytes,
            _label_bytes(label, f"label of {var_name!r}", encoding),
            b" " * 8, 0, 0, 0, b"\x00\x00", b" " * 8, 0, 0, position, bytes(52),
        )  # fmt: skip
        kinds.append((ntype == 2, length))
        position += length
    observation_length = position

    stamp = _sas_datetime(created if created is not None else datetime.now())
    real_header = b"SAS     SAS     SASLIB  " + _WRITER_VERSION + _WRITER_OS + b" " * 24 + stamp
    descriptor = b"SAS     " + name_bytes + b"SASDATA " + _WRITER_VERSION + _WRITER_OS
    buffer = bytearray()
    buffer += _header_record("LIBRARY")
    buffer += real_header
    buffer += stamp.ljust(RECORD_LENGTH)
    buffer += _header_record("MEMBER", b"000000000000000001600000000140")
    buffer += _header_record("DSCRPTR")
    buffer += descriptor + b" " * 24 + stamp
    buffer += stamp + b" " * 16 + label_bytes + b" " * 8
    buffer += _header_record("NAMESTR", f"000000{len(variables):04d}".encode() + b"0" * 20)
    buffer += namestrs
    buffer += b" " * (-len(namestrs) % RECORD_LENGTH)
    buffer += _header_record("OBS")

    written = 0
    data_bytes = 0
    last = b""
    width = len(kinds)
    for row in rows:
        if len(row) != width:
            raise ValueError(f"row {written + 1} has {len(row)} values, expected {width}")
        encoded = bytearray()
        for (is_char, length), value, spec in zip(kinds, row, variables, strict=True):
            if is_char:
                encoded += _char_value(value, length, spec[0], written + 1, encoding)
            else:
                encoded += _numeric_value(value, spec[0], written + 1)
        last = bytes(encoded)
        buffer += last
        written += 1
        data_bytes += observation_length
        if len(buffer) >= _FLUSH_BYTES:
            out.write(buffer)
            buffer.clear()
    if written and not last.strip(b" "):
        raise ValueError(
            "the last row is entirely blank and would be read back as padding; "
            "drop it or give it a non-blank value"
        )
    buffer += b" " * (-data_bytes % RECORD_LENGTH)
    out.write(buffer)
    return written


def _char_value(value: object, length: int, name: str, row: int, encoding: str) -> bytes:
    """Encode one character cell, blank padded to its length."""
    if value is None:
        return b" " * length
    if not isinstance(value, str):
        raise TypeError(f"row {row}, {name}: char value must be str or None, got {value!r}")
    try:
        encoded = value.encode(encoding)
    except UnicodeEncodeError:
        raise ValueError(f"row {row}, {name}: {value!r} cannot be encoded as {encoding}") from None
    if len(encoded) > length:
        raise ValueError(
            f"row {row}, {name}: value is {len(encoded)} bytes, longer than its length {length}"
        )
    return encoded.ljust(length)


def _numeric_value(value: object, name: str, row: int) -> bytes:
    """Encode one numeric cell as an IBM float."""
    if value is None:
        return _IBM_MISSING
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"row {row}, {name}: numeric value must be a number, got {value!r}")
    try:
        return ieee_to_ibm(value)
    except ValueError as error:
        raise ValueError(f"row {row}, {name}: {error}") from None
