"""What some bytes really are, for error messages: "not a Parquet file (looks like text)".

One table of words for every format the platform can recognise, shared by the XPORT reader and
the file inspection, so a file is described the same way whatever it was named.
"""

from __future__ import annotations


def xport_header_prefix(name: str) -> bytes:
    """First 48 bytes of an XPORT header record; the name field is 8 bytes, blank padded."""
    return b"HEADER RECORD*******" + name.encode("ascii").ljust(8) + b"HEADER RECORD!!!!!!!"


XPORT_LIBRARY = xport_header_prefix("LIBRARY")
XPORT_LIBV8 = xport_header_prefix("LIBV8")
_SAS7BDAT_MAGIC = bytes.fromhex("000000000000000000000000c2ea8160b31411cfbd92080009c7318c181f1011")
_TEXT_CONTROL_OK = frozenset(b"\t\n\r\f\x1a")
_MAGICS: tuple[tuple[bytes, str], ...] = (
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
_LOOKS_LIKE = {
    "empty": "an empty file",
    "sas-xport-v5": "a SAS XPORT v5 file",
    "sas-xport-v8": "SAS XPORT v8 (only v5 is supported)",
    "png": "a PNG image",
    "jpeg": "a JPEG image",
    "gif": "a GIF image",
    "pdf": "a PDF document",
    "zip": "a ZIP archive",
    "gzip": "a gzip archive",
    "parquet": "a Parquet file",
    "sas7bdat": "a SAS7BDAT dataset (not a transport file)",
    "html": "an HTML page",
    "xml": "an XML document",
    "json": "a JSON document",
    "text": "text",
    "binary": "binary data",
}


def sniff_format(prefix: bytes) -> str:
    """Best guess of what a file really is from its first bytes.

    Returns one of "empty", "sas-xport-v5", "sas-xport-v8", "png", "jpeg", "gif", "pdf",
    "zip", "gzip", "parquet", "sas7bdat", "html", "xml", "json", "text", "binary".
    """
    if not prefix:
        return "empty"
    head = bytes(prefix[:512])
    if head.startswith(XPORT_LIBRARY) or (
        len(head) < len(XPORT_LIBRARY) and XPORT_LIBRARY.startswith(head)
    ):
        return "sas-xport-v5"
    if head.startswith(XPORT_LIBV8):
        return "sas-xport-v8"
    for magic, kind in _MAGICS:
        if head.startswith(magic):
            return kind
    if head[:32] == _SAS7BDAT_MAGIC:
        return "sas7bdat"
    if any(b < 0x20 and b not in _TEXT_CONTROL_OK for b in head) or b"\x7f" in head:
        return "binary"
    return _text_kind(head)


def _text_kind(head: bytes) -> str:
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


def describe(kind: str) -> str:
    """Words for a kind `sniff_format` returns."""
    return _LOOKS_LIKE.get(kind, "binary data")


def looks_like(prefix: bytes) -> str:
    """Human words for what some bytes appear to be."""
    return describe(sniff_format(prefix))
