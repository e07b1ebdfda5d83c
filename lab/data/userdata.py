"""A user's own domain text: a folder, or .txt/.md/.jsonl/.parquet files.

One document per .txt/.md file, per JSONL record and per parquet row. The
corpus splits by document, so an input with only a few documents cannot give
train, validation and test their share; in that case each big .txt/.md file
is cut at blank lines into documents of about 8-16 KB, and a warning says so.

Everything a user can get wrong raises LabError naming the file. Text that is
not valid UTF-8 is read anyway (bad bytes replaced) with a warning, since a
stray Latin-1 byte should not stop an experiment; but a file with more than
`MAX_BAD_SHARE` of such bytes is most likely not text at all (a binary, another
encoding) and is refused unless `allow_bad_bytes` says to read it.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path
from typing import Sequence

from ..errors import LabError
from .documents import Document

TEXT_SUFFIXES = (".txt", ".md")
SUFFIXES = TEXT_SUFFIXES + (".jsonl", ".parquet")

BIG_FILE_CHARS = 64 * 1024
PIECE_MIN_CHARS = 8 * 1024
PIECE_MAX_CHARS = 16 * 1024
FEW_DOCUMENTS = 30
"""Below this many documents, big text files are cut so every split gets some."""
MAX_BAD_SHARE = 0.01
"""Share of a file's bytes that may be invalid UTF-8 before it is refused as not text."""
TEXT_FIELD_ADVICE = "pass --text-field (text_field= in Python) with the {} that holds the text"

_BLANK_LINE = re.compile(r"\n[ \t\r]*\n\s*")
_NEWLINE = re.compile(r"\n")
_SPACE = re.compile(r"\s+")


def user_domain_name(path: str | Path) -> str:
    """A short name that stays the same for the same folder or file.

    The hash keeps two folders that share a name (say two `data/`) apart.
    """
    resolved = Path(path).expanduser().resolve()
    slug = re.sub(r"[^a-z0-9]+", "-", _stem(resolved).lower()).strip("-") or "data"
    digest = hashlib.sha256(str(resolved).encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{slug}-{digest}"


def read_user_documents(
    paths: str | Path | Sequence[str | Path], text_field: str = "text", allow_bad_bytes: bool = False
) -> tuple[list[Document], list[str]]:
    """Read the documents under `paths` and the warnings a user should see. `text_field` names the
    JSONL field or parquet column of the text; `allow_bad_bytes` reads files with more than
    `MAX_BAD_SHARE` invalid UTF-8 anyway (those bytes replaced)."""
    warnings: list[str] = []
    inputs = _inputs(paths, warnings)
    per_input = [(root, _files_of(root)) for root in inputs]
    n_files = sum(len(files) for _, files in per_input)

    units: list[tuple[Path, Document]] = []
    for root, files in per_input:
        source = f"user:{_stem(root)}"
        for file in files:
            doc_id = file.relative_to(root).as_posix() if root.is_dir() else file.name
            units.extend((file, d) for d in _read_file(file, source, doc_id, text_field, allow_bad_bytes,
                                                       warnings))

    if not units:
        where = ", ".join(str(p) for p in inputs)
        raise LabError(f"{where}: all {n_files} file(s) are empty or hold only whitespace "
                       f"(or no record has text in field {text_field!r}); give files with text in them")
    if len(units) < FEW_DOCUMENTS:
        units = _cut_big_texts(units, warnings)
    _check_unique(units)
    return [d for _, d in units], warnings


def _stem(path: Path) -> str:
    return path.name if path.is_dir() else path.stem


def _inputs(paths, warnings: list[str]) -> list[Path]:
    given = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if not given:
        raise LabError("no input given: pass a folder, or .txt/.md/.jsonl/.parquet files")
    inputs: list[Path] = []
    for p in given:
        path = Path(p).expanduser()
        if not path.exists():
            raise LabError(f"{path} does not exist: give an existing folder, or files ending in "
                           f"{', '.join(SUFFIXES)}")
        if path.is_file() and path.suffix.lower() not in SUFFIXES:
            raise LabError(f"{path} is a {path.suffix or 'suffix-less'} file; the lab reads "
                           f"{', '.join(SUFFIXES)}: convert it to one of these (e.g. plain text)")
        if path.resolve() in (q.resolve() for q in inputs):
            warnings.append(f"{path} was given more than once; it is read once")
            continue
        inputs.append(path)
    return inputs


def _files_of(path: Path) -> list[Path]:
    """The readable files of one input, in a fixed order (sorted relative paths)."""
    if path.is_file():
        return [path]
    visible = sorted(
        (f for f in path.rglob("*")
         if f.is_file() and not any(part.startswith(".") for part in f.relative_to(path).parts)),
        key=lambda f: f.relative_to(path).as_posix(),
    )
    if not visible:
        raise LabError(f"{path} is an empty folder (hidden files are ignored): put .txt, .md, "
                       f".jsonl or .parquet files in it")
    readable = [f for f in visible if f.suffix.lower() in SUFFIXES]
    if not readable:
        found = Counter(f.suffix.lower() or "(no extension)" for f in visible)
        listing = ", ".join(f"{n} {ext}" for ext, n in sorted(found.items(), key=lambda kv: (-kv[1], kv[0])))
        raise LabError(f"{path} holds no .txt, .md, .jsonl or .parquet files (found {listing}): "
                       f"convert the documents to plain text (.txt) or JSONL with a {'text'!r} field")
    return readable


def _read_file(file: Path, source: str, doc_id: str, text_field: str, allow_bad_bytes: bool,
               warnings: list[str]) -> list[Document]:
    suffix = file.suffix.lower()
    if suffix == ".jsonl":
        return _read_jsonl(file, source, doc_id, text_field, allow_bad_bytes, warnings)
    if suffix == ".parquet":
        return _read_parquet(file, source, doc_id, text_field, warnings)
    text = _decode(file, allow_bad_bytes, warnings)
    if not text.strip():
        warnings.append(f"{file} is empty; skipped")
        return []
    return [Document(source=source, doc_id=doc_id, text=text)]


def _decode(file: Path, allow_bad_bytes: bool, warnings: list[str]) -> str:
    data = file.read_bytes().removeprefix(b"\xef\xbb\xbf")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    # Dropping invalid bytes and re-encoding gives back exactly the valid
    # ones, so the difference counts bytes, not replacement characters.
    bad = len(data) - len(data.decode("utf-8", errors="ignore").encode("utf-8"))
    if bad > MAX_BAD_SHARE * len(data) and not allow_bad_bytes:
        raise LabError(f"{file}: {bad / len(data):.1%} of its bytes ({bad:,} of {len(data):,}) are not valid "
                       f"UTF-8, more than the {MAX_BAD_SHARE:.0%} a text file may have; re-save it as UTF-8 "
                       "text, or pass --allow-bad-bytes (allow_bad_bytes=True in Python) to read it with those "
                       "bytes replaced")
    warnings.append(f"{file} is not valid UTF-8: {bad} byte(s) were replaced by U+FFFD; "
                    f"re-save it as UTF-8 to keep those characters")
    return data.decode("utf-8", errors="replace")


def _read_jsonl(file: Path, source: str, doc_id: str, text_field: str, allow_bad_bytes: bool,
                warnings: list[str]) -> list[Document]:
    docs: list[Document] = []
    empty = 0
    # Split on "\n" only: str.splitlines would also break at U+2028, which
    # JSON allows raw inside strings, and line numbers would drift from an editor's.
    for number, line in enumerate(_decode(file, allow_bad_bytes, warnings).split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{file}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise LabError(f"{where} is not valid JSON ({e.msg} at column {e.colno}): "
                           f"each line of a .jsonl file must be one JSON object") from None
        if not isinstance(record, dict):
            raise LabError(f"{where} is a JSON {type(record).__name__}, not an object: each line must be "
                           f"an object such as {{\"{text_field}\": \"...\"}}")
        text = _field_text(record, text_field, where)
        if not text.strip():
            empty += 1
            continue
        docs.append(Document(source=source, doc_id=f"{doc_id}#{number}", text=text))
    if empty:
        warnings.append(f"{file}: {empty} record(s) with empty {text_field!r} skipped")
    if not docs and not empty:
        warnings.append(f"{file} is empty; skipped")
    return docs


def _field_text(record: dict, text_field: str, where: str) -> str:
    if text_field not in record:
        raise LabError(f"{where} has no field {text_field!r} (fields found: {_names(record)}); "
                       + TEXT_FIELD_ADVICE.format("field"))
    value = record[text_field]
    if value is None:
        return ""
    if not isinstance(value, str):
        raise LabError(f"{where}: field {text_field!r} is a {type(value).__name__}, not text; "
                       + TEXT_FIELD_ADVICE.format("field"))
    return value


def _names(fields) -> str:
    return ", ".join(repr(f) for f in fields) or "none"


def _read_parquet(file: Path, source: str, doc_id: str, text_field: str, warnings: list[str]) -> list[Document]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(file)
    except (pa.ArrowException, OSError) as e:
        raise LabError(f"{file} is not a readable parquet file ({e}); re-export it, or save the "
                       f"text as .jsonl instead") from None
    schema = parquet.schema_arrow
    if text_field not in schema.names:
        raise LabError(f"{file} has no column {text_field!r} (columns found: {_names(schema.names)}); "
                       + TEXT_FIELD_ADVICE.format("column"))
    kind = schema.field(text_field).type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise LabError(f"{file}: column {text_field!r} has type {kind}, not text; "
                       + TEXT_FIELD_ADVICE.format("column"))
    docs: list[Document] = []
    empty = 0
    row = 0
    for batch in parquet.iter_batches(columns=[text_field]):
        for text in batch.column(0).to_pylist():
            if text and text.strip():
                docs.append(Document(source=source, doc_id=f"{doc_id}#{row}", text=text))
            else:
                empty += 1
            row += 1
    if row == 0:
        warnings.append(f"{file} has no rows; skipped")
    elif empty:
        warnings.append(f"{file}: {empty} row(s) with empty {text_field!r} skipped")
    return docs


def _cut_big_texts(units: list[tuple[Path, Document]], warnings: list[str]) -> list[tuple[Path, Document]]:
    out = []
    for file, doc in units:
        if file.suffix.lower() not in TEXT_SUFFIXES or len(doc.text) <= BIG_FILE_CHARS:
            out.append((file, doc))
            continue
        pieces = split_text(doc.text)
        warnings.append(
            f"{file} is one document of {len(doc.text) // 1024:,} KB and the input has few documents; "
            f"it was cut at blank lines into {len(pieces)} documents of about "
            f"{PIECE_MIN_CHARS // 1024}-{PIECE_MAX_CHARS // 1024} KB so that training, validation "
            f"and test can each get some (their texts are related, so held-out scores are a bit optimistic)")
        out.extend((file, Document(doc.source, f"{doc.doc_id}#part{i:04d}", piece))
                   for i, piece in enumerate(pieces, start=1))
    return out


def split_text(text: str) -> list[str]:
    """Cut text into pieces of PIECE_MIN_CHARS to PIECE_MAX_CHARS characters.

    Cuts prefer a blank line, then a line end, then any space. Near the end
    the cut moves back so the last piece is not a scrap.
    """
    pieces: list[str] = []
    start = 0
    while len(text) - start > PIECE_MAX_CHARS:
        hi = min(start + PIECE_MAX_CHARS, len(text) - PIECE_MIN_CHARS)
        end = _cut_point(text, start + PIECE_MIN_CHARS, hi)
        pieces.append(text[start:end])
        start = end
    pieces.append(text[start:])
    return [p.strip() for p in pieces if p.strip()]


def _cut_point(text: str, lo: int, hi: int) -> int:
    for separator in (_BLANK_LINE, _NEWLINE, _SPACE):
        last = None
        for last in separator.finditer(text, lo, hi):
            pass
        if last is not None:
            return last.end()
    return hi


def _check_unique(units: list[tuple[Path, Document]]) -> None:
    seen: dict[str, Path] = {}
    for file, doc in units:
        other = seen.setdefault(doc.key, file)
        if other != file:
            raise LabError(f"{other} and {file} give the same document name {doc.key!r}; "
                           f"rename one of them (or put them in one folder)")
