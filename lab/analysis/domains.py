"""Notebook 02 (domains): what the generic clusters hold and how each domain spreads over them.

Each domain's cluster histogram at every training-set size and k, summarised by its
entropy and top-cluster share (the paper's Tables 9 and 10), and the generic windows'
sources against their clusters (a 2-D projection, per-cluster source shares, purity).
The clusters themselves are `lab.data.cluster`'s.
"""
from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..data.cluster import Clustering, Decode, corpus_decode, entropy
from ..data.embed import window_texts
from ..data.tokens import window_starts
from ..errors import LabError


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


def metrics(scale: str, clustering: Clustering, sources: np.ndarray, purity: dict[int, float],
            summary: pd.DataFrame, set_tokens: int) -> dict:
    """Notebook 02's metrics file: the generic windows, their sources and the clusters' `source_purity`
    per k, the generic histogram's entropy, and each domain's entropy and top-cluster share per k at
    the training-set size `set_tokens` (from `describe_domains`'s summary)."""
    largest = summary[(summary["set_tokens"] == set_tokens) & (summary["domain"] != "generic")]
    generic = summary[summary["domain"] == "generic"].set_index("k")
    return {
        "scale": scale,
        "ks": list(clustering.ks),
        "generic_windows": int(len(sources)),
        "sources": sorted(set(sources)),
        "purity": {str(c): v for c, v in purity.items()},
        "generic_entropy_bits": {str(c): float(v) for c, v in generic["entropy_bits"].items()},
        "entropy_bits": {d: {str(r.k): float(r.entropy_bits) for r in g.itertuples()}
                         for d, g in largest.groupby("domain")},
        "top_share": {d: {str(r.k): float(r.top_share) for r in g.itertuples()}
                      for d, g in largest.groupby("domain")},
        "sparse_histograms": int(summary["sparse"].sum()),
    }
