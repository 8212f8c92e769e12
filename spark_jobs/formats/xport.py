"""SAS XPORT version 5 (transport) reader and writer in pure standard-library Python.

Why our own: it runs inside Spark executors where only the standard library is available,
it must return exactly the values pyreadstat returns (pandas.read_sas turns true zeros into
5.4e-79), and it must refuse truncated or mislabelled files that other readers accept silently.

Layout (SAS technical note TS-140): everything is in 80-byte records. Three library records,
then per member a MEMBER header, a DSCRPTR header and two descriptor records (dataset name and
label), a NAMESTR header carrying the variable count, one 140-byte namestr per variable (136 on
VAX/VMS) padded with blanks to a whole record, an OBS header, then fixed-length observations
back to back, the last record padded with ASCII blanks. Numbers are IBM 370 hexadecimal floats.

Choices worth knowing:
- Only one member per file. A second member header is reported as an error rather than
  silently dropping datasets (SDTM deliveries carry one dataset per file).
- XPORT stores no row count, so truncation is found from the structure: the file must be whole
  80-byte records and whatever follows the last complete observation must be fewer than 80
  ASCII blanks. A file cut exactly at an observation boundary that is also a record boundary
  is indistinguishable from a complete file and cannot be detected.
- When the observation is shorter than 80 bytes, trailing all-blank observations that fit in
  the final padding cannot be told apart from padding; like SAS, they are treated as padding.
- IBM to IEEE drops the up to 3 low mantissa bits that do not fit, like SAS's TS-140 routine and
  pyreadstat, so values agree bit for bit. IEEE to IBM is exact within the IBM range; values too
  small to be normalised are rounded to nearest (ties to even) into denormal IBM form.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, BinaryIO

__all__ = [
    "XportFormatError",
    "XportHeader",
    "XportLayout",
    "XportVariable",
    "ibm_to_ieee",
    "ieee_to_ibm",
    "inspect",
    "iter_rows",
    "read_header",
    "sniff_format",
    "write_xport",
]

RECORD_LENGTH = 80
"""Every XPORT v5 file is a sequence of 80-byte records."""


def _header_prefix(name: str) -> bytes:
    """First 48 bytes of a header record; the name field is 8 bytes, blank padded."""
    return b"HEADER RECORD*******" + name.encode("ascii").ljust(8) + b"HEADER RECORD!!!!!!!"


_LIBRARY = _header_prefix("LIBRARY")
_LIBV8 = _header_prefix("LIBV8")
_MEMBER = _header_prefix("MEMBER")
_MEMBV8 = _header_prefix("MEMBV8")
_DSCRPTR = _header_prefix("DSCRPTR")
_NAMESTR = _header_prefix("NAMESTR")
_OBS = _header_prefix("OBS")
_ZEROS30 = b"0" * 30
_SAS7BDAT_MAGIC = bytes.fromhex("000000000000000000000000c2ea8160b31411cfbd92080009c7318c181f1011")

_NAMESTR_140 = struct.Struct(">hhhh8s40s8shhh2s8shhi52s")
_NAMESTR_136 = struct.Struct(">hhhh8s40s8shhh2s8shhi48s")
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_MAX_CHAR_LENGTH = 200


class XportFormatError(ValueError):
    """One-line, user-facing reason the bytes are not a valid XPORT v5 file."""


@dataclass(frozen=True)
class XportVariable:
    """One namestr: where a variable lives inside an observation and how to decode it."""

    name: str
    kind: str
    length: int
    label: str
    position: int
    format: str = ""


@dataclass(frozen=True)
class XportHeader:
    """Everything before the observations, enough to plan a read without touching the data."""

    dataset_name: str
    dataset_label: str
    variables: tuple[XportVariable, ...]
    observation_length: int
    data_offset: int


@dataclass(frozen=True)
class XportLayout:
    """A header plus the row count that only a whole-file check can establish."""

    header: XportHeader
    row_count: int


# --------------------------------------------------------------------------- sniffing

_LOOKS_LIKE = {
    "sas-xport-v8": "SAS XPORT v8 (only v5 is supported)",
    "png": "a PNG image",
    "jpeg": "a JPEG image",
    "gif": "a GIF image",
    "pdf": "a PDF document",
    "zip": "a ZIP archive",
    "gzip": "a gzip-compressed file",
    "parquet": "a Parquet file",
    "sas7bdat": "a SAS7BDAT dataset (not a transport file)",
    "html": "an HTML page",
    "xml": "an XML document",
    "json": "JSON",
    "text": "text/CSV",
    "binary": "unrecognised binary data",
    "empty": "an empty file",
    "sas-xport-v5": "a damaged SAS XPORT v5 file",
}

_TEXT_CONTROL_OK = frozenset(b"\t\n\r\f\x1a")


def sniff_format(prefix: bytes) -> str:
    """Best guess of what a file really is from its first bytes, for error messages.

    Returns one of "empty", "sas-xport-v5", "sas-xport-v8", "png", "jpeg", "gif", "pdf",
    "zip", "gzip", "parquet", "sas7bdat", "html", "xml", "json", "text", "binary".
    """
    if not prefix:
        return "empty"
    head = bytes(prefix[:512])
    if head.startswith(_LIBRARY) or (len(head) < len(_LIBRARY) and _LIBRARY.startswith(head)):
        return "sas-xport-v5"
    if head.startswith(_LIBV8):
        return "sas-xport-v8"
    magics: tuple[tuple[bytes, str], ...] = (
        (b"\x89PNG\r\n\x1a\n", "png"),
        (b"\xff\xd8\xff", "jpeg"),
        (b"GIF87a", "gif"),
        (b"GIF89a", "gif"),
        (b"%PDF-", "pdf"),
        (b"PK\x03\x04", "zip"),
        (b"PK\x05\x06", "zip"),
        (b"PK\x07\x08", "zip"),
        (b"\x1f\x8b", "gzip"),
        (b"PAR1", "parquet"),
    )
    for magic, kind in magics:
        if head.startswith(magic):
            return kind
    if head[:32] == _SAS7BDAT_MAGIC:
        return "sas7bdat"
    if any(b < 0x20 and b not in _TEXT_CONTROL_OK for b in head) or b"\x7f" in head:
        return "binary"
    text = head.removeprefix(b"\xef\xbb\xbf").lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html")) or (
        text.startswith(b"<") and b"<html" in text
    ):
        return "html"
    if text.startswith(b"<"):
        return "xml"
    if text.startswith((b"{", b"[")):
        return "json"
    return "text"


def _not_xport(data: bytes) -> XportFormatError:
    """Error for bytes that do not start with the v5 library header, naming what they look like."""
    kind = sniff_format(data[:512])
    return XportFormatError(
        f"not a SAS XPORT v5 file (bad header; looks like {_LOOKS_LIKE.get(kind, kind)})"
    )


# --------------------------------------------------------------------------- numbers

_MANTISSA_MASK = (1 << 56) - 1
_MISSING_FIRST_BYTES = frozenset(b"._ABCDEFGHIJKLMNOPQRSTUVWXYZ")
# Keep 53 significant bits: a mantissa whose top hex digit has k significant bits carries
# 52 + k bits, so the low k - 1 bits are dropped (truncation, as in SAS TS-140 and pyreadstat).
_TRUNCATE_MASK: tuple[int, ...] = tuple(
    _MANTISSA_MASK & ~((1 << max(top.bit_length() - 1, 0)) - 1) for top in range(16)
)
# Sign and power of two for every possible first byte; mantissa * 2**(4*exp - 256 - 56).
_SCALE: tuple[float, ...] = tuple(
    math.copysign(math.ldexp(1.0, 4 * (first & 0x7F) - 312), -1.0 if first & 0x80 else 1.0)
    for first in range(256)
)
_IBM_MISSING = b"." + bytes(7)
_IBM_MAX_EXPONENT = 127


def _ibm_word_to_float(word: int) -> float | None:
    """Decode an 8-byte IBM float held as a big-endian unsigned integer."""
    mantissa = word & _MANTISSA_MASK
    first = word >> 56
    if not mantissa:
        return None if first in _MISSING_FIRST_BYTES else 0.0 * _SCALE[first]
    return (mantissa & _TRUNCATE_MASK[mantissa >> 52]) * _SCALE[first]


def ibm_to_ieee(raw: bytes) -> float | None:
    """Decode a 2..8 byte IBM 370 float (short ones are zero-padded); None for missing values.

    Missing values are a first byte of ".", "_" or "A".."Z" with all other bytes zero. A zero
    mantissa with any other first byte is a (signed) zero.
    """
    if not 2 <= len(raw) <= 8:
        raise ValueError(f"IBM float must be 2 to 8 bytes, got {len(raw)}")
    return _ibm_word_to_float(int.from_bytes(bytes(raw).ljust(8, b"\x00"), "big"))


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


# --------------------------------------------------------------------------- headers


def _strip_text(raw: bytes, encoding: str) -> str:
    """Header text fields are padded with blanks or NULs depending on the writer."""
    return raw.rstrip(b" \x00").decode(encoding, errors="replace").strip()


def _need(data: bytes, end: int, what: str) -> None:
    """Fail with the truncation message when the headers run past the available bytes."""
    if len(data) < end:
        raise XportFormatError(
            f"truncated inside the headers ({what} needs {end} bytes, file has {len(data)})"
        )


def _expect(data: bytes, offset: int, magic: bytes, what: str) -> None:
    """Check that the header record at offset is the expected one."""
    _need(data, offset + RECORD_LENGTH, f"the {what} header record")
    if data[offset : offset + len(magic)] != magic:
        if data[offset : offset + len(_MEMBV8)] == _MEMBV8:
            raise XportFormatError("SAS XPORT v8 member header found; only v5 is supported")
        found = data[offset : offset + 48].decode("latin-1")
        raise XportFormatError(f"bad {what} header record at byte {offset}: {found.rstrip()!r}")


def _format_name(name: str, width: int, decimals: int) -> str:
    """SAS notation for a display format, e.g. DATE9., $12., 8.2."""
    if not name and not width and not decimals:
        return ""
    return f"{name}{width if width else ''}.{decimals if decimals else ''}"


def read_header(data: bytes, *, encoding: str = "latin-1") -> XportHeader:
    """Parse library/member/namestr headers. Works on a prefix of the file as long as it covers
    the headers; does not look at the observations (use inspect for that)."""
    if not data:
        raise XportFormatError("empty file (0 bytes)")
    if not data.startswith(_LIBRARY):
        if len(data) < len(_LIBRARY) and _LIBRARY.startswith(bytes(data)):
            _need(data, RECORD_LENGTH, "the library header record")
        raise _not_xport(data)
    _need(data, 3 * RECORD_LENGTH, "the library header")
    _expect(data, 3 * RECORD_LENGTH, _MEMBER, "MEMBER")
    member = data[3 * RECORD_LENGTH : 4 * RECORD_LENGTH]
    namestr_field = member[74:78]
    if namestr_field not in (b"0140", b"0136"):
        raise XportFormatError(
            f"unsupported NAMESTR record length {namestr_field.decode('latin-1')!r} "
            "in the MEMBER header (expected 0140 or 0136)"
        )
    namestr_length = int(namestr_field)
    _expect(data, 4 * RECORD_LENGTH, _DSCRPTR, "DSCRPTR")
    _need(data, 7 * RECORD_LENGTH, "the member descriptor")
    descriptor1 = data[5 * RECORD_LENGTH : 6 * RECORD_LENGTH]
    descriptor2 = data[6 * RECORD_LENGTH : 7 * RECORD_LENGTH]
    dataset_name = _strip_text(descriptor1[8:16], encoding)
    dataset_label = _strip_text(descriptor2[32:72], encoding)

    namestr_header_at = 7 * RECORD_LENGTH
    _expect(data, namestr_header_at, _NAMESTR, "NAMESTR")
    count_field = data[namestr_header_at + 48 : namestr_header_at + 58]
    if not count_field.isdigit():
        raise XportFormatError(
            f"bad variable count {count_field.decode('latin-1')!r} in the NAMESTR header"
        )
    count = int(count_field)
    if count == 0:
        raise XportFormatError("no variables (the NAMESTR header gives a variable count of 0)")

    first = namestr_header_at + RECORD_LENGTH
    namestr_bytes = count * namestr_length
    obs_header_at = first + -(-namestr_bytes // RECORD_LENGTH) * RECORD_LENGTH
    _need(data, first + namestr_bytes, f"{count} NAMESTR records")
    unpacker = _NAMESTR_140 if namestr_length == 140 else _NAMESTR_136
    variables = tuple(
        _parse_namestr(unpacker, data, first + i * namestr_length, i, encoding)
        for i in range(count)
    )
    _expect(data, obs_header_at, _OBS, "OBS")
    observation_length = _check_positions(variables)
    return XportHeader(
        dataset_name=dataset_name,
        dataset_label=dataset_label,
        variables=variables,
        observation_length=observation_length,
        data_offset=obs_header_at + RECORD_LENGTH,
    )


def _parse_namestr(
    unpacker: struct.Struct, data: bytes, offset: int, index: int, encoding: str
) -> XportVariable:
    """Decode and sanity-check one namestr record."""
    fields = unpacker.unpack_from(data, offset)
    ntype, _nhfun, nlng, _nvar0, nname, nlabel, nform, nfl, nfd = fields[:9]
    npos = fields[14]
    name = _strip_text(nname, encoding)
    where = f"variable #{index + 1}" + (f" ({name})" if name else "")
    if not name:
        raise XportFormatError(f"{where} has an empty name")
    if ntype == 1:
        kind = "numeric"
        if not 2 <= nlng <= 8:
            raise XportFormatError(f"numeric {where} has length {nlng} (must be 2 to 8)")
    elif ntype == 2:
        kind = "char"
        if nlng <= 0:
            raise XportFormatError(f"character {where} has length {nlng} (must be positive)")
    else:
        raise XportFormatError(f"{where} has unknown type code {ntype} (expected 1 or 2)")
    if npos < 0:
        raise XportFormatError(f"{where} has negative position {npos}")
    return XportVariable(
        name=name,
        kind=kind,
        length=nlng,
        label=_strip_text(nlabel, encoding),
        position=npos,
        format=_format_name(_strip_text(nform, encoding), max(nfl, 0), max(nfd, 0)),
    )


def _check_positions(variables: tuple[XportVariable, ...]) -> int:
    """Positions must tile the observation exactly; returns the observation length."""
    seen: set[str] = set()
    for variable in variables:
        if variable.name.upper() in seen:
            raise XportFormatError(f"duplicate variable name {variable.name}")
        seen.add(variable.name.upper())
    expected = 0
    previous: XportVariable | None = None
    for variable in sorted(variables, key=lambda v: v.position):
        if variable.position < expected and previous is not None:
            raise XportFormatError(
                f"variables {previous.name} and {variable.name} overlap "
                f"(byte {variable.position} is inside {previous.name})"
            )
        if variable.position > expected:
            raise XportFormatError(
                f"gap in the observation layout: variable {variable.name} starts at byte "
                f"{variable.position}, expected {expected}"
            )
        expected = variable.position + variable.length
        previous = variable
    if expected <= 0:
        raise XportFormatError("observation length is 0")
    return expected


# --------------------------------------------------------------------------- whole file


def inspect(data: bytes, *, encoding: str = "latin-1") -> XportLayout:
    """Full structural validation of a whole file; raises XportFormatError.

    Establishes the row count, which XPORT does not store, and detects truncation from the
    record structure (see the module docstring for the one undetectable case).
    """
    if not data:
        raise XportFormatError("empty file (0 bytes)")
    if not data.startswith(_LIBRARY) and not _LIBRARY.startswith(bytes(data[:48])):
        raise _not_xport(data)
    size = len(data)
    if size % RECORD_LENGTH:
        raise XportFormatError(
            f"truncated: size {size} bytes is not a whole number of {RECORD_LENGTH}-byte records"
        )
    header = read_header(data, encoding=encoding)
    start = header.data_offset
    _reject_second_member(data, start)
    length = header.observation_length
    body = size - start
    rows, rest = divmod(body, length)
    tail = data[start + rows * length :]
    if tail.strip(b" "):
        raise XportFormatError(
            f"truncated: last observation is incomplete ({rest} of {length} bytes)"
        )
    blank = b" " * length
    while rows and rest + length < RECORD_LENGTH:
        at = start + (rows - 1) * length
        if data[at : at + length] != blank:
            break
        rows -= 1
        rest += length
    if rest >= RECORD_LENGTH:
        raise XportFormatError(
            f"truncated: last observation is incomplete ({rest} of {length} bytes)"
        )
    return XportLayout(header=header, row_count=rows)


def _reject_second_member(data: bytes, start: int) -> None:
    """A record-aligned MEMBER header after the data means a multi-member library."""
    at = data.find(_MEMBER, start)
    while at != -1:
        if at % RECORD_LENGTH == 0:
            raise XportFormatError(
                f"multi-member files are not supported (a second member starts at byte {at})"
            )
        at = data.find(_MEMBER, at + 1)


# --------------------------------------------------------------------------- rows

Row = tuple[str | float | None, ...]


def iter_rows(data: bytes, layout: XportLayout, encoding: str = "latin-1") -> Iterator[Row]:
    """Yield one tuple per observation, values in variable order.

    char -> str with trailing blanks (and NUL padding) removed, blank -> "";
    numeric -> float, with the missing values ., ._ and .A-.Z -> None.
    """
    header = layout.header
    length = header.observation_length
    start = header.data_offset
    end = start + layout.row_count * length
    if len(data) < end:
        raise XportFormatError(
            f"truncated: {layout.row_count} observations need {end} bytes, got {len(data)}"
        )
    variables = header.variables
    order = sorted(range(len(variables)), key=lambda i: variables[i].position)
    codes: list[str] = []
    for i in order:
        variable = variables[i]
        wide_numeric = variable.kind == "numeric" and variable.length == 8
        codes.append("Q" if wide_numeric else f"{variable.length}s")
    unpacker = struct.Struct(">" + "".join(codes))
    if unpacker.size != length:
        raise XportFormatError(f"observation length {length} does not match the variables")
    # Indexes below refer to position order; `reorder` maps back to variable order.
    identity = list(range(len(order)))
    reorder = None if order == identity else [order.index(i) for i in identity]
    char_at = [j for j, i in enumerate(order) if variables[i].kind == "char"]
    wide_at = [j for j, code in enumerate(codes) if code == "Q"]
    short_at = [
        (j, variables[i].length)
        for j, i in enumerate(order)
        if variables[i].kind == "numeric" and variables[i].length != 8
    ]
    mask, truncate, scale, missing = _MANTISSA_MASK, _TRUNCATE_MASK, _SCALE, _MISSING_FIRST_BYTES
    row_number = 0
    values: list[Any] = []
    try:
        for fields in unpacker.iter_unpack(memoryview(data)[start:end]):
            values = list(fields)
            for j in char_at:
                values[j] = fields[j].rstrip(b" \x00").decode(encoding)
            for j in wide_at:
                word = fields[j]
                mantissa = word & mask
                if mantissa:
                    values[j] = (mantissa & truncate[mantissa >> 52]) * scale[word >> 56]
                elif (word >> 56) in missing:
                    values[j] = None
                else:
                    values[j] = 0.0 * scale[word >> 56]
            for j, width in short_at:
                word = int.from_bytes(fields[j], "big") << (64 - 8 * width)
                values[j] = _ibm_word_to_float(word)
            if reorder is not None:
                values = [values[k] for k in reorder]
            yield tuple(values)
            row_number += 1
    except UnicodeDecodeError as error:
        raise XportFormatError(
            f"row {row_number + 1}: text is not valid {encoding} ({error.reason})"
        ) from None


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
    return _header_prefix(name) + numbers + b"  "


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
