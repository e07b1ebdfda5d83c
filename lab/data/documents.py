"""The unit every text source produces, and the corpus splits by.

Splitting happens at document level, never inside one, so a book, play or
licence never straddles train and test. A source that is one big file (a
dictionary, the ICD-10 tabular list) cuts itself into documents of a few
kilobytes along its natural boundaries.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Document:
    source: str
    """Name of the source that produced it (e.g. "licenses", "kjv", "user:myfolder")."""
    doc_id: str
    """Stable identifier, unique within its source (file name, book, entry range)."""
    text: str
    tag: str = ""
    """Optional sub-label a domain mapping can select on (e.g. GCIDE "law" senses)."""

    @property
    def key(self) -> str:
        return f"{self.source}/{self.doc_id}"

    def sort_hash(self, seed: int = 0) -> str:
        """Deterministic pseudo-random order that does not depend on iteration order."""
        return hashlib.sha256(f"{seed}:{self.key}".encode()).hexdigest()
