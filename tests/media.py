"""Small but valid PNG, JPEG and PDF files, built byte by byte for the upload tests.

Each builder takes a `token` that ends up inside the file (a PNG `tEXt` chunk, a
JPEG `COM` segment, a PDF comment), so every test can make content no other test
uploads: blobs are shared by SHA-256 across the whole database, and tests about
reference counting must not meet another test's bytes.
"""

import struct
import uuid
import zlib


def token() -> str:
    return uuid.uuid4().hex


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def png(text: str | None = None, width: int = 3, height: int = 2, padding: int = 0) -> bytes:
    """An 8-bit RGB PNG; `text` goes into a tEXt chunk, `padding` zero bytes into a private chunk."""
    rows = b"".join(
        b"\x00" + b"".join(bytes(((x * 85) % 256, (y * 120) % 256, 200)) for x in range(width))
        for y in range(height))
    chunks = [_png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))]
    if text is not None:
        chunks.append(_png_chunk(b"tEXt", b"Comment\x00" + text.encode("latin-1")))
    if padding:
        # Ancillary, private, safe-to-copy: decoders skip it.
        chunks.append(_png_chunk(b"quVr", bytes(padding)))
    chunks.append(_png_chunk(b"IDAT", zlib.compress(rows)))
    chunks.append(_png_chunk(b"IEND", b""))
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks)


def png_of_size(size: int, text: str | None = None) -> bytes:
    """A valid PNG of exactly `size` bytes (padded with a private ancillary chunk)."""
    base = len(png(text))
    if size < base + 12:
        raise ValueError(f"a padded PNG needs at least {base + 12} bytes")
    data = png(text, padding=size - base - 12)
    assert len(data) == size
    return data


def png_pixels(data: bytes) -> tuple[int, int, bytes]:
    """Decode what `png` builds (width, height, raw filtered rows), checking every CRC."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, kind
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    return width, height, zlib.decompress(idat)


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload


def jpeg(text: str | None = None) -> bytes:
    """A baseline JPEG: one 8x8 grey block (DC 0, end of block), with the shortest Huffman tables."""
    parts = [b"\xff\xd8",  # SOI
             _segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")]  # APP0
    if text is not None:
        parts.append(_segment(0xFE, text.encode("ascii")))  # COM
    parts += [
        _segment(0xDB, b"\x00" + bytes([1] * 64)),  # DQT: table 0, all ones
        _segment(0xC0, b"\x08\x00\x08\x00\x08\x01\x01\x11\x00"),  # SOF0: 8 bit, 8x8, 1 component
        _segment(0xC4, b"\x00" + bytes([1] + [0] * 15) + b"\x00"),  # DHT DC 0: code '0' → 0
        _segment(0xC4, b"\x10" + bytes([1] + [0] * 15) + b"\x00"),  # DHT AC 0: code '0' → EOB
        _segment(0xDA, b"\x01\x01\x00\x00\x3f\x00"),  # SOS: component 1, tables 0/0, 0..63
        b"\x3f",  # DC diff 0 ('0'), EOB ('0'), padded with ones
        b"\xff\xd9",  # EOI
    ]
    return b"".join(parts)


def pdf(text: str | None = None) -> bytes:
    """A one-page PDF 1.4 with a correct cross-reference table."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 72 72] >>",
    ]
    out = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"
    if text is not None:
        out += b"% " + text.encode("ascii") + b"\n"
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return out
