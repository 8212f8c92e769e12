"""Tests for the stdlib SAS XPORT v5 reader/writer against the real CDISC pilot files."""

from __future__ import annotations

import binascii
import gzip
import io
import math
import os
import random
import struct
import zipfile
import zlib
from collections.abc import Sequence
from datetime import datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from clinical_platform.generators import xport_writer
from spark_jobs.formats import xport
from spark_jobs.formats.xport import XportFormatError

PILOT_DIR = Path(
    os.environ.get(
        "CDISC_PILOT_DIR",
        Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "cdisc_pilot",
    )
)

# file stem -> (rows, columns), from the delivery README.
PILOT_SHAPES = {
    "dm": (306, 25),
    "ae": (961, 37),
    "vs": (29643, 25),
    "lbch": (32740, 24),
    "lbhe": (21927, 24),
    "ex": (591, 18),
    "ds": (596, 15),
    "sv": (3559, 12),
}

CREATED = datetime(2024, 3, 5, 14, 7, 9)


def pilot_bytes(stem: str) -> bytes:
    """Read one pilot file, skipping the test when the shared data is not laid out."""
    path = PILOT_DIR / f"{stem}.xpt"
    if not path.is_file():
        pytest.skip(f"CDISC pilot data not found at {PILOT_DIR} (set CDISC_PILOT_DIR)")
    return path.read_bytes()


def column(data: bytes, name: str) -> list[str | float | None]:
    """All values of one variable of a whole file."""
    layout = xport.inspect(data)
    index = [v.name for v in layout.header.variables].index(name)
    return [row[index] for row in xport.iter_rows(data, layout)]


def bits(value: float) -> bytes:
    """Bit pattern of a double, so that 0.0 and -0.0 (and every ulp) are told apart."""
    return struct.pack(">d", value)


def header_record(name: bytes, tail: bytes = b"0" * 30) -> bytes:
    return b"HEADER RECORD*******" + name.ljust(8) + b"HEADER RECORD!!!!!!!" + tail + b"  "


def build_xport(
    namestrs: Sequence[tuple[int, int, str, int]],
    observations: bytes,
    *,
    namestr_length: int = 140,
    count: int | None = None,
    labels: Sequence[str] | None = None,
) -> bytes:
    """Hand-made XPORT bytes for layouts the writer refuses to produce.

    namestrs: (ntype, length, name, position); observations are padded to 80 with blanks.
    """
    stamp = b"01JAN20:00:00:00"
    out = bytearray(header_record(b"LIBRARY"))
    out += b"SAS     SAS     SASLIB  9.4     X64_7PRO" + b" " * 24 + stamp
    out += stamp.ljust(80)
    out += header_record(b"MEMBER", b"0" * 17 + b"160" + b"000000" + b"%04d" % namestr_length)
    out += header_record(b"DSCRPTR")
    out += b"SAS     TEST    SASDATA 9.4     X64_7PRO" + b" " * 24 + stamp
    out += stamp + b" " * 16 + b"Hand made".ljust(40) + b" " * 8
    n = len(namestrs) if count is None else count
    out += header_record(b"NAMESTR", b"000000" + b"%04d" % n + b"0" * 20)
    packed = bytearray()
    for number, (ntype, length, name, position) in enumerate(namestrs, start=1):
        label = (labels[number - 1] if labels else f"Label {name}").encode("latin-1")
        packed += struct.pack(
            ">hhhh8s40s8shhh2s8shhi",
            ntype, 0, length, number, name.encode().ljust(8), label.ljust(40),
            b" " * 8, 0, 0, 0, b"\0\0", b" " * 8, 0, 0, position,
        )  # fmt: skip
        packed += bytes(namestr_length - 88)
    out += packed + b" " * (-len(packed) % 80)
    out += header_record(b"OBS")
    out += observations + b" " * (-len(observations) % 80)
    return bytes(out)


def tiny_png() -> bytes:
    """A genuine 1x1 RGB PNG."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = binascii.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00\xff\x00\x00")
    signature = b"\x89PNG\r\n\x1a\n"
    return signature + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def write(
    variables: Sequence[tuple[str, str, int, str]],
    rows: Sequence[Sequence[str | float | int | None]],
    **kwargs: Any,
) -> bytes:
    buffer = io.BytesIO()
    kwargs.setdefault("created", CREATED)
    written = xport_writer.write_xport(
        buffer, kwargs.pop("name", "TEST"), variables, rows, **kwargs
    )
    assert written == len(rows)
    return buffer.getvalue()


# --------------------------------------------------------------------------- pilot files


@pytest.mark.parametrize("stem", sorted(PILOT_SHAPES))
def test_pilot_shape(stem: str) -> None:
    data = pilot_bytes(stem)
    layout = xport.inspect(data)
    rows, columns = PILOT_SHAPES[stem]
    assert layout.row_count == rows
    assert len(layout.header.variables) == columns
    assert layout.header.dataset_name == stem.upper()
    assert sum(1 for _ in xport.iter_rows(data, layout)) == rows
    assert layout.header.observation_length == sum(v.length for v in layout.header.variables)


@pytest.mark.parametrize("stem", sorted(PILOT_SHAPES))
def test_pilot_values_equal_pyreadstat_exactly(stem: str) -> None:
    pyreadstat = pytest.importorskip("pyreadstat")
    data = pilot_bytes(stem)
    layout = xport.inspect(data)
    frame, meta = pyreadstat.read_xport(str(PILOT_DIR / f"{stem}.xpt"), encoding="iso-8859-1")
    variables = layout.header.variables
    assert [v.name for v in variables] == list(frame.columns)
    assert [v.label for v in variables] == list(meta.column_labels)
    assert layout.row_count == len(frame)
    theirs = [frame[name].tolist() for name in frame.columns]
    mismatches: list[str] = []
    for row_number, row in enumerate(xport.iter_rows(data, layout)):
        expected_row = (c[row_number] for c in theirs)
        for variable, ours, expected in zip(variables, row, expected_row, strict=True):
            if variable.kind == "char":
                same = ours == expected
            elif ours is None:
                same = expected is None or math.isnan(expected)
            else:
                same = (
                    isinstance(ours, float)
                    and isinstance(expected, float)
                    and bits(ours) == bits(expected)
                )
            if not same and len(mismatches) < 5:
                mismatches.append(f"row {row_number} {variable.name}: {ours!r} != {expected!r}")
    assert not mismatches


def test_pilot_header_details() -> None:
    lbch = xport.read_header(pilot_bytes("lbch"))
    by_name = {v.name: v for v in lbch.variables}
    assert by_name["STUDYID"] == xport.XportVariable(
        "STUDYID", "char", 12, "Study Identifier", 0, "$12."
    )
    assert by_name["LBSTRESN"].kind == "numeric"
    assert by_name["LBSTRESN"].length == 8
    assert by_name["LBSTRESN"].format == ""
    assert lbch.observation_length == 227
    assert lbch.data_offset == 640 + 80 * math.ceil(24 * 140 / 80) + 80
    # dm.xpt was written by R: no display formats at all.
    assert all(v.format == "" for v in xport.read_header(pilot_bytes("dm")).variables)


def test_sv_visitnum_keeps_both_spellings_of_9_3() -> None:
    values = column(pilot_bytes("sv"), "VISITNUM")
    assert values.count(9.3) == 2
    assert values.count(9.299999999999999) == 1


def test_true_zeros_are_zero_not_5e_minus_79() -> None:
    doses = column(pilot_bytes("ex"), "EXDOSE")
    zeros = [d for d in doses if d == 0.0]
    assert len(zeros) == 226
    assert all(isinstance(d, float) and bits(d) == bits(0.0) for d in zeros)
    assert not [d for d in doses if isinstance(d, float) and 0 < abs(d) < 1e-70]


def test_lbhe_keeps_0_049999999999999996() -> None:
    results = column(pilot_bytes("lbhe"), "LBSTRESN")
    assert 0.049999999999999996 in results


@pytest.mark.parametrize("stem", ["dm", "ex", "lbhe", "sv"])
def test_pilot_numeric_bytes_survive_decode_encode(stem: str) -> None:
    """Our encoder reproduces the SAS/R writers' bytes for every numeric cell."""
    data = pilot_bytes(stem)
    layout = xport.inspect(data)
    header = layout.header
    checked = 0
    for row in range(layout.row_count):
        base = header.data_offset + row * header.observation_length
        for variable in header.variables:
            if variable.kind == "numeric":
                raw = data[base + variable.position : base + variable.position + 8]
                assert xport_writer.ieee_to_ibm(xport.ibm_to_ieee(raw)) == raw
                checked += 1
    assert checked > 0


def test_read_header_works_on_a_prefix() -> None:
    data = pilot_bytes("vs")
    header = xport.inspect(data).header
    assert xport.read_header(data[: header.data_offset]) == header
    with pytest.raises(XportFormatError, match=r"^truncated inside the headers"):
        xport.read_header(data[: header.data_offset - 1])
    with pytest.raises(XportFormatError, match=r"^truncated inside the headers"):
        xport.read_header(data[:40])


# --------------------------------------------------------------------------- bad input


def test_empty_file() -> None:
    for function in (xport.inspect, xport.read_header):
        with pytest.raises(XportFormatError, match=r"^empty file \(0 bytes\)$"):
            function(b"")
    assert xport.sniff_format(b"") == "empty"


def make_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("dm.xpt", b"not really")
    return buffer.getvalue()


SAS7BDAT_START = bytes(12) + bytes.fromhex("c2ea8160b31411cfbd92080009c7318c181f1011") + bytes(64)
V8_START = b"HEADER RECORD*******LIBV8   HEADER RECORD!!!!!!!" + b"0" * 30 + b"  "

SNIFF_CASES: list[tuple[str, bytes, str, str]] = [
    ("png", tiny_png(), "png", "looks like a PNG image"),
    ("zip", make_zip(), "zip", "looks like a ZIP archive"),
    ("csv", b"STUDYID,USUBJID,AGE\nCDISCPILOT01,01-701-1015,63\n", "text", "text/CSV"),
    ("latin1", "USUBJID;SITE\n01;Montréal\n".encode("latin-1"), "text", "text/CSV"),
    ("gzip", gzip.compress(b"a,b\n1,2\n"), "gzip", "gzip"),
    ("parquet", b"PAR1\x15\x04\x15\x10" + bytes(40) + b"PAR1", "parquet", "a Parquet file"),
    ("v8", V8_START * 3, "sas-xport-v8", "SAS XPORT v8 (only v5 is supported)"),
    ("sas7bdat", SAS7BDAT_START, "sas7bdat", "SAS7BDAT dataset (not a transport file)"),
    ("jpeg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(20), "jpeg", "a JPEG image"),
    ("gif", b"GIF89a\x01\x00\x01\x00" + bytes(20), "gif", "a GIF image"),
    ("pdf", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "pdf", "a PDF document"),
    ("html", b"\n<!DOCTYPE html><html><body>Login</body></html>", "html", "an HTML page"),
    ("xml", b'<?xml version="1.0"?><ODM></ODM>', "xml", "an XML document"),
    ("json", b'{"error": "Access Denied"}', "json", "JSON"),
    ("binary", bytes(range(256)), "binary", "binary"),
]


@pytest.mark.parametrize(
    ("content", "kind", "phrase"),
    [case[1:] for case in SNIFF_CASES],
    ids=[case[0] for case in SNIFF_CASES],
)
def test_not_xport_names_what_it_looks_like(content: bytes, kind: str, phrase: str) -> None:
    assert xport.sniff_format(content) == kind
    for function in (xport.inspect, xport.read_header):
        with pytest.raises(XportFormatError, match=r"^not a SAS XPORT v5 file") as caught:
            function(content)
        message = str(caught.value)
        assert phrase in message
        assert "\n" not in message


def test_define_xml_is_sniffed_as_xml() -> None:
    pilot_bytes("dm")  # skip consistently when the delivery is absent
    define = (PILOT_DIR / "define.xml").read_bytes()
    assert xport.sniff_format(define[:512]) == "xml"
    with pytest.raises(XportFormatError, match="looks like an XML document"):
        xport.inspect(define)


def test_sniff_recognises_xport_v5() -> None:
    data = pilot_bytes("dm")
    assert xport.sniff_format(data[:80]) == "sas-xport-v5"
    assert xport.sniff_format(data[:10]) == "sas-xport-v5"


def expected_truncation(data: bytes, cut: int) -> str:
    """The message inspect must give for data[:cut] of a valid file."""
    if cut % 80:
        return f"truncated: size {cut} bytes is not a whole number of 80-byte records"
    header = xport.read_header(data)
    length = header.observation_length
    rest = (cut - header.data_offset) % length
    return f"truncated: last observation is incomplete ({rest} of {length} bytes)"


@pytest.mark.parametrize("stem", ["vs", "sv", "lbch"])
def test_truncation_is_detected(stem: str) -> None:
    data = pilot_bytes(stem)
    header = xport.read_header(data)
    length = header.observation_length
    start = header.data_offset
    # A record boundary well inside the data that is not an observation boundary.
    record_cut = next(
        cut
        for cut in range(start + 1000 * length, len(data), 80)
        if (cut - start) % length and data[cut - (cut - start) % length : cut].strip(b" ")
    )
    cuts = [len(data) // 2, len(data) - 7, len(data) - 80, record_cut, 300, start + 40]
    for cut in cuts:
        with pytest.raises(XportFormatError) as caught:
            xport.inspect(data[:cut])
        assert str(caught.value) == expected_truncation(data, cut), cut


def test_truncation_inside_the_headers() -> None:
    data = pilot_bytes("vs")
    for cut in (160, 640, 640 + 80 * 10):
        with pytest.raises(XportFormatError, match=r"^truncated inside the headers"):
            xport.inspect(data[:cut])


def test_cut_on_observation_and_record_boundary_is_undetectable() -> None:
    """Documented limitation: 10 vs observations are 2480 bytes, a whole number of records."""
    data = pilot_bytes("vs")
    header = xport.read_header(data)
    assert header.observation_length == 248
    cut = header.data_offset + 100 * 248
    assert xport.inspect(data[:cut]).row_count == 100
    assert xport.inspect(data[: header.data_offset]).row_count == 0


def test_non_blank_padding_and_extra_records_are_rejected() -> None:
    data = pilot_bytes("vs")
    garbage = data[:-10] + b"X" * 10
    with pytest.raises(XportFormatError, match=r"incomplete \(56 of 248 bytes\)"):
        xport.inspect(garbage)
    with pytest.raises(XportFormatError, match=r"incomplete \(136 of 248 bytes\)"):
        xport.inspect(data + b" " * 80)


def namestr_error(namestrs: Sequence[tuple[int, int, str, int]], **kwargs: Any) -> str:
    with pytest.raises(XportFormatError) as caught:
        xport.inspect(build_xport(namestrs, b"", **kwargs))
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_namestr_inconsistencies() -> None:
    assert "negative position" in namestr_error([(2, 4, "A", -4), (1, 8, "B", 4)])
    assert "overlap" in namestr_error([(2, 4, "A", 0), (1, 8, "B", 2)])
    assert "length 0" in namestr_error([(2, 0, "A", 0), (1, 8, "B", 0)])
    assert "gap" in namestr_error([(2, 4, "A", 0), (1, 8, "B", 6)])
    assert "unknown type code 3" in namestr_error([(3, 4, "A", 0)])
    assert "numeric variable #1 (A) has length 9" in namestr_error([(1, 9, "A", 0)])
    assert "variable count of 0" in namestr_error([], count=0)
    assert "duplicate variable name" in namestr_error([(2, 4, "A", 0), (2, 4, "A", 4)])
    assert "empty name" in namestr_error([(2, 4, "", 0)])


def test_bad_member_and_namestr_headers() -> None:
    good = build_xport([(2, 4, "A", 0)], b"abcd")
    broken_member = good[:240] + good[320:400] + good[320:]
    with pytest.raises(XportFormatError, match="bad MEMBER header record at byte 240"):
        xport.inspect(broken_member)
    bad_length = good[:314] + b"0120" + good[318:]
    with pytest.raises(XportFormatError, match="unsupported NAMESTR record length '0120'"):
        xport.inspect(bad_length)
    bad_count = good[:608] + b"00x1" + good[612:]
    with pytest.raises(XportFormatError, match="bad variable count"):
        xport.inspect(bad_count)
    no_obs_header = good[:800] + header_record(b"OBSV8") + good[880:]
    with pytest.raises(XportFormatError, match="bad OBS header record at byte 800"):
        xport.inspect(no_obs_header)


def test_vax_136_byte_namestrs_short_numerics_and_out_of_order_positions() -> None:
    namestrs = [(1, 3, "SHORT", 6), (2, 6, "TEXT", 0), (1, 8, "WIDE", 9)]
    one = b"\x41\x10\x00"  # 1.0 in three bytes
    rows = [
        b"abc   " + one + xport_writer.ieee_to_ibm(2.5),
        b"      " + b".\x00\x00" + xport_writer.ieee_to_ibm(None),
        b"x\xe9    " + b"\xc1\x18\x00" + xport_writer.ieee_to_ibm(-0.1),
    ]
    for namestr_length in (140, 136):
        data = build_xport(namestrs, b"".join(rows), namestr_length=namestr_length)
        layout = xport.inspect(data)
        assert [v.name for v in layout.header.variables] == ["SHORT", "TEXT", "WIDE"]
        assert layout.row_count == 3
        assert list(xport.iter_rows(data, layout)) == [
            (1.0, "abc", 2.5),
            (None, "", None),
            (-1.5, "xé", -0.1),
        ]


def test_short_observations_and_blank_padding() -> None:
    """Observation shorter than 80: all-blank rows inside the data are kept, at the end they are
    indistinguishable from the padding."""
    data = build_xport([(2, 10, "C", 0)], b"a".ljust(10) + b" " * 10 + b"b".ljust(10))
    layout = xport.inspect(data)
    assert layout.row_count == 3
    assert list(xport.iter_rows(data, layout)) == [("a",), ("",), ("b",)]


def test_multi_member_files_are_refused() -> None:
    first = write([("A", "char", 3, "")], [["one"], ["two"]], name="FIRST")
    second = write([("B", "numeric", 8, "")], [[1.0]], name="SECOND")
    both = first + second[240:]
    with pytest.raises(XportFormatError, match=r"multi-member files are not supported"):
        xport.inspect(both)
    assert xport.read_header(both).dataset_name == "FIRST"


def test_iter_rows_rejects_bad_text_and_short_data() -> None:
    data = build_xport([(2, 4, "A", 0)], b"ok  \xff\xfe  ")
    layout = xport.inspect(data)
    assert list(xport.iter_rows(data, layout)) == [("ok",), ("\xff\xfe",)]
    with pytest.raises(XportFormatError, match="row 2: text is not valid utf-8"):
        list(xport.iter_rows(data, layout, encoding="utf-8"))
    with pytest.raises(XportFormatError, match="truncated"):
        list(xport.iter_rows(data[: layout.header.data_offset + 4], layout))


# --------------------------------------------------------------------------- numbers

SPREAD = [
    0.0, 1.0, -1.0, 0.1, -0.1, 9.3, 9.299999999999999, 0.049999999999999996, 0.05, 1e-70,
    1e70, -1e70, -123.456, 2.5, 1 / 3, math.pi, 86400.0, 1e15 + 0.5, 2.0**-255, 16.0**-65,
    -(16.0**-65), math.ldexp(1 - 2.0**-53, 252), 5.397605346934028e-79, 7.2e75,
]  # fmt: skip


@pytest.mark.parametrize("value", SPREAD)
def test_ieee_ibm_round_trip_is_exact(value: float) -> None:
    raw = xport_writer.ieee_to_ibm(value)
    assert len(raw) == 8
    back = xport.ibm_to_ieee(raw)
    assert back is not None
    assert bits(back) == bits(value)


def test_known_ibm_encodings() -> None:
    assert xport_writer.ieee_to_ibm(1.0) == bytes.fromhex("4110000000000000")
    assert xport_writer.ieee_to_ibm(-1.0) == bytes.fromhex("c110000000000000")
    assert xport_writer.ieee_to_ibm(0.1) == bytes.fromhex("401999999999999a")
    assert xport_writer.ieee_to_ibm(100.0) == bytes.fromhex("4264000000000000")
    assert xport_writer.ieee_to_ibm(0.0) == bytes(8)
    assert xport.ibm_to_ieee(bytes.fromhex("4264000000000000")) == 100.0
    assert xport.ibm_to_ieee(b"\x41\x10") == 1.0
    assert xport.ibm_to_ieee(b"\xc2\x64\x00") == -100.0


def test_negative_zero_is_written_as_true_zero() -> None:
    raw = xport_writer.ieee_to_ibm(-0.0)
    assert raw == bytes(8)
    back = xport.ibm_to_ieee(raw)
    assert back == 0.0
    assert back is not None and math.copysign(1.0, back) == 1.0
    # A lone IBM sign bit still decodes to a (negative) zero, not to a missing value.
    negative = xport.ibm_to_ieee(b"\x80" + bytes(7))
    assert negative is not None and bits(negative) == bits(-0.0)


def test_missing_values() -> None:
    assert xport_writer.ieee_to_ibm(None) == b"." + bytes(7)
    assert xport_writer.ieee_to_ibm(math.nan) == b"." + bytes(7)
    for first in b"._ABZ":
        assert xport.ibm_to_ieee(bytes([first]) + bytes(7)) is None
        assert xport.ibm_to_ieee(bytes([first, 0, 0])) is None
    # Same first byte with a non-zero mantissa is an ordinary (tiny) number.
    tiny = xport.ibm_to_ieee(b".\x10" + bytes(6))
    assert tiny is not None and tiny > 0
    assert xport.ibm_to_ieee(b"\x40" + bytes(7)) == 0.0


def test_out_of_range_and_bad_lengths() -> None:
    for value in (math.inf, -math.inf, 16.0**63, -1e76, 1e300):
        with pytest.raises(ValueError, match=r"range|cannot be stored"):
            xport_writer.ieee_to_ibm(value)
    for raw in (b"", b"\x41", bytes(9)):
        with pytest.raises(ValueError, match="2 to 8 bytes"):
            xport.ibm_to_ieee(raw)


def test_random_doubles_round_trip_exactly() -> None:
    rng = random.Random(20240305)
    low, high = 16.0**-65, 16.0**63
    checked = 0
    while checked < 20000:
        value = struct.unpack(">d", rng.getrandbits(64).to_bytes(8, "big"))[0]
        if not math.isfinite(value) or not low <= abs(value) < high:
            continue
        back = xport.ibm_to_ieee(xport_writer.ieee_to_ibm(value))
        assert back is not None and bits(back) == bits(value)
        checked += 1


def test_tiny_values_round_to_nearest_within_half_a_unit() -> None:
    unit = 2.0**-312  # value of the last IBM mantissa bit at exponent 0
    rng = random.Random(7)
    samples = [rng.uniform(0, 16.0**-65) for _ in range(5000)] + [1e-80, 3e-90, 5e-95, 1e-100]
    for value in samples:
        back = xport.ibm_to_ieee(xport_writer.ieee_to_ibm(value))
        assert back is not None
        assert abs(back - value) <= unit / 2
    assert xport_writer.ieee_to_ibm(2.0**-314) == bytes(8)
    assert xport.ibm_to_ieee(xport_writer.ieee_to_ibm(3 * 2.0**-313)) == 2.0**-311  # tie to even
    assert xport.ibm_to_ieee(xport_writer.ieee_to_ibm(5 * 2.0**-313)) == 2.0**-311  # tie to even


def exact_ibm(raw: bytes) -> Fraction:
    word = int.from_bytes(raw, "big")
    value = Fraction(word & ((1 << 56) - 1)) * Fraction(2) ** (4 * ((word >> 56) & 0x7F) - 312)
    return -value if word >> 63 else value


def random_normalised_ibm(rng: random.Random) -> bytes:
    """Random sign, exponent and 56-bit mantissa whose top hex digit is not zero."""
    mantissa = rng.getrandbits(52) | (rng.randint(1, 15) << 52)
    return bytes([rng.getrandbits(8)]) + mantissa.to_bytes(7, "big")


def test_ibm_to_ieee_truncates_at_most_three_bits() -> None:
    """IBM carries up to 56 bits; the conversion keeps 53 and drops the rest toward zero."""
    rng = random.Random(99)
    edge = ["41ffffffffffffff", "411fffffffffffff", "c17fffffffffffff", "0010000000000001"]
    samples = [bytes.fromhex(h) for h in edge] + [random_normalised_ibm(rng) for _ in range(20000)]
    for raw in samples:
        value = xport.ibm_to_ieee(raw)
        assert value is not None
        exact = exact_ibm(raw)
        assert abs(Fraction(value)) <= abs(exact)
        mantissa = int.from_bytes(raw[1:], "big")
        ulp = Fraction(2) ** (4 * (raw[0] & 0x7F) - 312)
        dropped_bits = max(mantissa.bit_length() - 53, 0)
        assert abs(exact - Fraction(value)) < ulp * 2**dropped_bits
        assert dropped_bits <= 3
        again = xport_writer.ieee_to_ibm(value)
        assert again[0] == raw[0]
        assert 0 <= mantissa - int.from_bytes(again[1:], "big") < 8


def test_ibm_decoding_matches_pyreadstat_bit_for_bit(tmp_path: Path) -> None:
    pyreadstat = pytest.importorskip("pyreadstat")
    rng = random.Random(1234)
    edge = ["41ffffffffffffff", "411fffffffffffff", "c17fffffffffffff", "0010000000000001"]
    raws = [bytes.fromhex(h) for h in edge] + [random_normalised_ibm(rng) for _ in range(1996)]
    data = bytearray(write([("X", "numeric", 8, "")], [[1.0]] * len(raws)))
    start = xport.read_header(bytes(data)).data_offset
    for index, raw in enumerate(raws):
        data[start + 8 * index : start + 8 * index + 8] = raw
    path = tmp_path / "random.xpt"
    path.write_bytes(bytes(data))
    frame, _ = pyreadstat.read_xport(str(path))
    ours = [row[0] for row in xport.iter_rows(bytes(data), xport.inspect(bytes(data)))]
    assert len(ours) == len(frame) == len(raws)
    for raw, mine, theirs in zip(raws, ours, frame["X"].tolist(), strict=True):
        assert isinstance(mine, float)
        assert bits(mine) == bits(theirs), raw.hex()
        assert mine == xport.ibm_to_ieee(raw)


# --------------------------------------------------------------------------- writer

VARIABLES = [
    ("USUBJID", "char", 11, "Unique Subject Identifier"),
    ("SITE", "char", 12, "Site name with accents"),
    ("AGE", "numeric", 8, "Age"),
    ("DOSE", "numeric", 8, "A label that is exactly forty characters"),
    ("NOTE", "char", 1, ""),
]
ROWS: list[list[str | float | int | None]] = [
    ["01-701-1015", "Montréal", 63, 0.0, "Y"],
    ["01-701-1023", "", None, -54.5, ""],
    ["01-701-1028", "Zürich é", 71.25, 0.049999999999999996, None],
    ["01-701-1033", "  leading", -0.0, 9.299999999999999, "N"],
    ["", "x", 1e-70, 1e70, "é"],
]
EXPECTED = [
    ("01-701-1015", "Montréal", 63.0, 0.0, "Y"),
    ("01-701-1023", "", None, -54.5, ""),
    ("01-701-1028", "Zürich é", 71.25, 0.049999999999999996, ""),
    ("01-701-1033", "  leading", 0.0, 9.299999999999999, "N"),
    ("", "x", 1e-70, 1e70, "é"),
]


def test_labels_fixture_is_forty_characters() -> None:
    assert len(VARIABLES[3][3]) == 40


def test_writer_round_trips_through_our_reader() -> None:
    data = write(VARIABLES, ROWS, name="dmx", dataset_label="Demographics extract")
    assert len(data) % 80 == 0
    layout = xport.inspect(data)
    header = layout.header
    assert header.dataset_name == "DMX"
    assert header.dataset_label == "Demographics extract"
    assert [(v.name, v.kind, v.length, v.label) for v in header.variables] == VARIABLES
    assert [v.position for v in header.variables] == [0, 11, 23, 31, 39]
    assert layout.row_count == len(ROWS)
    assert list(xport.iter_rows(data, layout)) == EXPECTED


def test_writer_output_is_read_identically_by_pyreadstat(tmp_path: Path) -> None:
    pyreadstat = pytest.importorskip("pyreadstat")
    path = tmp_path / "dmx.xpt"
    path.write_bytes(write(VARIABLES, ROWS, name="DMX", dataset_label="Demographics extract"))
    frame, meta = pyreadstat.read_xport(str(path), encoding="iso-8859-1")
    assert list(frame.columns) == [v[0] for v in VARIABLES]
    assert [label or "" for label in meta.column_labels] == [v[3] for v in VARIABLES]
    assert meta.file_label == "Demographics extract"
    assert meta.table_name == "DMX"
    assert len(frame) == len(EXPECTED)
    for column_index, name in enumerate(frame.columns):
        for expected_row, theirs in zip(EXPECTED, frame[name].tolist(), strict=True):
            expected = expected_row[column_index]
            if expected is None:
                assert math.isnan(theirs)
            elif isinstance(expected, float):
                assert bits(theirs) == bits(expected)
            else:
                assert theirs == expected


@pytest.mark.parametrize("stem", sorted(PILOT_SHAPES))
def test_rewriting_a_pilot_file_reproduces_its_observation_bytes(stem: str) -> None:
    """SAS and R wrote these files; our writer produces the very same data section."""
    data = pilot_bytes(stem)
    layout = xport.inspect(data)
    header = layout.header
    buffer = io.BytesIO()
    written = xport_writer.write_xport(
        buffer,
        header.dataset_name,
        [(v.name, v.kind, v.length, v.label) for v in header.variables],
        xport.iter_rows(data, layout),
        dataset_label=header.dataset_label,
        created=CREATED,
    )
    assert written == layout.row_count
    copy = buffer.getvalue()
    copy_header = xport.read_header(copy)
    assert [(v.name, v.position) for v in copy_header.variables] == [
        (v.name, v.position) for v in header.variables
    ]
    assert copy[copy_header.data_offset :] == data[header.data_offset :]


def test_writer_matches_sas_header_records() -> None:
    data = write(VARIABLES, ROWS)
    sas = pilot_bytes("sv")
    assert data[:80] == sas[:80]  # LIBRARY
    assert data[240:400] == sas[240:400]  # MEMBER, DSCRPTR
    obs_at = xport.read_header(data).data_offset - 80
    sas_obs_at = xport.read_header(sas).data_offset - 80
    assert data[obs_at : obs_at + 80] == sas[sas_obs_at : sas_obs_at + 80]
    assert data[80:104] == b"SAS     SAS     SASLIB  "
    assert data[144:160] == b"05MAR24:14:07:09"


def test_writer_is_deterministic() -> None:
    first = write(VARIABLES, ROWS)
    assert write(VARIABLES, ROWS) == first
    later = write(VARIABLES, ROWS, created=datetime(2025, 1, 1))
    assert later != first
    assert len(later) == len(first)
    assert later.replace(b"01JAN25:00:00:00", b"05MAR24:14:07:09") == first


def test_writer_with_utf8_and_no_rows() -> None:
    data = write([("TXT", "char", 6, "Café")], [["é€"]], encoding="utf-8")
    layout = xport.inspect(data, encoding="utf-8")
    assert layout.header.variables[0].label == "Café"
    assert list(xport.iter_rows(data, layout, encoding="utf-8")) == [("é€",)]
    empty = write(VARIABLES, [])
    layout = xport.inspect(empty)
    assert layout.row_count == 0
    assert list(xport.iter_rows(empty, layout)) == []


def test_writer_streams_large_tables() -> None:
    rows: list[list[str | float | int | None]] = [[f"S{i:05d}", i * 0.1] for i in range(30000)]
    data = write([("ID", "char", 6, ""), ("V", "numeric", 8, "")], rows)
    layout = xport.inspect(data)
    assert layout.row_count == 30000
    assert list(xport.iter_rows(data, layout))[-1] == ("S29999", 29999 * 0.1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "TOOLONGNAME"}, "longer than 8"),
        ({"name": "1ABC"}, "not a SAS name"),
        ({"name": ""}, "must not be empty"),
        ({"dataset_label": "x" * 41}, "longer than 40"),
        ({"variables": [("NINECHARS", "char", 4, "")]}, "longer than 8"),
        ({"variables": [("A", "char", 4, "y" * 41)]}, "longer than 40"),
        ({"variables": [("A", "text", 4, "")]}, "kind 'text'"),
        ({"variables": [("A", "numeric", 4, "")]}, "must have length 8"),
        ({"variables": [("A", "char", 0, "")]}, "length must be 1 to 200"),
        ({"variables": [("A", "char", 201, "")]}, "length must be 1 to 200"),
        ({"variables": [("A", "char", 4, ""), ("a", "char", 4, "")]}, "duplicate"),
        ({"variables": []}, "at least one variable"),
        ({"rows": [["toolong"]]}, "longer than its length 4"),
        ({"rows": [["éééé"]], "encoding": "utf-8"}, "longer than its length 4"),
        ({"rows": [["€"]]}, "cannot be encoded as latin-1"),
        ({"rows": [["ab", "cd"]]}, "has 2 values, expected 1"),
        ({"rows": [["ab"], ["    "]]}, "entirely blank"),
    ],
)
def test_writer_rejects_invalid_input(kwargs: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {
        "name": "TEST",
        "variables": [("A", "char", 4, "")],
        "rows": [["ab"]],
    }
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        xport_writer.write_xport(
            io.BytesIO(),
            arguments.pop("name"),
            arguments.pop("variables"),
            arguments.pop("rows"),
            **arguments,
        )


def test_writer_rejects_bad_numbers() -> None:
    for value in (math.inf, 1e80):
        with pytest.raises(ValueError, match="row 1, X"):
            write([("X", "numeric", 8, "")], [[value]])
    with pytest.raises(TypeError, match="must be a number"):
        write([("X", "numeric", 8, "")], [["12"]])
    with pytest.raises(TypeError, match="must be str or None"):
        write([("X", "char", 8, "")], [[12]])
    assert xport.inspect(write([("X", "numeric", 8, "")], [[math.nan]])).row_count == 1


def scan_in_chunks(data: bytes, size: int) -> xport.XportLayout:
    scanner = xport.XportScanner(len(data))
    for start in range(0, len(data), size):
        scanner.feed(data[start : start + size])
    return scanner.finish()


def outcome(check: Any) -> str:
    try:
        return f"rows {check().row_count}"
    except XportFormatError as error:
        return str(error)


@pytest.mark.parametrize("chunk", [1, 47, 80, 81, 1000, 65536])
def test_streaming_scan_agrees_with_the_whole_file_check(chunk: int) -> None:
    """Fed in chunks of any size, the scanner finds what a whole-file check finds: the row
    count, truncation at any cut, a second member across chunk boundaries, a bad header."""
    vs = pilot_bytes("vs")
    first = write([("A", "char", 3, "")], [["one"], ["two"]], name="FIRST")
    second = write([("B", "numeric", 8, "")], [[1.0]], name="SECOND")
    cases = [
        vs,
        vs[: len(vs) // 2],
        vs[:-80],
        vs[:640],
        first + second[240:],
        first,
        tiny_png(),
        b"",
    ]
    for data in cases:
        size = chunk if chunk > 1 or len(data) < 5000 else 997
        whole = outcome(lambda d=data: xport.inspect(d))
        streamed = outcome(lambda d=data, s=size: scan_in_chunks(d, s))
        assert streamed == whole, (len(data), chunk)
    assert outcome(lambda: scan_in_chunks(vs, chunk if chunk > 1 else 997)) == "rows 29643"


def test_rows_decoded_by_ranges_are_the_rows_of_the_whole_file() -> None:
    data = pilot_bytes("sv")
    layout = xport.inspect(data)
    decoder = xport.RowDecoder(layout.header)
    ranges = xport.plan_row_ranges(layout, 50_000)
    assert len(ranges) > 3 and ranges[0][0] == 0 and ranges[-1][1] == layout.row_count
    pieces = []
    for first, end in ranges:
        offset, length = xport.byte_range(layout, first, end)
        pieces += list(decoder.rows(data[offset : offset + length], first_row=first + 1))
    assert pieces == list(xport.iter_rows(data, layout))
