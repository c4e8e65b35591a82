"""Read and add PNG text chunks with the standard library only (the WebUI keeps infotext in "parameters")."""

from __future__ import annotations

import struct
import zlib

PNG_SIG = b"\x89PNG\r\n\x1a\n"


def is_png(data: bytes) -> bool:
    return data.startswith(PNG_SIG)


def _chunks(data: bytes) -> list[tuple[bytes, bytes, int, int]]:
    """(type, payload, start, end) of each chunk; raises ValueError on a malformed file."""
    if not is_png(data):
        raise ValueError("not a PNG")
    out, pos = [], len(PNG_SIG)
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        ctype = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if end > len(data):
            raise ValueError("truncated PNG")
        out.append((ctype, data[pos + 8 : pos + 8 + length], pos, end))
        pos = end
        if ctype == b"IEND":
            break
    return out


def read_text(data: bytes) -> dict[str, str]:
    """All tEXt / zTXt / iTXt entries of a PNG."""
    out: dict[str, str] = {}
    for ctype, payload, _, _ in _chunks(data):
        if ctype == b"tEXt":
            key, _, value = payload.partition(b"\0")
            out[key.decode("latin-1")] = value.decode("latin-1")
        elif ctype == b"zTXt":
            key, _, rest = payload.partition(b"\0")
            out[key.decode("latin-1")] = zlib.decompress(rest[1:]).decode("latin-1")
        elif ctype == b"iTXt":
            key, _, rest = payload.partition(b"\0")
            compressed, rest = rest[0], rest[2:]
            _lang, _, rest = rest.partition(b"\0")
            _tkey, _, text = rest.partition(b"\0")
            out[key.decode("latin-1")] = (zlib.decompress(text) if compressed else text).decode("utf-8")
    return out


def _chunk(ctype: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(ctype + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + ctype + payload + struct.pack(">I", crc)


def add_text(data: bytes, key: str, value: str) -> bytes:
    """Insert a text chunk after IHDR; tEXt when latin-1 fits, else iTXt (as Pillow's PngInfo does)."""
    chunks = _chunks(data)
    if not chunks or chunks[0][0] != b"IHDR":
        raise ValueError("PNG without IHDR")
    k = key.encode("latin-1")
    try:
        new = _chunk(b"tEXt", k + b"\0" + value.encode("latin-1"))
    except UnicodeEncodeError:
        new = _chunk(b"iTXt", k + b"\0\0\0\0\0" + value.encode("utf-8"))
    at = chunks[0][3]
    return data[:at] + new + data[at:]
