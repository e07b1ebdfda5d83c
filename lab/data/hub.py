"""The paper's data from the Hugging Face hub, streamed through `datasets`.

The paper pretrains on c4 and specializes to nine subsets of the Pile. Both
are read lazily (`streaming=True`) and capped at a number of characters, so a
paper-scale build never downloads a whole corpus. The same code reads local
stand-ins (a `datasets` builder name such as "json" or "parquet" with
`data_files`), which is how the tests exercise it offline.
"""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from typing import Iterator

from ..errors import LabError
from .documents import Document

LOCAL_BUILDERS = ("json", "parquet", "text", "csv", "arrow")
OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
ID_FIELDS = ("id", "url")


@dataclass(frozen=True)
class HubSpec:
    path: str
    """Dataset on the hub ("allenai/c4"), or a builder name ("json", "parquet", "text") for local files."""
    name: str | None = None
    """Configuration ("en" for c4, the subset for a per-subset Pile repository)."""
    split: str = "train"
    text_field: str = "text"
    data_files: str | list[str] | dict | None = None
    filter_field: str | None = None
    """Dotted path into each record, e.g. "meta.pile_set_name"; records whose value differs are skipped."""
    filter_value: str | None = None

    def describe(self) -> str:
        parts = [self.path]
        if self.name:
            parts.append(f"config {self.name!r}")
        if self.data_files:
            parts.append(f"data_files {self.data_files!r}")
        if self.filter_field:
            parts.append(f"{self.filter_field} == {self.filter_value!r}")
        return ", ".join(parts)


# c4 lives at allenai/c4 (the old "c4" script dataset is gone); config "en" is
# the cleaned English set the paper means, as sharded json.gz files that stream.
PAPER_GENERIC = HubSpec(path="allenai/c4", name="en")

# The Pile's own hosting (the-eye.eu, EleutherAI/pile) was taken down in 2023.
# ArmelR/the-pile-splitted holds the full Pile re-split per subset, one config
# per subset named after its pile_set_name, so a domain streams only its own
# records and all nine of the paper's subsets are there. The other common
# mirror, monology/pile-uncopyrighted, lacks two of them (it dropped
# OpenSubtitles and OpenWebText2) and mixes all subsets in one stream, so
# picking a rare one such as EuroParl (~0.5% of the Pile) means reading
# hundreds of times more data than is kept; it stays available below as a
# fallback in case the per-subset repository disappears.
_PILE_SET_NAMES = {
    "arxiv": "ArXiv",
    "europarl": "EuroParl",
    "freelaw": "FreeLaw",
    "gutenberg": "Gutenberg (PG-19)",
    "opensubtitles": "OpenSubtitles",
    "openwebtext2": "OpenWebText2",
    "pubmed_abstracts": "PubMed Abstracts",
    "stackexchange": "StackExchange",
    "wikipedia": "Wikipedia (en)",
}
PAPER_DOMAINS: dict[str, HubSpec] = {
    domain: HubSpec(path="ArmelR/the-pile-splitted", name=set_name)
    for domain, set_name in _PILE_SET_NAMES.items()
}
UNCOPYRIGHTED_DOMAINS: dict[str, HubSpec] = {
    domain: HubSpec(path="monology/pile-uncopyrighted", filter_field="meta.pile_set_name", filter_value=set_name)
    for domain, set_name in _PILE_SET_NAMES.items()
    if set_name not in ("OpenSubtitles", "OpenWebText2")
}
"""The seven paper domains monology/pile-uncopyrighted still has (its files are .jsonl.zst: needs `zstandard`)."""


def stream_documents(spec: HubSpec, max_chars: int, source: str) -> Iterator[Document]:
    """Documents of `spec` in stream order, `max_chars` characters of text in all.

    The last document is cut to fit, so the cap is exact and scales that
    share a cap get the same amount of text whatever the document lengths.
    """
    if max_chars <= 0:
        return
    total = 0
    seen_ids: set[str] = set()
    for index, record in enumerate(_records(spec)):
        if spec.filter_field and str(_lookup(record, spec.filter_field, spec)) != spec.filter_value:
            continue
        text = _text(record, spec)
        if not text.strip():
            continue
        text = text[: max_chars - total]
        yield Document(source=source, doc_id=_doc_id(record, index, seen_ids), text=text)
        total += len(text)
        if total >= max_chars:
            return
    if not total:
        what = f"matched {spec.filter_field} == {spec.filter_value!r} and " if spec.filter_field else ""
        raise LabError(f"no record of {spec.describe()} {what}had text in field {spec.text_field!r}; "
                       f"check the filter value and text_field")


def is_remote(spec: HubSpec) -> bool:
    if spec.path in LOCAL_BUILDERS:
        return any("://" in f for f in _data_file_patterns(spec))
    return not os.path.isdir(spec.path)


def offline_vars() -> list[str]:
    """The offline switches set in the environment, as NAME=value."""
    return [f"{v}={os.environ[v]}" for v in OFFLINE_VARS
            if os.environ.get(v, "").upper() in ("1", "ON", "YES", "TRUE")]


def _records(spec: HubSpec) -> Iterator[dict]:
    """The raw records of `spec`, with every failure of the data layer turned into a LabError."""
    import datasets
    import httpx
    import pyarrow as pa
    from datasets.exceptions import DatasetNotFoundError
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    remote = is_remote(spec)
    if not remote:
        _check_local_files(spec)
    # Streaming cannot use a local cache, so offline the only way to read a
    # hub dataset is from a cache that `load_dataset` prepared beforehand.
    streaming = not (remote and datasets.config.HF_HUB_OFFLINE)
    try:
        records = datasets.load_dataset(spec.path, spec.name, split=spec.split, data_files=spec.data_files,
                                        streaming=streaming)
        yield from records
    except (DatasetNotFoundError, RepositoryNotFoundError) as e:
        raise LabError(f"{spec.describe()} was not found on the Hugging Face hub ({e}); it may have moved: "
                       f"give a HubSpec with its new location, or use `--scale default` or a local folder") from e
    except (ConnectionError, httpx.TransportError, HfHubHTTPError) as e:
        raise LabError(_unreachable_message(spec, e)) from e
    except FileNotFoundError as e:
        raise LabError(f"{spec.describe()}: a data file is missing ({e}); check data_files") from e
    except pa.ArrowException as e:
        raise LabError(f"{spec.describe()}: a data file could not be parsed ({e}); check that the files "
                       f"are valid {spec.path} files") from e
    except ValueError as e:
        raise LabError(f"{spec.describe()} cannot be loaded: {e}") from e


def _unreachable_message(spec: HubSpec, error: Exception) -> str:
    switches = offline_vars()
    if switches:
        state = f"this machine is set offline ({', '.join(switches)})"
        unset = f" with {' and '.join(s.split('=')[0] for s in switches)} unset"
    else:
        state = f"the hub could not be reached from this machine ({error})"
        unset = ""
    cache = os.environ.get("HF_HOME", "~/.cache/huggingface")
    return (f"the paper scale reads c4 and the Pile from the Hugging Face hub, here {spec.describe()}, "
            f"but {state}. To go on: run where huggingface.co is reachable{unset}; or pre-download it "
            f"where it is, with datasets.load_dataset({spec.path!r}, {spec.name!r}, split={spec.split!r}) "
            f"and HF_HOME pointing at a cache, then copy that cache to this machine's HF_HOME ({cache}), "
            f"from which it is read offline; or use the embedded default corpus (`--scale default`); "
            f"or give a local folder of your own text as the domain")


def _data_file_patterns(spec: HubSpec) -> list[str]:
    files = spec.data_files
    if files is None:
        return []
    if isinstance(files, str):
        return [files]
    if isinstance(files, dict):
        return [f for v in files.values() for f in ([v] if isinstance(v, str) else v)]
    return list(files)


def _check_local_files(spec: HubSpec) -> None:
    """Fail early: `datasets` streams an empty dataset from a pattern that matches nothing."""
    if spec.path in LOCAL_BUILDERS and not spec.data_files:
        raise LabError(f"HubSpec(path={spec.path!r}) reads local files: give data_files=")
    for pattern in _data_file_patterns(spec):
        if not glob.glob(os.path.expanduser(pattern), recursive=True):
            raise LabError(f"{spec.describe()}: no file matches {pattern!r}; check data_files")


def _lookup(record: dict, dotted: str, spec: HubSpec):
    value = record
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            found = ", ".join(repr(k) for k in value) if isinstance(value, dict) else type(value).__name__
            raise LabError(f"{spec.describe()}: records have no field {dotted!r} (at {key!r}, found: {found}); "
                           f"check filter_field")
        value = value[key]
    return value


def _text(record: dict, spec: HubSpec) -> str:
    if spec.text_field not in record:
        raise LabError(f"{spec.describe()}: records have no field {spec.text_field!r} (fields found: "
                       f"{', '.join(repr(k) for k in record)}); pass text_field= with the field that holds the text")
    value = record[spec.text_field]
    return value if isinstance(value, str) else ""


def _doc_id(record: dict, index: int, seen: set[str]) -> str:
    """The record's own id or url when it has one (stable across mirrors), else its position."""
    doc_id = next((str(record[f]) for f in ID_FIELDS if record.get(f) not in (None, "")), str(index))
    if doc_id in seen:
        doc_id = f"{doc_id}#{index}"
    seen.add(doc_id)
    return doc_id
