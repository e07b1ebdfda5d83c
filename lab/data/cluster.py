"""k-means clusters of the generic corpus, and domains described by them.

The generic training stream is cut into the windows the trainer samples
(`lab.data.tokens.window_starts`), each window is decoded and embedded
(`lab.data.embed`), and k-means runs for several k at once. A domain is then
described by its *cluster histogram*: the share of its windows nearest to each
centroid (the paper's Tables 9 and 10). Importance sampling (`lab.training.importance`),
mixtures of experts and hyper-networks all start from these clusters.

`cluster_corpus` caches everything under `<corpus root>/clusters/<method>/`:
the fitted embedder, the centroids and the cluster id of every generic
training window for each k, plus the cluster ids of any other stream assigned
since (a domain's training set, a user's folder). A key records what the cache
was built from (the generic tokens' hash, a fingerprint of the tokenizer, the
window length, the embedder's settings, the seed); a cache whose key differs is
rebuilt, with a warning saying why.
"""
from __future__ import annotations

import hashlib
import io
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from tqdm.auto import tqdm

from .. import atomic
from ..errors import LabError
from ..scales import Scale, get_scale
from .embed import Embedder, load_embedder, make_embedder, window_texts
from .tokens import BatchSampler, window_starts

FORMAT = 1
"""Bump when the cache layout or the fitting procedure changes: old caches are then rebuilt."""

MIN_WINDOWS_PER_CLUSTER = 20
"""Fewer generic windows per cluster than this and the centroids fit noise."""

Decode = Callable[[list[int]], str]


def default_ks(scale: str | Scale) -> tuple[int, ...]:
    """The k-means sizes a scale clusters (and caches) together."""
    return get_scale(scale).cluster_ks


def usable_ks(ks: Sequence[int], n_windows: int, min_per_cluster: int = MIN_WINDOWS_PER_CLUSTER) -> tuple[int, ...]:
    """The k that leave at least `min_per_cluster` windows per cluster on average; warn about the rest."""
    ks = tuple(sorted(set(int(k) for k in ks)))
    if not ks or ks[0] < 2:
        raise LabError(f"k-means needs k >= 2, got {ks}")
    keep = tuple(k for k in ks if k * min_per_cluster <= n_windows)
    if not keep:
        raise LabError(f"{n_windows} generic windows are too few for any k in {ks}: at least "
                       f"{min_per_cluster} windows per cluster are needed (k <= {n_windows // min_per_cluster})")
    if len(keep) < len(ks):
        dropped = [k for k in ks if k not in keep]
        warnings.warn(f"skipping k={dropped}: {n_windows} generic windows give fewer than {min_per_cluster} "
                      f"windows per cluster; the largest usable k is {n_windows // min_per_cluster}", stacklevel=2)
    return keep


def fit_kmeans(x: np.ndarray, k: int, seed: int = 0, init_sample: int = 100) -> np.ndarray:
    """Centroids of k-means on unit vectors `x`.

    k-means++ seeding costs k passes over the data, which dominates for large k,
    so it runs on a seeded sample of `init_sample * k` windows; Lloyd
    iterations then use every window.
    They stop at 50: on 150k windows at k=256 the objective moved by 0.04%
    between 50 iterations and convergence (77).
    """
    from sklearn.cluster import KMeans, kmeans_plusplus

    rng = np.random.default_rng(seed)
    sample = x if len(x) <= init_sample * k else x[np.sort(rng.choice(len(x), init_sample * k, replace=False))]
    # In float32 scikit-learn upcasts every distance block for precision, 6x slower than float64.
    init, _ = kmeans_plusplus(sample.astype(np.float64), k, random_state=seed)
    km = KMeans(n_clusters=k, init=init.astype(x.dtype), n_init=1, max_iter=50, random_state=seed).fit(x)
    return km.cluster_centers_.astype(np.float32)


def nearest(x: np.ndarray, centroids: np.ndarray, chunk: int = 32_768) -> np.ndarray:
    """Index of the nearest centroid (Euclidean, the k-means objective) for each row of `x`."""
    # |x - c|^2 = |x|^2 - 2 x.c + |c|^2; the first term does not change the argmin.
    half_norm = 0.5 * np.einsum("kd,kd->k", centroids, centroids)
    out = np.empty(len(x), dtype=np.int32)
    for i in range(0, len(x), chunk):
        out[i:i + chunk] = np.argmax(x[i:i + chunk] @ centroids.T - half_norm, axis=1)
    return out


def histogram(ids: np.ndarray, k: int) -> np.ndarray:
    """Share of windows in each of the k clusters (sums to one)."""
    if len(ids) == 0:
        raise LabError("cannot build a cluster histogram from zero windows")
    return np.bincount(np.asarray(ids), minlength=k).astype(np.float64) / len(ids)


def entropy(hist: np.ndarray, base: float = np.e) -> float:
    """Shannon entropy of a histogram; nats by default, bits with base=2."""
    p = np.asarray(hist, dtype=np.float64)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum() / np.log(base))


def few_windows_message(name: str, n_windows: int, k: int, ks: Sequence[int]) -> str | None:
    """Why a histogram over k clusters from n windows is unreliable, or None if it is fine."""
    if n_windows >= k:
        return None
    smaller = [c for c in ks if c <= n_windows]
    advice = f"use k={max(smaller)} or smaller" if smaller else "use more domain text"
    return (f"{name}: {n_windows} windows for k={k} clusters leave most clusters empty, so its histogram "
            f"is mostly sampling noise; {advice}")


def _sha256(tokens: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(tokens, dtype=np.uint16).tobytes()).hexdigest()


def _decode_fingerprint(tokens: np.ndarray, context: int, decode: Decode) -> str:
    # Token ids alone do not pin the tokenizer: a rebuilt vocabulary can reuse the same ids
    # for other strings. The text of the first windows does.
    texts = window_texts(tokens, context, decode, window_starts(len(tokens), context)[:4])
    return hashlib.sha256("\x00".join(texts).encode()).hexdigest()


@dataclass
class Clustering:
    """A fitted embedder, the centroids for each k, and the generic windows' cluster ids."""
    embedder: Embedder
    centroids: dict[int, np.ndarray]
    generic_ids: dict[int, np.ndarray]
    """Cluster id of each generic training window, in `window_starts` order."""
    context: int
    key: dict = field(default_factory=dict)
    root: Path | None = None
    """Cache folder; when set, assignments of token streams are cached there."""

    @property
    def ks(self) -> tuple[int, ...]:
        return tuple(sorted(self.centroids))

    @property
    def method(self) -> str:
        return self.embedder.method

    def subset(self, ks: Sequence[int]) -> "Clustering":
        missing = [k for k in ks if k not in self.centroids]
        if missing:
            raise LabError(f"no clusters for k={missing}; this clustering has k={list(self.ks)}")
        return Clustering(self.embedder, {k: self.centroids[k] for k in ks},
                          {k: self.generic_ids[k] for k in ks}, self.context, self.key, self.root)

    def assign_embeddings(self, x: np.ndarray) -> dict[int, np.ndarray]:
        return {k: nearest(x, c) for k, c in self.centroids.items()}

    def assign_texts(self, texts: Sequence[str]) -> dict[int, np.ndarray]:
        """Cluster id of each text for every k; no refitting, deterministic."""
        if len(texts) == 0:
            return {k: np.zeros(0, dtype=np.int32) for k in self.ks}
        return self.assign_embeddings(self.embedder.embed(texts))

    def assign_tokens(self, tokens: np.ndarray, decode: Decode) -> dict[int, np.ndarray]:
        """Cluster id of each window of a token stream (the windows `window_starts` gives) for every k."""
        path = None
        if self.root is not None:
            path = self.root / "assign" / f"{_sha256(tokens)[:24]}-{self.context}.npz"
            if path.exists():
                with np.load(path) as z:
                    if all(f"ids_{k}" in z for k in self.ks):
                        return {k: z[f"ids_{k}"] for k in self.ks}
        ids = self.assign_texts(window_texts(tokens, self.context, decode))
        if path is not None:
            buf = io.BytesIO()
            np.savez(buf, **{f"ids_{k}": v for k, v in ids.items()})
            atomic.write_bytes(path, buf.getvalue())
        return ids

    def histogram(self, tokens: np.ndarray, decode: Decode, k: int, name: str = "text") -> np.ndarray:
        """Cluster histogram of a token stream at one k; warns when it has fewer windows than clusters."""
        ids = self.assign_tokens(tokens, decode)[k]
        if len(ids) == 0:
            raise LabError(f"{name}: {len(tokens)} tokens do not make one window of {self.context + 1}")
        message = few_windows_message(name, len(ids), k, self.ks)
        if message:
            warnings.warn(message, stacklevel=2)
        return histogram(ids, k)

    def generic_histogram(self, k: int) -> np.ndarray:
        return histogram(self.generic_ids[k], k)

    def save(self, path: str | Path) -> None:
        """Write the clustering as one folder, swapped into place only once complete."""
        with atomic.atomic_dir(path) as tmp:
            self.embedder.save(tmp / "embedder.npz")
            arrays = {}
            for k in self.ks:
                arrays[f"centroids_{k}"] = self.centroids[k]
                arrays[f"ids_{k}"] = self.generic_ids[k].astype(np.int16 if k < 2 ** 15 else np.int32)
            with open(tmp / "kmeans.npz", "wb") as f:
                np.savez(f, **arrays)
            atomic.write_json(tmp / "key.json", {"key": self.key, "ks": list(self.ks), "context": self.context})

    @classmethod
    def load(cls, path: str | Path) -> "Clustering":
        path = Path(path)
        meta = json.loads((path / "key.json").read_text())
        with np.load(path / "kmeans.npz") as z:
            centroids = {k: z[f"centroids_{k}"] for k in meta["ks"]}
            ids = {k: z[f"ids_{k}"].astype(np.int32) for k in meta["ks"]}
        return cls(load_embedder(path / "embedder.npz"), centroids, ids, meta["context"], meta["key"], path)


def fit_clustering(tokens: np.ndarray, decode: Decode, context: int, ks: Sequence[int],
                   method: str = "tfidf", model_name: str | None = None, seed: int = 0,
                   max_fit_windows: int = 200_000, **embed_options) -> Clustering:
    """Embed every window of a generic token stream and run k-means for each k.

    The embedder and k-means are fitted on at most `max_fit_windows` windows (a
    seeded sample; the whole `default` corpus fits under it); every window is
    then assigned to its nearest centroid, the same rule new text follows.
    """
    starts = window_starts(len(tokens), context)
    ks = usable_ks(ks, len(starts))
    texts = window_texts(tokens, context, decode, starts)
    rng = np.random.default_rng(seed)
    fit_rows = (np.arange(len(texts)) if len(texts) <= max_fit_windows
                else np.sort(rng.choice(len(texts), max_fit_windows, replace=False)))
    embedder = _new_embedder(method, model_name, seed, embed_options).fit([texts[i] for i in fit_rows])
    x = embedder.embed(texts)
    centroids = {k: fit_kmeans(x[fit_rows], k, seed) for k in tqdm(ks, desc="k-means", leave=False)}
    clustering = Clustering(embedder, centroids, {}, context)
    clustering.generic_ids = clustering.assign_embeddings(x)
    return clustering


def corpus_decode(corpus) -> Decode:
    """The corpus tokenizer's decode, with the end-of-text marker turned into a paragraph break.

    Documents are joined by end-of-text tokens; the marker is not text, and as a
    word of its own it would pull the windows that straddle two documents together.
    """
    from .tokenizer import EOT

    decode = corpus.tokenizer.decode
    return lambda ids: decode(ids).replace(EOT, "\n\n")


def _new_embedder(method: str, model_name: str | None, seed: int, options: dict) -> Embedder:
    # The TF-IDF embedder's randomized SVD follows the clustering seed unless told otherwise.
    if method == "tfidf":
        options = {"seed": seed, **options}
    return make_embedder(method, model_name, **options)


def cluster_corpus(corpus, method: str = "tfidf", ks: Sequence[int] | None = None,
                   model_name: str | None = None, seed: int = 0, refresh: bool = False,
                   max_fit_windows: int = 200_000, **embed_options) -> Clustering:
    """Clusters of a corpus's generic training split, from the cache when it matches.

    A cache built for other k is extended by rebuilding it with the union of
    both lists (the embedding is recomputed: with Sentence-BERT that is the
    long part, so ask for every k you need up front).
    """
    ks = tuple(sorted(set(ks or default_ks(corpus.scale.name))))
    tokens = corpus.tokens("generic", "train")
    context = corpus.scale.context
    decode = corpus_decode(corpus)
    key = {"format": FORMAT, "embedder": _new_embedder(method, model_name, seed, embed_options).config,
           "seed": seed, "max_fit_windows": max_fit_windows, "context": context, "n_tokens": int(len(tokens)),
           "tokens_sha256": _sha256(tokens), "decode_sha256": _decode_fingerprint(tokens, context, decode)}
    wanted = build = usable_ks(ks, len(window_starts(len(tokens), context)))
    path = Path(corpus.root) / "clusters" / method
    if (path / "key.json").exists() and not refresh:
        cached = json.loads((path / "key.json").read_text())
        changed = sorted(f for f in key if cached.get("key", {}).get(f) != key[f])
        if not changed and set(wanted) <= set(cached["ks"]):
            return Clustering.load(path).subset(wanted)
        if changed:
            why = f"it was built with another {', '.join(changed)}"
        else:
            why = f"it lacks k={sorted(set(wanted) - set(cached['ks']))}"
            build = tuple(sorted(set(wanted) | set(cached["ks"])))
        warnings.warn(f"rebuilding the cluster cache {path}: {why}", stacklevel=2)
    clustering = fit_clustering(tokens, decode, context, build, method, model_name, seed, max_fit_windows,
                                **embed_options)
    clustering.key, clustering.root = key, path
    clustering.save(path)
    return clustering.subset(wanted)


def cluster_starts(window_cluster_ids: np.ndarray, cluster: int, context: int) -> np.ndarray:
    """Offsets of the generic windows in one cluster (the training data of its expert)."""
    # Window i of a stream starts at i * context (`lab.data.tokens.window_starts`).
    return np.flatnonzero(np.asarray(window_cluster_ids) == cluster).astype(np.int64) * context


def cluster_sampler(generic_tokens: np.ndarray, window_cluster_ids: np.ndarray, cluster: int,
                    batch_size: int, context: int, seed: int = 0) -> BatchSampler:
    """Uniform batches from the generic windows of one cluster."""
    check_window_ids(generic_tokens, window_cluster_ids, context)
    starts = cluster_starts(window_cluster_ids, cluster, context)
    if len(starts) == 0:
        raise LabError(f"cluster {cluster} holds no generic windows")
    return BatchSampler(generic_tokens, batch_size, context, seed, starts=starts)


def check_window_ids(generic_tokens: np.ndarray, window_cluster_ids: np.ndarray, context: int) -> None:
    """Fail unless there is one cluster id per window of the stream."""
    n = len(window_starts(len(generic_tokens), context))
    if len(window_cluster_ids) != n:
        raise LabError(f"{len(window_cluster_ids)} cluster ids for a stream of {n} windows of context "
                       f"{context}: the ids belong to another stream or context")
