"""k-means clusters of the generic corpus, and domains described by them.

The generic training stream is cut into the windows the trainer samples
(`lab.tokens.window_starts`), each window is decoded and embedded
(`lab.embed`), and k-means runs for several k at once. A domain is then
described by its *cluster histogram*: the share of its windows nearest to each
centroid (the paper's Tables 9 and 10). Importance sampling (`lab.importance`),
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
import pandas as pd
from tqdm.auto import tqdm

from .. import atomic
from .embed import Embedder, load_embedder, make_embedder, window_texts
from ..errors import LabError
from .tokens import BatchSampler, window_starts

FORMAT = 1
"""Bump when the cache layout or the fitting procedure changes: old caches are then rebuilt."""

KS: dict[str, tuple[int, ...]] = {
    "tiny": (4, 16),
    "default": (4, 8, 16, 64, 256),
    "paper": (4, 16, 32, 64, 256, 1024),
}
"""k-means sizes per scale. The paper used 4-1024 (k=16 for mixtures, 32 for
hyper-networks, 1024 for importance sampling); smaller corpora hold fewer
windows per cluster, and `default` trains its mixtures with 4-8 experts."""

MIN_WINDOWS_PER_CLUSTER = 20
"""Fewer generic windows per cluster than this and the centroids fit noise."""

Decode = Callable[[list[int]], str]


def default_ks(scale: str) -> tuple[int, ...]:
    return KS.get(scale, KS["paper"])


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


def describe_streams(clustering: Clustering, streams: dict[tuple[str, int], np.ndarray],
                     decode: Decode) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cluster histograms of token streams keyed by (name, set size), for every k.

    Returns two tidy frames: `histograms` (name, set_tokens, k, cluster,
    windows, share) and its `summary` (see `summarize`).
    """
    hist = pd.DataFrame(_stream_rows(clustering, streams, decode))
    return hist, summarize(hist)


def _stream_rows(clustering: Clustering, streams: dict[tuple[str, int], np.ndarray], decode: Decode) -> list[dict]:
    rows = []
    for (name, set_tokens), tokens in tqdm(streams.items(), desc="assign", leave=False):
        rows += _histogram_rows(name, set_tokens, clustering.assign_tokens(tokens, decode))
    return rows


def _histogram_rows(name: str, set_tokens: int, ids: dict[int, np.ndarray]) -> list[dict]:
    rows = []
    for k, v in ids.items():
        counts = np.bincount(v, minlength=k)
        share = counts / max(len(v), 1)
        rows += [{"domain": name, "set_tokens": set_tokens, "k": k, "cluster": c,
                  "windows": int(counts[c]), "share": float(share[c])} for c in range(k)]
    return rows


def summarize(hist: pd.DataFrame) -> pd.DataFrame:
    """One row per (domain, set size, k): windows, entropy (nats and bits), top cluster and its share.

    `effective_clusters` is exp(entropy in nats), the number of equally used
    clusters with the same entropy. `sparse` flags histograms built from fewer
    windows than clusters; one warning lists them.
    """
    rows = []
    for (name, set_tokens, k), g in hist.groupby(["domain", "set_tokens", "k"], sort=False):
        share = g["share"].to_numpy()
        nats = entropy(share)
        top = int(np.argmax(share))
        n = int(g["windows"].sum())
        rows.append({"domain": name, "set_tokens": set_tokens, "k": k, "windows": n,
                     "entropy_nats": nats, "entropy_bits": nats / np.log(2),
                     "effective_clusters": float(np.exp(nats)),
                     "top_cluster": int(g["cluster"].iloc[top]), "top_share": float(share[top]),
                     "sparse": n < k})
    summary = pd.DataFrame(rows)
    sparse = summary[summary["sparse"]]
    if len(sparse):
        lines = [f"{name} ({set_tokens:,} tokens, {n} windows): k={', '.join(map(str, g['k']))}"
                 for (name, set_tokens, n), g in sparse.groupby(["domain", "set_tokens", "windows"], sort=False)]
        warnings.warn("histograms with fewer windows than clusters are mostly sampling noise (column `sparse`); "
                      "read them at a smaller k:\n  " + "\n  ".join(lines), stacklevel=3)
    return summary


def describe_domains(corpus, clustering: Clustering, domains: Sequence[str] | None = None,
                     set_tokens: Sequence[int] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Tables 9 and 10 of the paper: each domain's histogram at each training-set size, for every k.

    The generic training split comes first (domain "generic"), as the reference
    every domain is compared with.
    """
    domains = list(domains or corpus.domains)
    set_tokens = list(set_tokens or corpus.scale.set_tokens)
    rows = _histogram_rows("generic", int(len(corpus.tokens("generic", "train"))), clustering.generic_ids)
    available = {d: len(corpus.tokens(d, "train")) for d in domains}
    short = [f"{d} ({available[d]:,} training tokens < {n:,})" for d in domains for n in set_tokens if n > available[d]]
    if short:
        warnings.warn("skipping training sets larger than their domain: " + ", ".join(short), stacklevel=2)
    streams = {(d, n): corpus.train_set(d, n) for d in domains for n in set_tokens if n <= available[d]}
    hist = pd.DataFrame(rows + _stream_rows(clustering, streams, corpus_decode(corpus)))
    return hist, summarize(hist)


def cluster_starts(window_cluster_ids: np.ndarray, cluster: int, context: int) -> np.ndarray:
    """Offsets of the generic windows in one cluster (the training data of its expert)."""
    # Window i of a stream starts at i * context (`lab.tokens.window_starts`).
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


# ---------------------------------------------------------------- what the clusters hold (notebook 02)

def window_sources(corpus) -> np.ndarray:
    """Source of each generic training window: that of the document holding its middle token.

    The stream is the training documents in order, each followed by one
    end-of-text token, so the documents before a position are the end-of-text
    tokens before it.
    """
    tokens = np.asarray(corpus.tokens("generic", "train"))
    context = corpus.scale.context
    docs = corpus.documents("generic", "train")
    ends = np.flatnonzero(tokens == corpus.tokenizer.eot_id)
    if len(ends) != len(docs):
        raise LabError(f"the generic stream holds {len(ends)} end-of-text tokens for {len(docs)} documents: "
                       "it was not built from these documents; rebuild the corpus")
    sources = np.array([d.source for d in docs] + [docs[-1].source if docs else ""])
    middles = window_starts(len(tokens), context) + context // 2
    return sources[np.searchsorted(ends, middles, side="left")]


def source_cluster_shares(sources: np.ndarray, ids: np.ndarray) -> pd.DataFrame:
    """Share of each cluster's windows that comes from each source (columns sum to one)."""
    table = pd.crosstab(pd.Series(sources, name="source"), pd.Series(ids, name="cluster"))
    return table / table.sum(axis=0)


def window_projection(corpus, clustering: Clustering, sources: np.ndarray, per_source: int = 200,
                      seed: int = 0) -> pd.DataFrame:
    """A seeded sample of generic windows, up to `per_source` from each source, in two dimensions.

    The coordinates are the first two principal components of the windows'
    embeddings (what k-means saw); `k<k>` columns hold each window's cluster.
    """
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(seed)
    rows = np.sort(np.concatenate([rng.permutation(np.flatnonzero(sources == s))[:per_source]
                                   for s in np.unique(sources)]))
    starts = window_starts(len(corpus.tokens("generic", "train")), clustering.context)[rows]
    x = clustering.embedder.embed(window_texts(corpus.tokens("generic", "train"), clustering.context,
                                               corpus_decode(corpus), starts))
    xy = PCA(n_components=2, random_state=seed).fit_transform(x)
    df = pd.DataFrame({"window": rows, "source": sources[rows], "pc1": xy[:, 0], "pc2": xy[:, 1]})
    for k in clustering.ks:
        df[f"k{k}"] = clustering.generic_ids[k][rows]
    return df


def domain_table(summary: pd.DataFrame, value: str = "entropy_bits") -> pd.DataFrame:
    """One `summarize` column as a table: a row per domain, a column per (set size, k), as the
    paper's Tables 9 (entropy) and 10 (top-cluster share) lay it out. The generic corpus (all
    its windows, whatever the set size) is the last row, for reference."""
    is_generic = summary["domain"] == "generic"
    table = summary[~is_generic].pivot_table(index="domain", columns=["set_tokens", "k"], values=value,
                                             sort=False)
    generic = summary[is_generic].set_index("k")[value]
    table.loc["generic"] = [generic.get(k, np.nan) for _, k in table.columns]
    return table.rename_axis(columns=["set tokens", "k"])


def source_purity(sources: np.ndarray, ids: np.ndarray) -> float:
    """Share of windows whose cluster's most common source is their own source (1: clusters are sources)."""
    table = pd.crosstab(pd.Series(sources), pd.Series(ids))
    return float(table.max(axis=0).sum() / table.to_numpy().sum())
