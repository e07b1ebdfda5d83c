"""Keep evaluation honest: no long line of a domain's held-out text may occur in
the generic corpus.

A first split of the embedded corpus put 41% of the legal test lines verbatim
in the generic corpus (licence boilerplate); a model that memorised the
boilerplate would look like a good legal model. Lines are compared after
stripping surrounding whitespace; only lines longer than `MIN_CHARS` count,
since short lines ("}", "Amen.") are shared by any two texts.
"""
from __future__ import annotations

import hashlib
from typing import Iterable

import numpy as np

from .documents import Document

MIN_CHARS = 30


def _line_hash(line: str) -> int:
    return int.from_bytes(hashlib.blake2b(line.encode("utf-8"), digest_size=8).digest(), "little", signed=True)


def long_lines(text: str) -> Iterable[str]:
    for line in text.splitlines():
        line = line.strip()
        if len(line) > MIN_CHARS:
            yield line


def line_hashes(docs: Iterable[Document]) -> np.ndarray:
    """Sorted unique hashes of every long line in `docs`."""
    return np.unique(np.fromiter((_line_hash(l) for d in docs for l in long_lines(d.text)), dtype=np.int64))


def contains(hashes: np.ndarray, line: str) -> bool:
    h = _line_hash(line)
    i = np.searchsorted(hashes, h)
    return bool(i < len(hashes) and hashes[i] == h)


def drop_overlap(doc: Document, hashes: np.ndarray) -> tuple[Document, int, int]:
    """Return the document without its lines that occur in `hashes`,
    the number of long lines it had, and the number dropped."""
    kept, total, dropped = [], 0, 0
    for line in doc.text.splitlines():
        s = line.strip()
        if len(s) > MIN_CHARS:
            total += 1
            if contains(hashes, s):
                dropped += 1
                continue
        kept.append(line)
    if not dropped:
        return doc, total, 0
    return Document(doc.source, doc.doc_id, "\n".join(kept), doc.tag), total, dropped


def overlap_share(docs: Iterable[Document], hashes: np.ndarray) -> tuple[int, int]:
    """(long lines in `docs`, how many of them occur in `hashes`)."""
    total = hit = 0
    for d in docs:
        for line in long_lines(d.text):
            total += 1
            hit += contains(hashes, line)
    return total, hit
