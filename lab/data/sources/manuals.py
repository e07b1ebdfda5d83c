"""Technical manuals from Debian documentation packages: Python (reST), Perl (POD),
PARI/GP (LaTeX, kept as LaTeX) and GAP (HTML)."""
from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Iterator

from .text import html_pieces, merge_short, pack

Docs = Iterator[tuple[str, str, str]]


def split_before(text: str, pattern: re.Pattern) -> list[str]:
    """Cut `text` before every match of `pattern`; the part before the first match stays first."""
    starts = [m.start() for m in pattern.finditer(text) if m.start() > 0]
    bounds = [0, *starts, len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:])]


# --- python3.11-doc: the reStructuredText sources Sphinx built the HTML from

_DIRECTIVE = re.compile(r"^(\s*)\.\.\s+([\w:-]+)::\s*(.*)$")
_EXPLICIT = re.compile(r"^\s*\.\.(?:\s|$)")  # comments, `.. _label:` targets, substitutions
_OPTION = re.compile(r"^\s+:[\w-]+:")
_UNDERLINE_CHARS = set("=-~^\"'`#*+.:_%")
_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+.:_%])\1{3,}\s*$")
_ROLE = re.compile(r":(?:[\w-]+:)*([\w-]+):`([^`]*)`")
_NAMED_LINK = re.compile(r"`([^`<]*?)\s*<[^`>]*>`__?")
_REFERENCE = re.compile(r"`([^`]+)`__?")
_LITERAL = re.compile(r"``((?:[^`\n]|\n(?![ \t]*\n))+?)``")  # may wrap, never across a blank line
_STRONG = re.compile(r"\*\*(\S(?:[^*\n]*?\S)?)\*\*")
_EMPHASIS = re.compile(r"(?<![\w*\\])\*(\S(?:[^*\n]*?\S)?)\*(?![\w*])")
_FOOTNOTE = re.compile(r"\s*\[(?:#[\w-]*|\d+)\]_")

# Directives whose whole block is metadata or markup plumbing, not text.
_DROPPED = {"index", "toctree", "testsetup", "testcleanup", "tabularcolumns", "highlight",
            "sectionauthor", "moduleauthor", "module", "currentmodule", "include", "literalinclude",
            "image", "figure", "raw", "only", "contents", "audit-event", "program", "default-role",
            "role", "ifconfig"}
_VERSION_NOTES = {"versionadded": "New in version", "versionchanged": "Changed in version",
                  "deprecated": "Deprecated since version", "deprecated-removed": "Deprecated since version"}
_ADMONITIONS = {"note": "Note:", "warning": "Warning:", "seealso": "See also:", "important": "Important:",
                "caution": "Caution:", "impl-detail": "CPython implementation detail:", "tip": "Tip:",
                "attention": "Attention:", "danger": "Danger:", "hint": "Hint:", "topic": "", "sidebar": "",
                "rubric": "", "availability": "Availability:"}
# Directives whose argument is the documented signature: keep it as a line of text.
_SIGNATURES = {"function", "method", "class", "attribute", "data", "exception", "decorator",
               "decoratormethod", "classmethod", "staticmethod", "coroutinefunction", "coroutinemethod",
               "abstractmethod", "property", "opcode", "cmdoption", "option", "envvar", "describe",
               "object", "pdbcommand", "2to3fixer", "monitoring-event"}


def _role(m: re.Match) -> str:
    role, content = m.groups()
    if content.endswith(">") and " <" in content:  # :ref:`text <label>`
        content = content[:content.rindex(" <")]
    content = content.lstrip("~!")
    return f"{role.upper()} {content}" if role in ("pep", "rfc") else content


def _inline(text: str) -> str:
    text = _ROLE.sub(_role, text)
    text = _NAMED_LINK.sub(r"\1", text)
    text = _LITERAL.sub(r"\1", text)
    text = _REFERENCE.sub(r"\1", text)
    text = _FOOTNOTE.sub("", text)
    text = _STRONG.sub(r"\1", text)
    return _EMPHASIS.sub(r"\1", text)


def rst_to_text(source: str) -> str:
    out: list[str] = []
    drop_indent = None  # inside a dropped directive's block: its indentation
    in_options = False
    for line in source.split("\n"):
        stripped = line.lstrip()
        indent = len(line) - len(stripped)
        if drop_indent is not None:
            if not stripped or indent > drop_indent:
                continue
            drop_indent = None
        if in_options and _OPTION.match(line):
            continue
        in_options = False
        if stripped.startswith(".."):
            directive = _DIRECTIVE.match(line)
            if directive:
                pad, name, arg = directive.groups()
                name = name.lower()
                in_options = True
                if name in _DROPPED or name.startswith("c:namespace"):
                    drop_indent = len(pad)
                elif name in _VERSION_NOTES:
                    version, _, rest = arg.partition(" ")
                    out.append(f"{pad}{_VERSION_NOTES[name]} {version}" + (f": {rest}" if rest else "."))
                elif name in _ADMONITIONS:
                    head = " ".join(filter(None, [_ADMONITIONS[name], arg]))
                    if head:
                        out.append(pad + head)
                elif name.rpartition(":")[2] in _SIGNATURES or name.startswith("c:"):
                    out.append(pad + arg)
                continue
            if _EXPLICIT.match(line):
                drop_indent = indent
                continue
        if stripped[:1] in _UNDERLINE_CHARS and (stripped == "::" or _UNDERLINE.match(line)):
            continue
        if line.endswith("::"):
            line = line[:-2].rstrip() + ("" if line[:-2].endswith(" ") else ":")
        out.append(line)
    return _inline("\n".join(out))


def pydoc(root: Path) -> Docs:
    """One document per page of the Python documentation (library, reference, tutorial, HOWTOs ...)."""
    folder = root / "usr/share/doc/python3.11/html/_sources"
    for path in sorted(folder.rglob("*.rst.txt")):
        doc_id = path.relative_to(folder).as_posix()[: -len(".rst.txt")]
        yield doc_id, rst_to_text(path.read_text(encoding="utf-8", errors="replace")), ""


# --- perl-doc: POD, the Perl manual pages

_POD_CODE = re.compile(r"(?<![A-Za-z])([A-Z])<([^<>]*)>")
_POD_WIDE = [re.compile(rf"(?<![A-Za-z])([A-Z]){'<' * n}\s+(.*?)\s+{'>' * n}", re.S) for n in (4, 3, 2)]
_POD_LOOSE = re.compile(r"\b([BCFILSXZ])<([^\n]+?)>(?=[\s.,;:)!?'\"]|$)", re.M)  # C<print <<EOF;>
_POD_ENTITY = re.compile(r"E<([^<>]*)>")
_LT, _GT = "\ue000", "\ue001"  # stand-ins for escaped angle brackets until the codes are gone


def _pod_entity(m: re.Match) -> str:
    name = m.group(1)
    if name in ("lt", "gt"):
        return _LT if name == "lt" else _GT
    if name.isdigit():
        return chr(int(name))
    if name.startswith("0x"):
        return chr(int(name, 16))
    return {"verbar": "|", "sol": "/"}.get(name) or html.unescape(f"&{name};")


def _pod_code(m: re.Match) -> str:
    code, content = m.group(1), m.group(2)
    if code in "XZ":
        return ""
    if code == "L":  # L<text|target> or L<target>
        text, bar, _ = content.partition("|")
        return (text if bar else content).replace('"', "")
    return content


def pod_inline(text: str) -> str:
    """Formatting codes (B<bold>, C<< code >>, L<link|target>, E<gt> ...) replaced by their text."""
    text = _POD_ENTITY.sub(_pod_entity, text)
    for wide in _POD_WIDE:
        text = wide.sub(_pod_code, text)
    n = 1
    while n:  # innermost first
        text, n = _POD_CODE.subn(_pod_code, text)
    text = _POD_LOOSE.sub(_pod_code, text)  # codes with a bare < inside, which POD tolerates
    return text.replace(_LT, "<").replace(_GT, ">")


_POD_PARAGRAPHS = re.compile(r"\n(?:[ \t]*\n)+")


def pod_to_sections(source: str) -> list[str]:
    """Plain text of a POD file, cut before each heading and item."""
    sections: list[list[str]] = [[]]
    skipping = None  # inside =begin FORMAT ... =end FORMAT
    in_pod = True
    for para in _POD_PARAGRAPHS.split(source.replace("\r\n", "\n")):
        if para.startswith("="):
            command, _, rest = para[1:].partition(" ")
            command = command.split("\n")[0]
            rest = rest.strip()
            in_pod = command != "cut"
            if skipping:
                skipping = None if command == "end" else skipping
            elif command == "begin":
                skipping = rest
            elif command.startswith("head") or command == "item":
                sections.append([pod_inline(rest)])
            continue
        if skipping or not in_pod or not para.strip():
            continue
        sections[-1].append(para.rstrip() if para[:1] in " \t" else pod_inline(para))
    return ["\n\n".join(section) for section in sections if section]


# perltoc repeats every page's headings; perluniprops is a 400 KB generated property table.
_PERL_SKIP = {"perltoc", "perluniprops"}


def perldoc(root: Path) -> Docs:
    """Each page in parts of at most ~16 KB, cut at headings and items (perlfunc is 400 KB)."""
    for path in sorted(root.glob("usr/share/perl/*/pod/*.pod")):
        if path.stem in _PERL_SKIP:
            continue
        sections = pod_to_sections(path.read_text(encoding="utf-8", errors="replace"))
        blocks = list(pack(sections, 16_000))
        for k, block in enumerate(blocks):
            yield (path.stem if len(blocks) == 1 else f"{path.stem}/{k:02d}"), "\n\n".join(block), ""


# --- pari-doc: the user's guide and tutorials, LaTeX (with PARI's macros) kept as source

_TEX_COMMENT = re.compile(r"(?<!\\)%.*$", re.M)
_SECTIONING = re.compile(r"^\\(?:section|subsec)", re.M)


def pari(root: Path) -> Docs:
    """Consecutive \\section and \\subsec units of each file, grouped into ~8 KB documents."""
    folder = root / "usr/share/pari/doc"
    for path in sorted(folder.glob("usersch*.tex")) + sorted(folder.glob("tutorial*.tex")):
        text = _TEX_COMMENT.sub("", path.read_text(encoding="utf-8", errors="replace"))
        units = merge_short(split_before(text, _SECTIONING), 300)
        for k, block in enumerate(pack(units, 8000)):
            yield f"{path.stem}/{k:03d}", "".join(block), ""


# --- gap-doc: the GAP reference manual, tutorial and HPC-GAP manual as HTML

_GAP_CHROME = {"chlinktop", "chlinkprevnexttop", "chlinkprevnextbot", "chlinkbot", "ChapSects",
               "foot", "mathjaxlink"}


def gap(root: Path) -> Docs:
    """One document per section (<h4>) of every chapter; the `_mj` MathJax copies are skipped."""
    folder = root / "usr/share/gap/doc"
    for book in ("ref", "tut", "hpc"):
        chapters = [p for p in (folder / book).glob("chap*.html") if re.fullmatch(r"chap\d+", p.stem)]
        for path in sorted(chapters, key=lambda p: int(p.stem[4:])):
            if path.stem == "chap0":  # title page and table of contents
                continue
            pieces = merge_short(html_pieces(path.read_text(encoding="utf-8", errors="replace"),
                                             skip=_GAP_CHROME, split_tags={"h4"}), 300, sep="\n\n")
            for k, piece in enumerate(pieces):
                yield f"{book}/{path.stem}/{k:02d}", piece, ""
