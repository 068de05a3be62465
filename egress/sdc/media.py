"""What an image or PDF carries besides its picture: trailing bytes, text chunks, EXIF/XMP, attachments.

A checker looks at the picture; these parts are invisible in any viewer, so they are either quoted in a
finding (short text, so a checker reads it) or fail the file (bytes after the end, embedded files).
Parsers walk the container structure (PNG chunks, JPEG segments, GIF blocks, PDF trailer and streams);
they never decode pixels.
"""

from __future__ import annotations

import re
import struct
import zlib

from egress.sdc.model import Finding, Text, quoted

_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_PNG_PICTURE = {
    b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"cHRM", b"gAMA", b"iCCP", b"sBIT", b"sRGB",
    b"bKGD", b"hIST", b"pHYs", b"sPLT", b"tIME", b"acTL", b"fcTL", b"fdAT", b"cICP",
}  # fmt: skip
_PNG_TEXT = {b"tEXt", b"zTXt", b"iTXt"}
# Text chunks plotting libraries write on every figure; a short value under these keys is no channel.
_ROUTINE_KEYS = {"Software", "Creation Time", "CreationDate", "Title", "Author", "Description"}
_ROUTINE_MAX = 120
_JPEG_ROUTINE = {0xE0, 0xE2, 0xEE}  # APP0 JFIF, APP2 ICC profile, APP14 Adobe: no free-form content


def inspect(data: bytes, suffix: str, name: str) -> tuple[list[Finding], list[Text]]:
    """Findings about a picture's hidden parts, and the text found in them (for the text rules)."""
    try:
        if suffix == ".png":
            return _png(data, name)
        if suffix in (".jpg", ".jpeg"):
            return _jpeg(data)
        if suffix == ".gif":
            return _gif(data)
        if suffix == ".pdf":
            return _pdf(data)
    except (ValueError, struct.error, IndexError, zlib.error) as exc:
        return [
            Finding("hidden", "fail", f"the file's structure is broken ({exc}); it cannot be shown whole")
        ], []
    return [], []


def _after_end(extra: int, what: str) -> Finding:
    return Finding(
        "hidden",
        "fail",
        f"{extra:,} byte(s) after the {what}'s end: no viewer shows them, so they could carry anything; "
        "save the figure again",
    )


def _quoted(label: str, text: str) -> Finding:
    return Finding(
        "hidden",
        "review",
        f"{label} ({len(text):,} characters) is not part of the picture: {quoted(text)!r}",
    )


def _png(data: bytes, name: str) -> tuple[list[Finding], list[Text]]:
    if not data.startswith(_PNG_SIG):
        raise ValueError("not a PNG signature")
    found: list[Finding] = []
    texts: list[Text] = []
    pos = len(_PNG_SIG)
    while True:
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if len(body) != length:
            raise ValueError(f"chunk {kind!r} is cut short")
        pos += 12 + length
        if kind == b"IEND":
            break
        if kind in _PNG_TEXT:
            key, text = _png_text(kind, body)
            if key in _ROUTINE_KEYS and len(text) <= _ROUTINE_MAX:
                continue
            texts.append(Text(f"{name} [text chunk {key!r}]", text))
            found.append(_quoted(f"text chunk {key!r}", text))
        elif kind == b"eXIf":
            found.append(
                Finding("hidden", "review", f"an EXIF block of {length:,} bytes is not part of the picture")
            )
        elif kind not in _PNG_PICTURE:
            found.append(
                Finding("hidden", "fail", f"an unknown chunk {kind.decode('latin-1')!r} of {length:,} bytes")
            )
    if pos < len(data):
        found.append(_after_end(len(data) - pos, "image"))
    return found, texts


def _png_text(kind: bytes, body: bytes) -> tuple[str, str]:
    key, _, rest = body.partition(b"\0")
    if kind == b"tEXt":
        return key.decode("latin-1"), rest.decode("latin-1")
    if kind == b"zTXt":
        return key.decode("latin-1"), _inflate(rest[1:]).decode("latin-1")
    compressed, rest = rest[0], rest[2:]
    _lang, _, rest = rest.partition(b"\0")
    _translated, _, text = rest.partition(b"\0")
    return key.decode("latin-1"), (_inflate(text) if compressed else text).decode("utf-8", "replace")


def _inflate(data: bytes, limit: int = 8 << 20) -> bytes:
    """Decompress at most `limit` bytes: a tiny chunk must not expand to gigabytes here."""
    return zlib.decompressobj().decompress(data, limit)


def _jpeg(data: bytes) -> tuple[list[Finding], list[Text]]:
    if not data.startswith(b"\xff\xd8"):
        raise ValueError("not a JPEG start marker")
    found: list[Finding] = []
    texts: list[Text] = []
    pos = 2
    while True:
        if data[pos] != 0xFF:
            raise ValueError(f"no marker at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xD9:
            pos += 2
            break
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            pos += 2
            continue
        length = struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        body = data[pos + 4 : pos + 2 + length]
        pos += 2 + length
        if marker == 0xFE:
            text = body.decode("latin-1")
            texts.append(Text("JPEG comment", text))
            found.append(_quoted("a JPEG comment", text))
        elif 0xE0 <= marker <= 0xEF and marker not in _JPEG_ROUTINE:
            label = "EXIF" if body.startswith(b"Exif") else "XMP" if b"adobe:ns:meta" in body[:100] else "APP"
            text = body.decode("latin-1")
            texts.append(Text(f"JPEG {label} block", text))
            found.append(
                Finding(
                    "hidden",
                    "review",
                    f"a JPEG {label} block of {len(body):,} bytes is not part of the picture",
                )
            )
        if marker == 0xDA:  # entropy-coded data follows: 0xFF is always stuffed, so the next marker ends it
            while True:
                pos = data.index(b"\xff", pos)
                if data[pos + 1] == 0x00 or 0xD0 <= data[pos + 1] <= 0xD7:
                    pos += 2
                    continue
                break
    if pos < len(data):
        found.append(_after_end(len(data) - pos, "image"))
    return found, texts


def _gif(data: bytes) -> tuple[list[Finding], list[Text]]:
    if data[:6] not in (b"GIF87a", b"GIF89a"):
        raise ValueError("not a GIF header")
    found: list[Finding] = []
    texts: list[Text] = []
    flags = data[10]
    pos = 13 + (3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0)
    while True:
        block = data[pos]
        if block == 0x3B:
            pos += 1
            break
        if block == 0x21:
            label = data[pos + 1]
            payload, pos = _sub_blocks(data, pos + 2)
            if label == 0xFE:
                text = payload.decode("latin-1")
                texts.append(Text("GIF comment", text))
                found.append(_quoted("a GIF comment", text))
            elif label == 0xFF and not payload.startswith((b"NETSCAPE2.0", b"ANIMEXTS1.0")):
                found.append(
                    Finding("hidden", "review", f"a GIF application block of {len(payload):,} bytes")
                )
        elif block == 0x2C:
            flags = data[pos + 9]
            pos += 10 + (3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0) + 1  # LZW code size
            _, pos = _sub_blocks(data, pos)
        else:
            raise ValueError(f"unknown GIF block {block:#x} at byte {pos}")
    if pos < len(data):
        found.append(_after_end(len(data) - pos, "image"))
    return found, texts


def _sub_blocks(data: bytes, pos: int) -> tuple[bytes, int]:
    parts = []
    while (size := data[pos]) != 0:
        parts.append(data[pos + 1 : pos + 1 + size])
        pos += 1 + size
    return b"".join(parts), pos + 1


_PDF_EMBEDDED = re.compile(rb"/(EmbeddedFiles?|FileAttachment|JavaScript|JS|Launch|RichMedia)\b")
_PDF_STREAM = re.compile(rb"stream\r?\n(.*?)\r?\nendstream", re.S)
_PDF_TEXT = re.compile(rb"/(Subject|Keywords|Author|Title)\s*\((.{0,2000}?)\)", re.S)


def _pdf(data: bytes) -> tuple[list[Finding], list[Text]]:
    if not data.lstrip()[:5] == b"%PDF-":
        raise ValueError("not a PDF header")
    found: list[Finding] = []
    end = data.rfind(b"%%EOF")
    if end < 0:
        raise ValueError("no %%EOF marker")
    extra = len(data[end + 5 :].strip())
    if extra:
        found.append(_after_end(extra, "document"))
    names = set(_PDF_EMBEDDED.findall(data))
    for stream in _PDF_STREAM.findall(data):  # object streams can hide dictionaries; look inside them
        try:
            names.update(_PDF_EMBEDDED.findall(_inflate(stream, 4 << 20)))
        except zlib.error:
            continue
    if names:
        listed = ", ".join(sorted(n.decode() for n in names))
        found.append(
            Finding(
                "hidden",
                "fail",
                f"the PDF holds {listed}: attached files and scripts are not part of the pages a checker "
                "reads; submit attachments as outputs of their own",
            )
        )
    texts = [Text(f"PDF {key.decode()}", value.decode("latin-1")) for key, value in _PDF_TEXT.findall(data)]
    for text in texts:
        if len(text.text) > _ROUTINE_MAX:
            found.append(_quoted(text.name, text.text))
    return found, texts
