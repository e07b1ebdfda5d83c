"""Linux man pages (manpages, manpages-dev), from troff `man` macros to plain text.

groff would render them faithfully but takes ~15 ms a page and is not always
installed; the pages use a small, regular subset of the macros, which a
line-by-line pass turns into paragraphs (filled text joined into one line) and
verbatim blocks (.nf/.EX) kept line for line, some fifteen times faster.
"""
from __future__ import annotations

import gzip
import re
from pathlib import Path
from typing import Iterator

_GLYPHS = {
    "aq": "'", "dq": '"', "lq": "\u201c", "rq": "\u201d", "oq": "\u2018", "cq": "\u2019", "bu": "\u2022",
    "em": "\u2014", "en": "\u2013", "hy": "-", "mi": "-", "ti": "~", "ha": "^", "ga": "`", "rs": "\\",
    "bv": "|", "co": "\u00a9", "rg": "\u00ae", "tm": "\u2122", "de": "\u00b0", "mu": "\u00d7",
    "di": "\u00f7", "+-": "\u00b1", "<=": "\u2264", ">=": "\u2265", "!=": "\u2260", "->": "\u2192",
    "<-": "\u2190", "ra": "\u27e9", "la": "\u27e8", "fm": "\u2032", "sd": "\u2033", "dg": "\u2020",
    "sc": "\u00a7", "ss": "\u00df", "pl": "+", "eq": "=", "sl": "/", "ul": "_", "at": "@", "sh": "#",
    "Do": "$", "ct": "\u00a2", "Po": "\u00a3", "Eu": "\u20ac", "Ye": "\u00a5", "mc": "\u00b5",
    "`a": "\u00e0", "'a": "\u00e1", "^a": "\u00e2", ":a": "\u00e4", "'e": "\u00e9", ":o": "\u00f6",
    ":u": "\u00fc", "Tm": "\u2122", "R": "\u00ae",
}
# One alternation for every escape; the handler decides what each becomes.
_ESCAPE = re.compile(r"""\\(?:
    (?P<comment>["#].*)                                   # comment to end of line
  | f(?:\[[^\]]*\]|\(..|.)                                # font change
  | s(?:[+-]?\d|\[[^\]]*\]|\([+-]?\d\d|'[^']*')            # size change
  | [hvwlLoZXDbxSRN]'[^']*'                               # drawing, motion, width, \N'123'
  | n(?:\[[^\]]*\]|\(..|[+-]?.)                           # number register
  | \*(?P<str>\[[^\]]*\]|\(..|.)                          # string interpolation
  | \((?P<glyph2>..)                                      # \(xx glyph
  | \[(?P<glyph>[^\]]*)\]                                 # \[name] glyph
  | (?P<char>.)                                           # one-character escapes
)""", re.X)
_SIMPLE = {"e": "\\", "\\": "\\", "-": "-", " ": " ", "~": " ", "0": " ", "t": "\t", ".": ".",
           "'": "\u00b4", "`": "`", "_": "_", "&": "", "|": "", "^": "", ":": "", "%": "", "/": "",
           ",": "", ")": "", "c": "", "p": "", "!": "", "{": "", "}": "", "z": "", "a": ""}


def _escape(m: re.Match) -> str:
    if m.group("comment") is not None:
        return ""
    name = m.group("glyph") or m.group("glyph2") or m.group("str")
    if name is not None:
        name = name.strip("[]")
        if name.startswith("(") and len(name) == 3:
            name = name[1:]
        if re.fullmatch(r"u[0-9A-Fa-f]{4,6}", name):
            return chr(int(name[1:], 16))
        return _GLYPHS.get(name, "")
    char = m.group("char")
    if char is not None:
        return _SIMPLE.get(char, char)
    text = m.group(0)
    if text.startswith("\\N'"):
        return chr(int(text[3:-1]))
    return ""


def unescape(text: str) -> str:
    return _ESCAPE.sub(_escape, text) if "\\" in text else text


_ARG = re.compile(r'"((?:[^"]|"")*)"?|((?:[^\s\\]|\\.)+)')  # "\ " does not split


def _args(rest: str) -> list[str]:
    """Macro arguments: blank-separated; double quotes group words, and "" inside them is a quote."""
    return [m.group(1).replace('""', '"') if m.group(1) is not None else m.group(2)
            for m in _ARG.finditer(rest)]


_FONT_ALTERNATION = {"BR", "BI", "IB", "IR", "RB", "RI"}
_PARAGRAPH = {"PP", "LP", "P", "sp", "HP"}
_IGNORED = {"TH", "ad", "na", "nh", "hy", "in", "ft", "ta", "ti", "nr", "ds", "UC", "RS", "RE",
            "INDENT", "UNINDENT", "if", "ie", "el", "ll", "ps", "vs", "ss", "cs", "bp", "pc", "mso",
            "so", "DT", "PD", "ne", "ig", "rm", "rn", "als", "cc", "c2", "ec", "eo", "hw", "lf", "tr",
            "ce", "UR", "MT"}


class _Page:
    """Output under construction: finished lines, and the paragraph being filled."""

    def __init__(self):
        self.lines: list[str] = []
        self.words: list[str] = []
        self.fill = True
        self.tag_next = False  # after .TP the next line is the item's tag

    def flush(self, blank: bool = True) -> None:
        if self.words:
            self.lines.append(" ".join(self.words))
            self.words.clear()
        if blank and self.lines and self.lines[-1]:
            self.lines.append("")

    def text(self, text: str) -> None:
        text = unescape(text)
        if self.tag_next:
            self.tag_next = False
            self.flush(blank=False)
            self.lines.append(text.strip())
        elif not self.fill:
            self.lines.append(text.rstrip())
        elif text.strip():
            self.words.append(text.strip())
        else:
            self.flush()


def man_to_text(source: str) -> str:
    page = _Page()
    table = None  # inside .TS/.TE: "format" until the format lines end, then "data"
    define = False  # inside a .de macro definition, which ends at ".."
    for line in source.replace("\\\n", "").split("\n"):  # a trailing backslash continues the line
        if define:
            define = line.strip() != ".."
            continue
        if table:
            if line.startswith(".TE"):
                table = None
                page.flush()
            elif table == "format":
                table = "format" if not line.rstrip().endswith(".") else "data"
            elif line.strip() not in ("_", "=", "") and not line.startswith((".", "'")):
                cells = (unescape(c.replace("T{", "").replace("T}", "")).strip() for c in line.split("\t"))
                page.lines.append("  ".join(c for c in cells if c))
            continue
        if not line.startswith((".", "'")):
            page.text(line)
            continue
        macro, _, rest = line[1:].lstrip().partition(" ")
        if not macro or macro.startswith(("\\", "\"")) or macro in _IGNORED:
            continue
        if macro in ("de", "de1", "am"):
            define = True
        elif macro in ("SH", "SS"):
            page.flush()
            page.fill = True
            page.lines.extend([unescape(" ".join(_args(rest))), ""])
        elif macro in _PARAGRAPH:
            page.flush()
        elif macro == "br":
            page.flush(blank=False)
        elif macro in ("TP", "TQ"):
            page.flush(blank=macro == "TP")
            page.tag_next = True
        elif macro == "IP":
            page.flush()
            tag = unescape(" ".join(_args(rest)[:1]))
            if tag:
                page.lines.append(tag)
        elif macro in ("nf", "EX"):
            page.flush()
            page.fill = False
        elif macro in ("fi", "EE"):
            page.fill = True
            page.flush()
        elif macro == "TS":
            page.flush()
            table = "format"
        elif macro in _FONT_ALTERNATION:
            page.text("".join(_args(rest)))
        elif macro in ("UE", "ME"):
            if rest.strip() and page.words:
                page.words[-1] += unescape(rest.strip())
        elif macro in ("SY", "YS"):
            page.flush()
            if macro == "SY":
                page.words.append(unescape(rest.strip()))
        elif macro == "OP":
            page.words.append("[" + unescape(" ".join(_args(rest))) + "]")
        elif rest.strip():
            # .B, .I, .SM and a page's own macros (e.g. .q for quotes): keep the words.
            page.text(" ".join(_args(rest)))
    page.flush()
    return "\n".join(page.lines)


def _is_redirect(source: str) -> bool:
    """`.so man3/other.3` pages only include another page."""
    return any(line.startswith(".so ") for line in source.split("\n", 20)[:20]
               if not line.startswith(('.\\"', "'\\\"")))


def manpages(*roots: Path) -> Iterator[tuple[str, str, str]]:
    pages = []
    for root in roots:
        pages += [p for p in root.glob("usr/share/man/man*/*.gz") if p.is_file() and not p.is_symlink()]
    for path in sorted(pages, key=lambda p: (p.parent.name, p.name)):
        source = gzip.decompress(path.read_bytes()).decode("utf-8", errors="replace")
        if not _is_redirect(source):
            yield f"{path.parent.name}/{path.name[:-3]}", man_to_text(source), ""
