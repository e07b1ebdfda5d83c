"""The corpus of one scale: generic and domain text, split, tokenized, cached.

Layout under `lab.paths.scale_dir(scale) / "corpus"`:

    manifest.json                 sources, skipped sources, splits, overlap, timings
    tokenizer.json                byte-level BPE trained on generic/train
    generic_lines.npy             hashes of the generic corpus's long lines (leakage checks)
    text/<domain>/<split>.jsonl   documents {source, doc_id, tag, text}
    tokens/<domain>/<split>.bin   uint16 token stream, documents joined by end-of-text

The whole folder is built under a temporary name and swapped in at the end,
so an interrupted build never leaves a half-written corpus.

Splits are cut by document in an order given by hashing each document's
identity, so the same packages give byte-identical splits. A domain's training
stream is its training documents in that order. The nested training sets of
the paper (1M, 8M, 64M tokens, scaled) are prefixes of that stream cut into
chunks of four contexts and shuffled (`Domain.set`): a prefix of the documents
themselves made the smallest sets two or three documents of one source, unlike
the test split, and fine-tuning on them could not help at any learning rate.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .. import atomic, checks
from ..errors import LabError
from ..paths import scale_dir
from ..scales import Scale, get_scale
from . import leakage
from .documents import Document
from .tokenizer import Tokenizer, train_tokenizer
from .tokens import load_tokens, save_tokens

log = logging.getLogger(__name__)

GENERIC = "generic"
SPLITS = ("train", "validation", "test")
FORMAT = 1
# A first guess of characters per token, used only to size held-out splits
# before the tokenizer exists; the manifest reports the real token counts.
CHARS_PER_TOKEN = 4.0
# The seed of the chunk order that nested training sets follow (`Domain.set`).
SET_SEED = 0
# Held-out splits lose long lines to the leakage filter, and need at least
# their target in tokens afterwards.
HELDOUT_MARGIN = 1.5


def corpus_dir(scale: str) -> Path:
    return scale_dir(scale) / "corpus"


# ---------------------------------------------------------------- splitting

def split_documents(docs: list[Document], valid_chars: int, test_chars: int, seed: int,
                    drop_lines: np.ndarray | None = None) -> tuple[dict[str, list[Document]], dict]:
    """Cut documents into train / validation / test, whole documents only.

    Held-out splits are stratified by source: each source gives them its share
    of the domain's characters, so validation and test mirror the training mix
    (unstratified, a small split can be a third dictionary entries when
    training is a twentieth). With `drop_lines`, held-out documents lose their
    lines that occur in that hash set, and the targets count what remains.
    """
    by_source: dict[str, list[Document]] = {}
    for d in docs:
        by_source.setdefault(d.source, []).append(d)
    total = sum(len(d.text) for d in docs) or 1
    out: dict[str, list[Document]] = {s: [] for s in SPLITS}
    stats = {"heldout_long_lines": 0, "heldout_lines_dropped": 0}
    for source in sorted(by_source):
        group = sorted(by_source[source], key=lambda d: d.sort_hash(seed))
        share = sum(len(d.text) for d in group) / total
        need = {"validation": valid_chars * share, "test": test_chars * share}
        for doc in group:
            target = next((s for s in ("validation", "test") if need[s] > 0), "train")
            if target != "train" and drop_lines is not None:
                doc, n_long, dropped = leakage.drop_overlap(doc, drop_lines)
                stats["heldout_long_lines"] += n_long
                stats["heldout_lines_dropped"] += dropped
                if not doc.text.strip():
                    continue
            out[target].append(doc)
            if target != "train":
                need[target] -= len(doc.text)
    for split in SPLITS:
        out[split].sort(key=lambda d: d.sort_hash(seed))
    return out, stats


def heldout_chars(tokens: int) -> int:
    return int(tokens * CHARS_PER_TOKEN * HELDOUT_MARGIN)


def check_splittable(name: str, docs: list[Document], where: str) -> None:
    if len(docs) < 3:
        raise LabError(f"{where}: domain {name!r} has {len(docs)} document(s); at least 3 are needed to "
                       "cut train / validation / test by document. Add more files, or split a long text "
                       "into several files.")


# ---------------------------------------------------------------- writing

def _write_jsonl(path: Path, docs: list[Document]) -> str:
    lines = [json.dumps({"source": d.source, "doc_id": d.doc_id, "tag": d.tag, "text": d.text},
                        ensure_ascii=False) for d in docs]
    data = ("\n".join(lines) + ("\n" if lines else "")).encode("utf-8")
    atomic.write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def _read_jsonl(path: Path) -> list[Document]:
    with open(path, encoding="utf-8") as f:
        return [Document(r["source"], r["doc_id"], r["text"], r.get("tag", ""))
                for r in map(json.loads, f)]


def tokenize_documents(tokenizer: Tokenizer, docs: list[Document], batch: int = 512) -> np.ndarray:
    """One stream: each document's tokens followed by end-of-text."""
    parts = []
    for i in range(0, len(docs), batch):
        for ids in tokenizer.encode_batch([d.text for d in docs[i:i + batch]]):
            parts.append(np.asarray(ids, dtype=np.uint16))
            parts.append(np.asarray([tokenizer.eot_id], dtype=np.uint16))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint16)


def _file_sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_domain(text_dir: Path, tokens_dir: Path, splits: dict[str, list[Document]],
                 tokenizer: Tokenizer) -> dict:
    """Write one domain's text and token streams; return its manifest entry."""
    entry = {}
    for split, docs in splits.items():
        text_sha = _write_jsonl(text_dir / f"{split}.jsonl", docs)
        ids = tokenize_documents(tokenizer, docs)
        tok_path = tokens_dir / f"{split}.bin"
        save_tokens(tok_path, ids)
        entry[split] = {
            "documents": len(docs), "chars": sum(len(d.text) for d in docs), "tokens": int(len(ids)),
            "text_sha256": text_sha, "tokens_sha256": _file_sha(tok_path),
            "sources": sorted({d.source for d in docs}),
        }
    return entry


# ---------------------------------------------------------------- building

def _collect(scale: Scale, progress) -> tuple[list[Document], dict[str, list[Document]], list, list]:
    if scale.corpus == "hub":
        from . import hub

        generic = list(hub.stream_documents(hub.PAPER_GENERIC, scale.extra.get("generic_chars", 4_000_000_000),
                                            source="c4"))
        domains = {name: list(hub.stream_documents(spec, scale.extra.get("domain_chars", 400_000_000),
                                                   source=f"pile:{name}"))
                   for name, spec in hub.PAPER_DOMAINS.items()}
        sources = [{"source": "c4", "package": hub.PAPER_GENERIC.path, "kind": "hub"}] + [
            {"source": f"pile:{n}", "package": s.path, "kind": "hub"} for n, s in hub.PAPER_DOMAINS.items()]
        return generic, domains, sources, []
    from .embedded import collect

    c = collect(scale, progress)
    return c.generic, c.domains, c.sources, c.skipped


def build(scale_name: str = "default", force: bool = False) -> dict:
    """Build (or reuse) the corpus of a scale; return its manifest."""
    scale = get_scale(scale_name)
    root = corpus_dir(scale_name)
    if not force and (root / "manifest.json").exists():
        return _read_manifest(root / "manifest.json", scale_name)

    t0 = time.perf_counter()
    timings = {}
    bar = tqdm(desc=f"reading sources ({scale_name})", unit="source")
    generic_docs, domain_docs, sources, skipped = _collect(scale, lambda name: bar.update(1))
    bar.close()
    timings["read_sources_s"] = round(time.perf_counter() - t0, 1)
    if not domain_docs:
        raise LabError("no domain text could be read from any source; see the skipped sources above")

    generic, _ = split_documents(generic_docs, heldout_chars(2 * scale.valid_tokens), heldout_chars(2 * scale.test_tokens),
                                 scale.seed)
    generic_lines = leakage.line_hashes(generic_docs)
    domains, leak = {}, {}
    for name, docs in sorted(domain_docs.items()):
        check_splittable(name, docs, "corpus build")
        domains[name], leak[name] = split_documents(docs, heldout_chars(scale.valid_tokens), heldout_chars(scale.test_tokens),
                                                    scale.seed, drop_lines=generic_lines)
    timings["split_s"] = round(time.perf_counter() - t0 - sum(timings.values()), 1)

    with atomic.atomic_dir(root) as tmp:
        t1 = time.perf_counter()
        tokenizer = train_tokenizer(_sample(generic["train"], scale.tokenizer_sample_chars, scale.seed),
                                    scale.vocab_size, tmp / "tokenizer.json")
        timings["train_tokenizer_s"] = round(time.perf_counter() - t1, 1)
        t1 = time.perf_counter()
        np.save(tmp / "generic_lines.npy", generic_lines)
        splits = {GENERIC: write_domain(tmp / "text" / GENERIC, tmp / "tokens" / GENERIC, generic, tokenizer)}
        for name in tqdm(sorted(domains), desc="tokenizing domains"):
            splits[name] = write_domain(tmp / "text" / name, tmp / "tokens" / name, domains[name], tokenizer)
        timings["tokenize_and_write_s"] = round(time.perf_counter() - t1, 1)
        for name in domains:
            total, hit = leakage.overlap_share(
                domains[name]["validation"] + domains[name]["test"], generic_lines)
            leak[name].update(remaining_overlap_lines=hit, remaining_long_lines=total)
            tr_total, tr_hit = leakage.overlap_share(domains[name]["train"], generic_lines)
            leak[name].update(train_overlap_share=round(tr_hit / max(tr_total, 1), 4))
        timings["total_s"] = round(time.perf_counter() - t0, 1)
        manifest = {
            "format": FORMAT,
            "scale": scale_name,
            "corpus": scale.corpus,
            "vocab_size": tokenizer.vocab_size,
            "tokenizer_sha256": tokenizer.sha256,
            "context": scale.context,
            "set_tokens": list(scale.set_tokens),
            "domains": sorted(domains),
            "sources": sources,
            "skipped": skipped,
            "splits": splits,
            "leakage": leak,
            "timings": timings,
        }
        atomic.write_json(tmp / "manifest.json", manifest)
    return manifest


def _read_manifest(path: Path, scale: str) -> dict:
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise LabError(f"{path} is damaged ({e}); rebuild with "
                       f"`python -m lab data build --scale {scale} --force`") from None


def _sample(docs: list[Document], max_chars: int, seed: int):
    """Up to `max_chars` of documents in hash order, for tokenizer training."""
    used = 0
    for d in sorted(docs, key=lambda d: d.sort_hash(seed + 1)):
        if used >= max_chars:
            return
        used += len(d.text)
        yield d.text


# ---------------------------------------------------------------- loading

@dataclass
class Domain:
    """One domain's token streams; `set(n)` is its nested training set of n tokens."""

    name: str
    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    origin: str = "embedded"
    warnings: list[str] = field(default_factory=list)
    context: int = 128
    """The scale's context: a set holds at least one window, and is drawn in chunks of four."""
    _shuffled: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def chunk_tokens(self) -> int:
        return 4 * self.context

    def set(self, n_tokens: int) -> np.ndarray:
        """The first `n_tokens` of the training stream's chunks in a fixed shuffled order: each set
        is a sample of the whole domain, and every set is a prefix of the larger ones."""
        n_tokens = checks.set_size(n_tokens, self.context)
        if n_tokens > len(self.train):
            raise LabError(f"domain {self.name!r} has {len(self.train):,} training tokens; "
                           f"{n_tokens:,} were asked for. Choose a smaller --set-tokens "
                           f"(at most {len(self.train):,}) or give the domain more text.")
        if self._shuffled is None:
            starts = np.arange(0, len(self.train), self.chunk_tokens)
            order = np.random.default_rng(SET_SEED).permutation(len(starts))
            self._shuffled = np.concatenate([self.train[s:s + self.chunk_tokens] for s in starts[order]])
        return self._shuffled[:n_tokens]


class Corpus:
    def __init__(self, scale: str, root: Path | None = None):
        self.scale = get_scale(scale)
        self.root = root or corpus_dir(scale)
        path = self.root / "manifest.json"
        if not path.exists():
            raise LabError(f"no corpus at {self.root}: build it first with "
                           f"`python -m lab data build --scale {scale}`")
        self.manifest = _read_manifest(path, scale)
        if self.manifest.get("format") != FORMAT:
            raise LabError(f"{self.root} was built by another version of the lab; rebuild with "
                           f"`python -m lab data build --scale {scale} --force`")
        self.domains: list[str] = self.manifest["domains"]
        self._tokenizer: Tokenizer | None = None

    @property
    def study_domains(self) -> list[str]:
        """The domains the study and the notebooks cover unless told: the scale's choice among those
        built, or every domain when it names none of them (a corpus built without those sources)."""
        chosen = self.scale.study_domains or ()
        return [d for d in self.domains if d in chosen] or list(self.domains)

    @property
    def tokenizer(self) -> Tokenizer:
        if self._tokenizer is None:
            tok = Tokenizer.load(self.root / "tokenizer.json")
            if tok.sha256 != self.manifest["tokenizer_sha256"]:
                raise LabError(f"{self.root / 'tokenizer.json'} is not the tokenizer this corpus's token "
                               "streams were built with; rebuild with "
                               f"`python -m lab data build --scale {self.scale.name} --force`")
            self._tokenizer = tok
        return self._tokenizer

    def tokens(self, domain: str, split: str) -> np.ndarray:
        if domain != GENERIC and domain not in self.domains:
            raise LabError(f"unknown domain {domain!r}: choose one of {', '.join(self.domains)}")
        if split not in SPLITS:
            raise LabError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}")
        return load_tokens(self.root / "tokens" / domain / f"{split}.bin", self.manifest["splits"][domain][split],
                           f"rebuild the corpus with `python -m lab data build --scale {self.scale.name} --force`")

    def train_set(self, domain: str, n_tokens: int) -> np.ndarray:
        return self.domain(domain).set(n_tokens)

    def documents(self, domain: str, split: str) -> list[Document]:
        self.tokens(domain, split)
        return _read_jsonl(self.root / "text" / domain / f"{split}.jsonl")

    def domain(self, name: str) -> Domain:
        return Domain(name, *(self.tokens(name, s) for s in SPLITS), context=self.scale.context)

    def generic_lines(self) -> np.ndarray:
        return np.load(self.root / "generic_lines.npy")


def load_corpus(scale: str = "default") -> Corpus:
    return Corpus(scale)


def load_domain(name_or_path: str, scale: str = "default", rebuild: bool = False, *, text_field: str | None = None,
                allow_bad_bytes: bool | None = None) -> Domain:
    """A built-in domain by name, or a user's folder or file(s) by path, read with `text_field`
    and `allow_bad_bytes` (`lab.data.userdata.read_user_documents`). Left None, those are what
    its cache was built with, so a method given only the path reads the text as the command
    line that named them did."""
    corpus = load_corpus(scale)
    if name_or_path in corpus.domains or name_or_path == GENERIC:
        return corpus.domain(name_or_path)
    if not Path(name_or_path).exists():
        raise LabError(f"{name_or_path!r} is neither a domain of the {scale} corpus "
                       f"({', '.join(corpus.domains)}) nor an existing file or folder")
    return user_domain(corpus, name_or_path, rebuild=rebuild, text_field=text_field,
                       allow_bad_bytes=allow_bad_bytes)


def user_domain(corpus: Corpus, path: str | Path, rebuild: bool = False, *, text_field: str | None = None,
                allow_bad_bytes: bool | None = None) -> Domain:
    """A user's folder or files as a domain: split, filtered and tokenized like
    the built-in ones, cached under the scale's `domains/` folder (see `load_domain`
    for the reading options)."""
    from .userdata import read_user_documents, user_domain_name

    name = user_domain_name(path)
    cache = scale_dir(corpus.scale.name) / "domains" / name
    meta_path = cache / "meta.json"
    fix = f"delete {cache}: the next command that reads {path} builds it again"
    meta = {}
    if meta_path.exists() and not rebuild:
        try:
            meta = json.loads(meta_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise LabError(f"{meta_path} is damaged ({e}); {fix}") from None
    given = {"text_field": text_field, "allow_bad_bytes": allow_bad_bytes}
    reading = {"text_field": "text", "allow_bad_bytes": False, **meta.get("reading", {}),
               **{k: v for k, v in given.items() if v is not None}}
    docs, warnings = read_user_documents(path, **reading)
    for w in warnings:
        log.warning("%s", w)
    h = hashlib.sha256()
    for d in docs:
        h.update(f"{d.key}\0{d.text}\0".encode("utf-8", "surrogatepass"))
    content = h.hexdigest()
    if meta:
        if meta["content_sha256"] == content:
            if meta["tokenizer_sha256"] != corpus.tokenizer.sha256:
                raise LabError(f"the cached domain {cache} was tokenized with another tokenizer "
                               f"({meta['tokenizer_sha256'][:12]}, the {corpus.scale.name} corpus now uses "
                               f"{corpus.tokenizer.sha256[:12]}); rerun with --rebuild (or delete {cache})")
            return Domain(name, *(load_tokens(cache / "tokens" / f"{s}.bin", meta["splits"][s], fix) for s in SPLITS),
                          origin=f"user:{path}", warnings=warnings, context=corpus.scale.context)

    check_splittable(name, docs, str(path))
    total = sum(len(d.text) for d in docs)
    # A small user domain keeps most of its text for training: held-out
    # splits shrink to a tenth each rather than swallowing everything.
    valid = min(heldout_chars(corpus.scale.valid_tokens), total // 10)
    test = min(heldout_chars(corpus.scale.test_tokens), total // 10)
    splits, stats = split_documents(docs, valid, test, corpus.scale.seed, drop_lines=corpus.generic_lines())
    empty = [s for s in SPLITS if not splits[s]]
    if empty:
        raise LabError(f"{path}: after cutting by document, the {' and '.join(empty)} split(s) of domain "
                       f"{name!r} are empty ({len(docs)} documents, {total:,} characters). "
                       "Give more documents (files or JSONL records).")
    with atomic.atomic_dir(cache) as tmp:
        entry = write_domain(tmp / "text", tmp / "tokens", splits, corpus.tokenizer)
        atomic.write_json(tmp / "meta.json", {
            "name": name, "path": str(Path(path).resolve()), "content_sha256": content,
            "tokenizer_sha256": corpus.tokenizer.sha256, "splits": entry, "leakage": stats,
            "warnings": warnings, "reading": reading})
    return Domain(name, *(load_tokens(cache / "tokens" / f"{s}.bin", entry[s], fix) for s in SPLITS),
                  origin=f"user:{path}", warnings=warnings, context=corpus.scale.context)
