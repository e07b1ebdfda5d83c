"""The embedded default corpus: which package text becomes which domain.

Eight target domains stand in for the paper's Pile subsets; everything else,
plus a share of every domain source's documents, forms the generic corpus in
the role of c4, so that the generic corpus covers the same kinds of text as
the domains without containing the documents held out as domain data.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from ..scales import Scale
from .documents import Document

log = logging.getLogger(__name__)

# domain -> (source, tag) pairs; tag None takes every document of the source.
DOMAINS: dict[str, list[tuple[str, str | None]]] = {
    "legal": [("licenses", None), ("gcide", "law")],
    "science": [("pari", None), ("gap", None)],
    "code": [("pystdlib", None)],
    "techdocs": [("pydoc", None), ("manpages", None)],
    "encyclopedic": [("wikipedia", None), ("foldoc", None)],
    "drama": [("shakespeare", None), ("chatterbot", None)],
    "scripture": [("kjv", None), ("web", None), ("mhcc", None), ("milton", None)],
    "medicine": [("icd10", None), ("gcide", "med")],
}
CLOSEST_PILE = {
    "legal": "freelaw", "science": "arxiv", "code": "github", "techdocs": "stackexchange",
    "encyclopedic": "wikipedia", "drama": "opensubtitles", "scripture": "gutenberg",
    "medicine": "pubmed_abstracts",
}

# Dictionaries are list-like and large (WordNet 27 MB, GCIDE 26 MB); uncapped
# they would make the generic corpus mostly dictionary entries.
GENERIC_CHAR_CAPS = {"wordnet": 6_000_000, "gcide": 8_000_000}


@dataclass
class Collected:
    generic: list[Document] = field(default_factory=list)
    domains: dict[str, list[Document]] = field(default_factory=dict)
    sources: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)


def _route(doc: Document) -> str | None:
    for domain, pairs in DOMAINS.items():
        for source, tag in pairs:
            if doc.source == source and (tag is None or doc.tag == tag):
                return domain
    return None


def collect(scale: Scale, progress=None) -> Collected:
    """Read every available source and route its documents to a domain or the
    generic corpus. Deterministic: the order of documents depends only on
    their identities, never on the order sources were read in."""
    from .sources import SOURCES, SourceUnavailable

    out = Collected(domains={d: [] for d in DOMAINS})
    routed: dict[str, list[Document]] = {d: [] for d in DOMAINS}
    generic_only: list[Document] = []
    for name, source in SOURCES.items():
        t0 = time.perf_counter()
        try:
            docs = list(source.documents(limit_chars=scale.source_chars))
            info = source.info()
        except SourceUnavailable as e:
            out.skipped.append({"source": name, "package": source.package, "reason": e.reason})
            log.warning("skipped %s: %s", name, e.reason)
            continue
        entry = dict(info, source=name, documents=len(docs), chars=sum(len(d.text) for d in docs),
                     seconds=round(time.perf_counter() - t0, 2), domains={})
        for d in docs:
            dom = _route(d) or "generic"
            entry["domains"][dom] = entry["domains"].get(dom, 0) + 1
            (generic_only if dom == "generic" else routed[dom]).append(d)
        out.sources.append(entry)
        if progress:
            progress(name)

    used: dict[str, int] = {}
    for d in sorted(generic_only, key=lambda d: d.sort_hash(scale.seed)):
        cap = GENERIC_CHAR_CAPS.get(d.source)
        if cap is not None and used.get(d.source, 0) >= cap:
            continue
        used[d.source] = used.get(d.source, 0) + len(d.text)
        out.generic.append(d)

    # A share of each domain source goes to the generic corpus, per source so
    # that every kind of domain text is represented there.
    for domain, docs in routed.items():
        by_source: dict[tuple[str, str], list[Document]] = {}
        for d in docs:
            by_source.setdefault((d.source, d.tag), []).append(d)
        for key in sorted(by_source):
            ordered = sorted(by_source[key], key=lambda d: d.sort_hash(scale.seed))
            n_generic = int(len(ordered) * scale.generic_share)
            out.generic.extend(ordered[:n_generic])
            out.domains[domain].extend(ordered[n_generic:])
    out.domains = {d: docs for d, docs in out.domains.items() if docs}
    return out
