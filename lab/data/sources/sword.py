"""SWORD Bible modules (zText, zCom): KJV, WEB and Matthew Henry's commentary.

A testament is three files: `.bzz` holds zlib-compressed blocks (one or a few
books each), `.bzs` indexes the blocks (offset, compressed size, raw size as
little-endian uint32), and `.bzv` indexes the entries in 10 bytes (block and
offset in the decompressed block as uint32, size as uint16), also for the
zCom4 commentary whose driver name suggests wider sizes. Entries come in
canonical order: a module header, a testament header, then per book a book
header (which carries `<div type="book" osisID="Gen" sID=...>`), per chapter a
chapter header, then one entry per verse. The text is OSIS XML fragments.
"""
from __future__ import annotations

import html
import re
import struct
import zlib
from pathlib import Path
from typing import Iterator

_BLOCK = struct.Struct("<III")
_ENTRY = struct.Struct("<IIH")


def read_entries(folder: Path, testament: str) -> Iterator[str]:
    """The non-empty entries of one testament, in index order; repeated pointers only once.

    Commentaries point every verse of a passage at one shared note; the first
    pointer keeps it, the rest would duplicate the text.
    """
    index = folder / f"{testament}.bzs"
    if not index.exists():
        return
    blocks = list(_BLOCK.iter_unpack(index.read_bytes()))
    data = (folder / f"{testament}.bzz").read_bytes()
    cache: dict[int, bytes] = {}
    seen = set()
    entries = list(_ENTRY.iter_unpack((folder / f"{testament}.bzv").read_bytes()))
    for i, (block, offset, size) in enumerate(entries):
        if size == 0 or (block, offset) in seen:
            continue
        # Sizes are uint16 and wrap for entries over 64 KB (WEB's Greek Daniel);
        # the next entry, which starts where this one ends, gives the true size.
        if i + 1 < len(entries) and entries[i + 1][0] == block:
            gap = entries[i + 1][1] - offset - size
            if gap > 0 and gap % 65536 == 0:
                size += gap
        seen.add((block, offset))
        if block not in cache:
            start, length, _ = blocks[block]
            cache.clear()  # entries run through the blocks in order
            cache[block] = zlib.decompress(data[start:start + length])
        yield cache[block][offset:offset + size].decode("utf-8", errors="replace")


_BOOK = re.compile(r'<div\b(?=[^>]*\btype="book")(?=[^>]*\bsID=)[^>]*>')  # a book's start, not its end
_OSIS_ID = re.compile(r'\bosisID="([^"]+)"')
_NOTE = re.compile(r"<note\b[^>]*/>|<note\b[^>]*>.*?</note>", re.S)
_BREAK = re.compile(r"<(?:chapter|title|/title|lb|l|/l|lg|/lg|p|/p|div)\b[^>]*>")
_CHAPTER = re.compile(r"<chapter\b[^>]*\bsID=")
_TAG = re.compile(r"<[^>]*>")


def osis_to_text(fragment: str) -> str:
    """Plain text of an OSIS fragment: notes dropped; titles, poetic lines, paragraphs on lines of their own."""
    # A footnote between two words sometimes holds their only separating space.
    text = _NOTE.sub(lambda m: " " if fragment.startswith("<w", m.end()) else "", fragment)
    text = _BREAK.sub("\n", text)
    text = html.unescape(_TAG.sub("", text))
    lines = (" ".join(line.split()) for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


def books(folder: Path, separator: str) -> Iterator[tuple[str, str, str]]:
    """One document per book (osisID as id), entries joined by `separator`.

    A book normally starts in its own header entry, but text outside the
    versification (WEB's Greek Daniel) sits in one entry together with the
    next book's start, so every entry is cut at every book start.
    """
    for testament in ("ot", "nt"):
        name, parts = None, []
        for entry in read_entries(folder, testament):
            cuts = [(m.start(), _OSIS_ID.search(m.group(0)).group(1)) for m in _BOOK.finditer(entry)]
            bounds = [0, *(start for start, _ in cuts), len(entry)]
            names = [name, *(book for _, book in cuts)]
            for (a, b), book in zip(zip(bounds, bounds[1:]), names):
                if book != name:
                    if name is not None:
                        yield name, separator.join(parts), ""
                    name, parts = book, []
                if name is not None and b > a:
                    if _CHAPTER.search(entry, a, b):
                        parts.append("")  # an empty line before each chapter
                    text = osis_to_text(entry[a:b])
                    if text:
                        parts.append(text)
        if name is not None:
            yield name, separator.join(parts), ""


def module_folder(root: Path) -> Path:
    (folder,) = {p.parent for p in root.glob("usr/share/sword/modules/*/*/*/*.bzv")}
    return folder


def bible(root: Path) -> Iterator[tuple[str, str, str]]:
    return books(module_folder(root), "\n")


def commentary(root: Path) -> Iterator[tuple[str, str, str]]:
    return books(module_folder(root), "\n\n")
