"""Text clean-up shared by the extractors."""
from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\ufeff]")
_TRAILING = re.compile(r"[ \t]+\n")
_BLANKS = re.compile(r"\n\n\n+")  # much faster than \n{3,} in CPython's engine


def normalise(text: str) -> str:
    """Unix newlines, no control characters or BOMs, no trailing blanks, at most one empty line."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    if " \n" in text or "\t\n" in text:  # the regex is slow on space-heavy text; skip it when clean
        text = _TRAILING.sub("\n", text)
    return _BLANKS.sub("\n\n", text).rstrip().lstrip("\n")


def pack(pieces: Iterable[T], target: int, size=len) -> Iterator[list[T]]:
    """Group consecutive pieces into blocks of about `target` characters (never splitting one)."""
    block: list[T] = []
    total = 0
    for piece in pieces:
        n = size(piece)
        if block and total + n > target:
            yield block
            block, total = [], 0
        block.append(piece)
        total += n
    if block:
        yield block


def merge_short(pieces: Iterable[str], min_chars: int, sep: str = "") -> list[str]:
    """Join each piece shorter than `min_chars` onto the next one (a bare heading onto its body)."""
    out: list[str] = []
    carry = ""
    for piece in pieces:
        carry = f"{carry}{sep}{piece}" if carry else piece
        if len(carry) >= min_chars:
            out.append(carry)
            carry = ""
    if carry:
        if out:
            out[-1] = f"{out[-1]}{sep}{carry}"
        else:
            out.append(carry)
    return out


class _HTMLText(HTMLParser):
    """HTML to plain text: block elements become line breaks, <pre> keeps its layout.

    `skip` names the classes or ids of elements (navigation bars, tables of
    contents) whose whole content is dropped; `split_tags` start a new piece,
    so a page can be cut into sections.
    """

    BLOCK = {"p", "div", "br", "li", "tr", "table", "pre", "h1", "h2", "h3", "h4", "h5", "h6",
             "ul", "ol", "dl", "dt", "dd", "blockquote", "hr"}
    PARAGRAPH = {"p", "pre", "h3", "h4", "h5", "table"}  # set off by an empty line
    VOID = {"br", "hr", "img", "meta", "link", "input", "col", "area", "base", "wbr"}

    def __init__(self, skip: set[str], split_tags: set[str]):
        super().__init__(convert_charrefs=True)
        self.skip = skip
        self.split_tags = split_tags
        self.pieces: list[list[str]] = [[]]
        self.skip_depth = 0  # >0 while inside a dropped element
        self.pre = 0

    def handle_starttag(self, tag, attrs):
        if tag in self.VOID:
            if tag == "br" and not self.skip_depth:
                self.pieces[-1].append("\n")
            return
        if self.skip_depth:
            self.skip_depth += 1
            return
        attrs = dict(attrs)
        names = {attrs.get("id"), *(attrs.get("class") or "").split()}
        if tag in ("script", "style", "head", "title") or names & self.skip:
            self.skip_depth = 1
            return
        if tag in self.split_tags:
            self.pieces.append([])
        if tag == "pre":
            self.pre += 1
        self._break(tag)
        if tag == "td":
            self.pieces[-1].append("\t")

    def handle_startendtag(self, tag, attrs):
        if tag == "br" and not self.skip_depth:
            self.pieces[-1].append("\n")

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        if self.skip_depth:
            self.skip_depth -= 1
            return
        if tag == "pre":
            self.pre = max(0, self.pre - 1)
        self._break(tag)

    def _break(self, tag):
        if tag in self.BLOCK:
            self.pieces[-1].append("\n\n" if tag in self.PARAGRAPH else "\n")

    def handle_data(self, data):
        if self.skip_depth:
            return
        if not self.pre:
            data = re.sub(r"\s+", " ", data)
            buf = self.pieces[-1]
            if not buf or buf[-1].endswith(("\n", "\t")):
                data = data.lstrip(" ")
        if data:
            self.pieces[-1].append(data)


def html_pieces(markup: str, skip: set[str] = frozenset(),
                split_tags: set[str] = frozenset()) -> list[str]:
    """Plain text of an HTML page, cut before each of `split_tags` (one piece if none)."""
    parser = _HTMLText(set(skip), set(split_tags))
    parser.feed(markup)
    parser.close()
    return [normalise("".join(piece).replace("\xa0", " ")) for piece in parser.pieces]
