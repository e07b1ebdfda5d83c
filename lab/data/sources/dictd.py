"""dictd dictionaries (GCIDE, WordNet, FOLDOC, Jargon File, Devil's Dictionary).

A dictionary is `NAME.index`, lines of `headword TAB offset TAB length` with
the numbers in base 64 (digits A-Z a-z 0-9 + /, most significant first), and
`NAME.dict.dz`, the entries concatenated and gzip-compressed (dictzip adds a
random-access table that plain gzip ignores). Entries are cut into documents
of a few consecutive entries.
"""
from __future__ import annotations

import gzip
import re
import unicodedata
from itertools import groupby
from pathlib import Path
from typing import Iterator

from .text import pack

_B64 = {c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}
BLOCK_CHARS = 4000


def b64_number(digits: str) -> int:
    n = 0
    for c in digits:
        n = n * 64 + _B64[c]
    return n


def read_index(path: Path) -> list[tuple[str, int, int]]:
    """(headword, offset, length) for every line of a dictd index."""
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        fields = line.split("\t")
        if len(fields) >= 3:
            out.append((fields[0], b64_number(fields[1]), b64_number(fields[2])))
    return out


def read_entries(index: Path, data: Path) -> Iterator[tuple[str, str]]:
    """(headword, entry text) in file order, each entry once, the `00-database-*` metadata skipped.

    Several headwords may point at one entry (inflections, synonyms); the
    alphabetically first names it.
    """
    heads: dict[tuple[int, int], str] = {}
    for head, offset, length in read_index(index):
        if not head.startswith("00"):
            key = (offset, length)
            heads[key] = min(heads.get(key, head), head)
    # Read forward through the stream, so a capped caller decompresses only what it uses.
    with gzip.open(data) as f:
        for offset, length in sorted(heads):
            f.seek(offset)
            yield heads[offset, length], f.read(length).decode("utf-8", errors="replace")


def clean_entry(text: str) -> str:
    """Cross-reference braces dropped, hard indentation and alignment runs collapsed."""
    text = text.replace("{", "").replace("}", "")
    return "\n".join(" ".join(line.split()) for line in text.strip().split("\n"))


def dictionary(root: Path, name: str, clean=clean_entry, tag=lambda entry: ""
               ) -> Iterator[tuple[str, str, str]]:
    """Blocks of consecutive entries with the same tag, about BLOCK_CHARS each."""
    folder = root / "usr/share/dictd"
    entries = read_entries(folder / f"{name}.index", folder / f"{name}.dict.dz")
    numbered = ((k, head, text, tag(text)) for k, (head, text) in enumerate(entries))
    for block_tag, run in groupby(numbered, key=lambda e: e[3]):
        for block in pack(run, BLOCK_CHARS, size=lambda e: len(e[2])):
            k, head = block[0][0], block[0][1]
            yield f"{k:06d}-{head}", "\n\n".join(clean(e[2]) for e in block), block_tag


# --- GCIDE (Webster 1913 and supplements): subject labels such as (Law) or (Anat.)

_PRONUNCIATION = re.compile(r"\\[^\\\n]*\\")  # Abundant \A*bun"dant\, a.
# Phonetic respellings, e.g. ([a^]b*[=a]l"yen*[=a]t): diacritic codes, syllable stars, stress marks.
_RESPELLING = re.compile(r"\((?=[^()\n]*(?:\[[^\]\s]{1,8}\]|\w\*\w|\w\"))[^()\n]*\)")
_CITATION = re.compile(r"\[(?:1913 Webster|Webster|WordNet|PJC|Century|Chambers)[^\]\n]*\]")
# GCIDE writes accented letters as ASCII codes: ['e] is e-acute, [a^] a-breve, [=o] o-macron.
_ACCENT = re.compile(r"\[([`'\"^=~.,])([A-Za-z])\]|\[([A-Za-z])\^\]")
_COMBINING = {"`": "\u0300", "'": "\u0301", "^": "\u0302", "~": "\u0303", "=": "\u0304",
              ".": "\u0307", '"': "\u0308", ",": "\u0327"}
_NAMED = {"[ae]": "æ", "[AE]": "Æ", "[oe]": "œ", "[OE]": "Œ", "[eth]": "ð", "[thorn]": "þ",
          "[imac]": "ī", "[deg]": "°", "[sect]": "§", "[root]": "√", "[yogh]": "ȝ", "[aum]": "ä",
          "[=ae]": "ǣ", "[pound]": "£", "[frac12]": "½", "[frac14]": "¼", "[frac34]": "¾"}
_NAMED_RE = re.compile("|".join(re.escape(k) for k in _NAMED))


def _accent(m: re.Match) -> str:
    if m.group(3):
        return unicodedata.normalize("NFC", m.group(3) + "\u0306")
    return unicodedata.normalize("NFC", m.group(2) + _COMBINING[m.group(1)])


_LABEL = re.compile(r"\(([A-Z][A-Za-z. &]{0,30})\)")
_MED_WORDS = {"Med", "Anat", "Anatomy", "Physiol", "Pathol", "Surg", "Pharm", "Pharmacy", "Therap",
              "Obstet", "Dentistry", "Immunology", "Ophthalmol", "Neurol", "Dermatol", "Toxicol"}


def gcide_tag(entry: str) -> str:
    """"law" for an entry with a legal sense label, "med" for a medical one, else ""."""
    words = set()
    for label in _LABEL.findall(entry):
        words.update(re.findall(r"[A-Za-z]+", label))
    if "Law" in words:
        return "law"
    return "med" if words & _MED_WORDS else ""


def clean_gcide(entry: str) -> str:
    entry = _RESPELLING.sub("", _PRONUNCIATION.sub("", entry))
    entry = _NAMED_RE.sub(lambda m: _NAMED[m.group(0)], _ACCENT.sub(_accent, _CITATION.sub("", entry)))
    return clean_entry(entry).replace(" ,", ",")  # the dropped pronunciation leaves "Abate , v."


def gcide(root: Path) -> Iterator[tuple[str, str, str]]:
    return dictionary(root, "gcide", clean=clean_gcide, tag=gcide_tag)


def wordnet(root: Path) -> Iterator[tuple[str, str, str]]:
    return dictionary(root, "wn")


def foldoc(root: Path) -> Iterator[tuple[str, str, str]]:
    return dictionary(root, "foldoc")


def jargon(root: Path) -> Iterator[tuple[str, str, str]]:
    return dictionary(root, "jargon")


def devil(root: Path) -> Iterator[tuple[str, str, str]]:
    return dictionary(root, "devil")
