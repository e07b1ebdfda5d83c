"""DSIR: generic windows chosen by hashed n-gram importance weights (Xie et al. 2023), via `data-selection`.

SLM-is's own resampling (`lab.training.importance`) weighs a generic window by
how much more often its k-means cluster occurs in the domain than in the generic
corpus. DSIR, the importance resampling researchers know, weighs it by its words
instead: each text becomes counts of its unigrams and bigrams hashed into
`BUCKETS` buckets, a bag-of-n-grams model is fitted to the domain and one to the
generic corpus, and a window's log importance weight is the log-likelihood ratio
of its n-grams under the two. `select` hands the generic windows and the domain
set to the package's `HashedNgramDSIR` and lets it fit, weigh and resample
(Gumbel top-k: `n_select` distinct windows drawn in proportion to their weights,
without replacement). The windows are the ones the model trains on (`context + 1`
tokens, decoded as the clusters decode them), so the selection is exactly what
the run reads.

How many windows. DSIR selects a dataset of the size one trains on. Here the run
reads `n_windows` windows in its budget; selecting that many would select all
of a small generic corpus, so at most `MAX_SHARE` of the windows are chosen and
a longer run repeats them (`select` is told the budget's count, the caller caps it).

Closeness (`Selection.selected_kl`, `generic_kl`): DSIR's paper judges a
selection by the KL divergence from the domain's hashed n-gram distribution to
the selection's, lower being closer, against a uniformly random selection of the
same size (fewer windows cover fewer n-grams, so sizes must match). Counts are
add-one smoothed over the buckets so that an n-gram a stream lacks costs a finite amount.

Words are split with the package's `wordpunct` tokenizer (a regular expression:
nltk needs no downloaded data for it). Windows are examples as short as one word
(the package's default drops examples under 100 words, longer than a window).
"""
from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from data_selection import HashedNgramDSIR
from data_selection.hashed_ngram_dsir import get_ngram_counts, wpt

from .. import atomic
from ..errors import LabError
from .tokens import window_starts

Decode = Callable[[Sequence[int]], str]

BUCKETS = 10_000
NGRAMS = 2
"""The package's defaults: unigrams and bigrams in 10,000 buckets."""
MAX_SHARE = 0.5
"""At most this share of the generic windows is selected, so that the selection selects."""
VERSION = 2
"""Bump when the selection changes: cached selections are then made again."""


@dataclass
class Selection:
    starts: np.ndarray
    """Offsets of the chosen generic windows, ascending."""
    log_weights: np.ndarray
    """DSIR's log importance weight of every generic window (in `window_starts` order)."""
    generic_kl: float
    """KL(domain || as many generic windows drawn uniformly) of hashed n-gram distributions (nats)."""
    selected_kl: float
    """KL(domain || selected windows): below `generic_kl` when the selection moved towards the domain."""
    key: dict

    def summary(self) -> dict:
        return {"selected_windows": int(len(self.starts)), "generic_windows": int(len(self.log_weights)),
                "generic_ngram_kl": self.generic_kl, "selected_ngram_kl": self.selected_kl,
                "ngram_kl_reduction": self.generic_kl - self.selected_kl}


def window_texts(tokens: np.ndarray, context: int, decode: Decode) -> tuple[np.ndarray, list[str]]:
    """The non-overlapping training windows of a stream: their offsets and their text."""
    starts = window_starts(len(tokens), context)
    return starts, [decode(np.asarray(tokens[s:s + context + 1]).tolist()) for s in starts]


def ngram_counts(texts: Sequence[str]) -> np.ndarray:
    """Hashed n-gram counts of texts together, with DSIR's own featurizer."""
    counts = np.zeros(BUCKETS, dtype=np.int64)
    for text in texts:
        get_ngram_counts(text, n=NGRAMS, num_buckets=BUCKETS, counts=counts, tokenizer=wpt.tokenize)
    return counts


def ngram_kl(target: np.ndarray, stream: np.ndarray) -> float:
    """KL(target || stream) in nats between two hashed n-gram count vectors, add-one smoothed."""
    p = (target + 1.0) / (target.sum() + len(target))
    q = (stream + 1.0) / (stream.sum() + len(stream))
    return float(np.sum(p * np.log(p / q)))


def select(generic: np.ndarray, domain_set: np.ndarray, context: int, decode: Decode, n_select: int,
           cache_dir: str | Path, *, seed: int = 0, name: str = "domain") -> Selection:
    """The `n_select` generic windows DSIR picks for a domain set (token streams), cached under
    `cache_dir` by everything that decides them."""
    starts, texts = window_texts(generic, context, decode)
    _, target = window_texts(domain_set, context, decode)
    if not target:
        raise LabError(f"{name}: a training set of {len(domain_set)} tokens holds no window of "
                       f"{context + 1} tokens for DSIR to fit; give a larger set")
    if not 0 < n_select < len(starts):
        raise LabError(f"DSIR cannot select {n_select:,} of the {len(starts):,} generic windows")
    key = {"version": VERSION, "buckets": BUCKETS, "ngrams": NGRAMS, "context": context, "n_select": int(n_select),
           "seed": seed, "generic": _digest(texts), "domain": _digest(target)}
    path = Path(cache_dir) / f"{_digest([json.dumps(key, sort_keys=True)])[:16]}.npz"
    if path.exists():
        with np.load(path) as f:
            return Selection(f["starts"], f["log_weights"], float(f["generic_kl"]), float(f["selected_kl"]), key)

    examples = [{"text": t, "window": i} for i, t in enumerate(texts)]
    with tempfile.TemporaryDirectory(prefix="dsir-") as tmp:
        dsir = HashedNgramDSIR(["generic"], ["domain"], cache_dir=f"{tmp}/weights",
                               raw_load_dataset_fn=lambda _: iter(examples),
                               target_load_dataset_fn=lambda _: ({"text": t} for t in target),
                               num_proc=1, ngrams=NGRAMS, num_buckets=BUCKETS, tokenizer="wordpunct",
                               min_example_length=1)
        dsir.fit_importance_estimator(num_tokens_to_fit="all")
        dsir.compute_importance_weights()
        log_weights = np.load(Path(tmp) / "weights" / "log_importance_weights" / "0.npy")
        # The package draws its Gumbel noise from numpy's global generator: seed it, and leave it as it was.
        state = np.random.get_state()
        np.random.seed(seed)
        try:
            dsir.resample(out_dir=f"{tmp}/out", num_to_sample=int(n_select), cache_dir=f"{tmp}/draw")
        finally:
            np.random.set_state(state)
        chosen = sorted(json.loads(line)["window"] for f in sorted(Path(tmp, "out").glob("*.jsonl"))
                        for line in f.read_text().splitlines() if line)
    chosen = np.asarray(chosen, dtype=np.int64)
    domain_counts = ngram_counts(target)
    uniform = np.random.default_rng(seed).choice(len(texts), len(chosen), replace=False)
    generic_kl = ngram_kl(domain_counts, ngram_counts([texts[i] for i in uniform]))
    selected_kl = ngram_kl(domain_counts, ngram_counts([texts[i] for i in chosen]))
    selection = Selection(starts[chosen], log_weights, generic_kl, selected_kl, key)
    with atomic.atomic_path(path) as out:
        with open(out, "wb") as f:
            np.savez(f, starts=selection.starts, log_weights=log_weights, generic_kl=generic_kl,
                     selected_kl=selected_kl)
    return selection


def _digest(texts: Sequence[str]) -> str:
    return hashlib.sha256("\x00".join(texts).encode()).hexdigest()
