"""Wikipedia articles from gensim's test dump, wikitext reduced to plain prose."""
from __future__ import annotations

import bz2
import html
import re
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path
from typing import Iterator

DUMP = "gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"

_COMMENT = re.compile(r"<!--.*?-->", re.S)
_REF = re.compile(r"<ref\b[^>]*?/>|<ref\b[^>]*>.*?</ref\s*>", re.S | re.I)
_DROPPED_ELEMENTS = re.compile(
    r"<(math|gallery|timeline|imagemap|score|syntaxhighlight|source|graph|chem)\b[^>]*>.*?</\1\s*>", re.S | re.I)
_TEMPLATE = re.compile(r"\{\{[^{}]*\}\}")  # innermost first; repeated until none is left
_TABLE = re.compile(r"\{\|(?:(?!\{\|).)*?\|\}", re.S)
_LINK = re.compile(r"\[\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\]")  # captions may hold [single] brackets
# Files, categories and interlanguage links ([[de:Albedo]]) are not prose.
_NAMESPACE = re.compile(
    r"^\s*:?\s*(?:File|Image|Category|Media|Wikipedia|Template|Help|Portal|[a-z]{2,3}(?:-[a-z]+)?)\s*:", re.I)
_EXTERNAL = re.compile(r"\[(?:https?:|ftp:)?//[^\s\]]*\s*([^\]]*)\]")
_TAIL_SECTION = re.compile(
    r"^==\s*(?:References|External links|See also|Further reading|Notes|Bibliography|Sources|"
    r"Footnotes|Citations|Notes and references)\s*==\s*$", re.M | re.I)
_HEADING = re.compile(r"^(=+)\s*(.*?)\s*\1\s*$", re.M)
_TAG = re.compile(r"</?[a-zA-Z][^<>]*>")
_LIST_MARK = re.compile(r"^[*#:;]+\s*", re.M)
# Markup the passes above cannot parse (unbalanced braces inside a template): drop the paragraph.
_RESIDUE = re.compile(r"^.*(?:\{\{|\}\}|\[\[|\]\]|\{\|).*\n?", re.M)
_EMPTY_BRACKETS = re.compile(r"\(\s*[,;]?\s*\)|\[\s*\]")


def _repeat(pattern: re.Pattern, repl, text: str) -> str:
    n = 1
    while n:
        text, n = pattern.subn(repl, text)
    return text


def _link(m: re.Match) -> str:
    target, _, label = m.group(1).partition("|")
    if _NAMESPACE.match(target):
        return ""
    return (label or target).strip()


def wiki_to_text(markup: str) -> str:
    tail = _TAIL_SECTION.search(markup)
    if tail:
        markup = markup[:tail.start()]
    text = _COMMENT.sub("", markup)
    text = _REF.sub("", text)
    text = _DROPPED_ELEMENTS.sub("", text)
    text = _repeat(_TEMPLATE, "", text)
    text = _repeat(_TABLE, "", text)
    text = _repeat(_LINK, _link, text)
    text = _RESIDUE.sub("", text)
    text = _EXTERNAL.sub(r"\1", text)
    text = _HEADING.sub(r"\2", text)
    text = re.sub(r"'{2,}", "", text)
    text = re.sub(r"<br\s*/?>", "\n", text, flags=re.I)
    text = _TAG.sub("", text)
    text = re.sub(r"__[A-Z]+__", "", text)
    text = _LIST_MARK.sub("", text)
    text = html.unescape(text)
    text = _EMPTY_BRACKETS.sub("", text)
    text = re.sub(r"[ \t]{2,}", " ", text)
    return re.sub(r" +([,.;:])", r"\1", text)


def wikipedia(archive: Path) -> Iterator[tuple[str, str, str]]:
    """Main-namespace articles, redirects skipped, in dump order (streamed: a cap stops early)."""
    with zipfile.ZipFile(archive) as z, z.open(DUMP) as packed, bz2.open(packed) as xml:
        for _, page in ET.iterparse(xml):
            if not page.tag.endswith("}page"):
                continue
            fields = {child.tag.rpartition("}")[2]: child for child in page}
            if fields["ns"].text == "0" and "redirect" not in fields:
                revision = {child.tag.rpartition("}")[2]: child for child in fields["revision"]}
                yield fields["title"].text, wiki_to_text(revision["text"].text or ""), ""
            page.clear()
