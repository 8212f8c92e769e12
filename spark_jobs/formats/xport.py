"""SAS XPORT version 5 (transport) reader in pure standard-library Python.

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
  pyreadstat, so values agree bit for bit.
- Bounded memory: `XportScanner` validates a file fed front to back in chunks, keeping only its
  header and last bytes; `RowDecoder` decodes any run of whole observations, so a large file is
  decoded as record-aligned byte ranges in parallel tasks (see `plan_row_ranges`).
The writer, used only by the generators, is `clinical_platform.generators.xport_writer`.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from spark_jobs.formats.sniff import XPORT_LIBRARY, describe, sniff_format, xport_header_prefix

__all__ = [
    "RowDecoder",
    "XportFormatError",
    "XportHeader",
    "XportLayout",
    "XportScanner",
    "XportVariable",
    "ibm_to_ieee",
    "inspect",
    "iter_rows",
    "plan_row_ranges",
    "read_header",
    "sniff_format",
]

RECORD_LENGTH = 80
"""Every XPORT v5 file is a sequence of 80-byte records."""

_LIBRARY = XPORT_LIBRARY
_MEMBER = xport_header_prefix("MEMBER")
_MEMBV8 = xport_header_prefix("MEMBV8")
_DSCRPTR = xport_header_prefix("DSCRPTR")
_NAMESTR = xport_header_prefix("NAMESTR")
_OBS = xport_header_prefix("OBS")
_SNIFF_BYTES = 512
_NAMESTR_140 = struct.Struct(">hhhh8s40s8shhh2s8shhi52s")
_NAMESTR_136 = struct.Struct(">hhhh8s40s8shhh2s8shhi48s")


class XportFormatError(ValueError):
    """One-line, user-facing reason the bytes are not a valid XPORT v5 file."""


class _HeadersIncomplete(XportFormatError):
    """The headers run past the bytes given; a whole file with this is truncated."""


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


def _not_xport(data: bytes) -> XportFormatError:
    """Error for bytes that do not start with the v5 library header, naming what they look like."""
    kind = sniff_format(data[:_SNIFF_BYTES])
    # Context makes the guess sharper: text named .xpt is nearly always a CSV export.
    what = {"text": "text/CSV", "sas-xport-v5": "a damaged SAS XPORT v5 file"}.get(
        kind, describe(kind)
    )
    return XportFormatError(f"not a SAS XPORT v5 file (bad header; looks like {what})")


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


# --------------------------------------------------------------------------- headers


def _strip_text(raw: bytes, encoding: str) -> str:
    """Header text fields are padded with blanks or NULs depending on the writer."""
    return raw.rstrip(b" \x00").decode(encoding, errors="replace").strip()


def _need(data: bytes, end: int, what: str) -> None:
    """Fail with the truncation message when the headers run past the available bytes."""
    if len(data) < end:
        raise _HeadersIncomplete(
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
    namestr_length = _member_namestr_length(data)
    _expect(data, 4 * RECORD_LENGTH, _DSCRPTR, "DSCRPTR")
    _need(data, 7 * RECORD_LENGTH, "the member descriptor")
    descriptor1 = data[5 * RECORD_LENGTH : 6 * RECORD_LENGTH]
    descriptor2 = data[6 * RECORD_LENGTH : 7 * RECORD_LENGTH]
    variables, obs_header_at = _read_namestrs(data, namestr_length, encoding)
    _expect(data, obs_header_at, _OBS, "OBS")
    return XportHeader(
        dataset_name=_strip_text(descriptor1[8:16], encoding),
        dataset_label=_strip_text(descriptor2[32:72], encoding),
        variables=variables,
        observation_length=_check_positions(variables),
        data_offset=obs_header_at + RECORD_LENGTH,
    )


def _member_namestr_length(data: bytes) -> int:
    """The namestr record length the MEMBER header announces (140, or 136 on VAX/VMS)."""
    _expect(data, 3 * RECORD_LENGTH, _MEMBER, "MEMBER")
    member = data[3 * RECORD_LENGTH : 4 * RECORD_LENGTH]
    namestr_field = member[74:78]
    if namestr_field not in (b"0140", b"0136"):
        raise XportFormatError(
            f"unsupported NAMESTR record length {namestr_field.decode('latin-1')!r} "
            "in the MEMBER header (expected 0140 or 0136)"
        )
    return int(namestr_field)


def _read_namestrs(
    data: bytes, namestr_length: int, encoding: str
) -> tuple[tuple[XportVariable, ...], int]:
    """The variables, and the offset of the OBS header that follows their namestrs."""
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
    _need(data, first + namestr_bytes, f"{count} NAMESTR records")
    unpacker = _NAMESTR_140 if namestr_length == 140 else _NAMESTR_136
    variables = tuple(
        _parse_namestr(unpacker, data, first + i * namestr_length, i, encoding)
        for i in range(count)
    )
    return variables, first + -(-namestr_bytes // RECORD_LENGTH) * RECORD_LENGTH


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


@dataclass
class XportScanner:
    """Structural validation of a file fed front to back in chunks, in bounded memory.

    Keeps the headers (until they parse), the last bytes fed and the file's tail, never the
    whole file, and copies no chunk whole. `finish` establishes the row count, which XPORT
    does not store, and detects truncation from the record structure (see the module
    docstring for the one undetectable case). Errors come in the order a whole-file check
    meets them.
    """

    size: int
    encoding: str = "latin-1"
    _head: bytes = b""  # the first bytes, while the headers are incomplete
    _header: XportHeader | None = None
    _offset: int = 0  # absolute offset of the next byte fed
    _carry: bytes = b""  # last bytes of the data area, for a MEMBER header split across chunks
    _tail: bytes = b""  # last bytes of the data area, for the truncation check

    def feed(self, chunk: bytes) -> None:
        at = self._offset
        self._offset += len(chunk)
        if self._header is not None:
            self._scan(chunk, at, 0)
            return
        data = self._head + chunk if self._head else chunk
        header = self._try_header(data)
        if header is None:
            self._head = data
            return
        self._head = b""
        self._header = header
        self._scan(data, 0, header.data_offset)

    def _try_header(self, head: bytes) -> XportHeader | None:
        if not head.startswith(_LIBRARY) and not _LIBRARY.startswith(head[:48]):
            if len(head) < _SNIFF_BYTES and self._offset < self.size:
                return None  # say what it looks like from as many bytes as a whole-file check
            raise _not_xport(head)
        if self.size % RECORD_LENGTH:
            raise XportFormatError(
                f"truncated: size {self.size} bytes is not a whole number of "
                f"{RECORD_LENGTH}-byte records"
            )
        try:
            return read_header(head, encoding=self.encoding)
        except _HeadersIncomplete:
            if self._offset < self.size:
                return None  # the headers continue in the next chunk
            raise

    def _scan(self, data: bytes, base: int, start: int) -> None:
        """Look for a record-aligned MEMBER header in the data area (a multi-member library)."""
        header = self._header
        assert header is not None
        overlap = len(_MEMBER) - 1
        straddling = self._carry + data[start : start + overlap]
        self._find_member(straddling, base + start - len(self._carry), 0)
        self._find_member(data, base, start)
        self._carry = (self._carry + data[max(start, len(data) - overlap) :])[-overlap:]
        keep = header.observation_length + RECORD_LENGTH
        self._tail = (self._tail + data[max(start, len(data) - keep) :])[-keep:]

    @staticmethod
    def _find_member(data: bytes, base: int, start: int) -> None:
        at = data.find(_MEMBER, start)
        while at != -1:
            if (base + at) % RECORD_LENGTH == 0:
                raise XportFormatError(
                    "multi-member files are not supported (a second member starts at byte "
                    f"{base + at})"
                )
            at = data.find(_MEMBER, at + 1)

    def finish(self) -> XportLayout:
        if not self.size:
            raise XportFormatError("empty file (0 bytes)")
        header = self._header or self._try_header(self._head)
        assert header is not None  # _try_header raised: every byte was fed
        return XportLayout(header=header, row_count=self._row_count(header))

    def _row_count(self, header: XportHeader) -> int:
        """Whole observations, less trailing blank ones that fit in the final padding."""
        length = header.observation_length
        rows, rest = divmod(self.size - header.data_offset, length)
        tail = self._tail[len(self._tail) - rest :] if rest else b""
        if tail.strip(b" "):
            raise XportFormatError(
                f"truncated: last observation is incomplete ({rest} of {length} bytes)"
            )
        blank = b" " * length
        end = len(self._tail) - rest
        while rows and rest + length < RECORD_LENGTH:
            if self._tail[end - length : end] != blank:
                break
            rows, rest, end = rows - 1, rest + length, end - length
        if rest >= RECORD_LENGTH:
            raise XportFormatError(
                f"truncated: last observation is incomplete ({rest} of {length} bytes)"
            )
        return rows


def inspect(data: bytes, *, encoding: str = "latin-1") -> XportLayout:
    """Full structural validation of a whole file in memory; raises XportFormatError."""
    if not data:
        raise XportFormatError("empty file (0 bytes)")
    scanner = XportScanner(len(data), encoding)
    scanner.feed(data)
    return scanner.finish()


def plan_row_ranges(layout: XportLayout, max_bytes: int) -> list[tuple[int, int]]:
    """[first, end) observation ranges of at most `max_bytes` each, covering every row."""
    length = layout.header.observation_length
    per_range = max(1, max_bytes // length)
    return [
        (first, min(first + per_range, layout.row_count))
        for first in range(0, layout.row_count, per_range)
    ]


def byte_range(layout: XportLayout, first: int, end: int) -> tuple[int, int]:
    """(offset, length) in the file of observations [first, end)."""
    length = layout.header.observation_length
    return layout.header.data_offset + first * length, (end - first) * length


# --------------------------------------------------------------------------- rows

Row = tuple[str | float | None, ...]


class RowDecoder:
    """Decodes whole observations of one file, from any record-aligned run of them.

    char -> str with trailing blanks (and NUL padding) removed, blank -> "";
    numeric -> float, with the missing values ., ._ and .A-.Z -> None.
    """

    def __init__(self, header: XportHeader, encoding: str = "latin-1") -> None:
        variables = header.variables
        order = sorted(range(len(variables)), key=lambda i: variables[i].position)
        codes = [
            "Q" if variables[i].kind == "numeric" and variables[i].length == 8 else "{}s"
            for i in order
        ]
        codes = [c.format(variables[i].length) for c, i in zip(codes, order, strict=True)]
        self.unpacker = struct.Struct(">" + "".join(codes))
        if self.unpacker.size != header.observation_length:
            raise XportFormatError(
                f"observation length {header.observation_length} does not match the variables"
            )
        # Indexes below refer to position order; `reorder` maps back to variable order.
        identity = list(range(len(order)))
        self.reorder = None if order == identity else [order.index(i) for i in identity]
        self.char_at = [j for j, i in enumerate(order) if variables[i].kind == "char"]
        self.wide_at = [j for j, code in enumerate(codes) if code == "Q"]
        self.short_at = [
            (j, variables[i].length)
            for j, i in enumerate(order)
            if variables[i].kind == "numeric" and variables[i].length != 8
        ]
        self.encoding = encoding

    def rows(self, observations: bytes | memoryview, first_row: int = 1) -> Iterator[Row]:
        """Rows of `observations` (whole ones only); `first_row` numbers them in messages."""
        row_number = first_row
        try:
            for fields in self.unpacker.iter_unpack(observations):
                yield self._decode(fields)
                row_number += 1
        except UnicodeDecodeError as error:
            raise XportFormatError(
                f"row {row_number}: text is not valid {self.encoding} ({error.reason})"
            ) from None

    def _decode(self, fields: tuple[Any, ...]) -> Row:
        values = list(fields)
        encoding = self.encoding
        for j in self.char_at:
            values[j] = fields[j].rstrip(b" \x00").decode(encoding)
        mask, truncate, scale = _MANTISSA_MASK, _TRUNCATE_MASK, _SCALE
        for j in self.wide_at:
            word = fields[j]
            mantissa = word & mask
            if mantissa:
                values[j] = (mantissa & truncate[mantissa >> 52]) * scale[word >> 56]
            elif (word >> 56) in _MISSING_FIRST_BYTES:
                values[j] = None
            else:
                values[j] = 0.0 * scale[word >> 56]
        for j, width in self.short_at:
            values[j] = _ibm_word_to_float(int.from_bytes(fields[j], "big") << (64 - 8 * width))
        if self.reorder is not None:
            values = [values[k] for k in self.reorder]
        return tuple(values)


def iter_rows(data: bytes, layout: XportLayout, encoding: str = "latin-1") -> Iterator[Row]:
    """Yield one tuple per observation of a whole file, values in variable order."""
    header = layout.header
    start = header.data_offset
    end = start + layout.row_count * header.observation_length
    if len(data) < end:
        raise XportFormatError(
            f"truncated: {layout.row_count} observations need {end} bytes, got {len(data)}"
        )
    return RowDecoder(header, encoding).rows(memoryview(data)[start:end])
