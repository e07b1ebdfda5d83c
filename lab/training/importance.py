"""Importance sampling: the generic corpus resampled to look like a domain.

SLM-is trains a small model from scratch on generic windows drawn with
probability proportional to

    w(window) = p_domain(c) / p_generic(c),    c = the window's cluster,

so the clusters of the drawn windows follow the domain's histogram while the
text itself stays generic (plentiful). The paper uses k=1024 clusters. All of
it is specialization cost: it is redone for every domain.

Two edge cases, handled the same way everywhere:

- *A domain cluster the generic corpus does not hold* (no generic window, or
  fewer than `min_generic_windows`): its weight would divide by zero. Its
  domain mass is dropped and the rest renormalised; the dropped mass is
  reported as `uncovered_share` (and warned about). The resampled stream then
  matches the domain histogram restricted to covered clusters.
- *A cluster the generic corpus barely holds* gets a large weight: its few
  windows are drawn again and again. `effective_windows` (Kish's effective
  sample size, (sum w)^2 / sum w^2) says how many distinct windows the
  resampled stream is worth; compare it with the tokens you plan to train on.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ..data.cluster import check_window_ids, corpus_decode
from ..data.tokens import BatchSampler, window_starts
from ..errors import LabError


@dataclass
class ImportanceWeights:
    probabilities: np.ndarray
    """Probability of drawing each generic window (sums to one)."""
    target: np.ndarray
    """Cluster histogram of the resampled stream: the domain's, renormalised over covered clusters."""
    generic: np.ndarray
    """Cluster histogram of the generic windows."""
    uncovered: np.ndarray
    """Clusters with domain mass but fewer than `min_generic_windows` generic windows."""
    uncovered_share: float
    """Domain mass on those clusters, dropped from the target."""
    effective_windows: float
    """Kish's effective number of distinct windows, (sum w)^2 / sum w^2."""


def importance_weights(window_cluster_ids: np.ndarray, domain_hist: np.ndarray,
                       min_generic_windows: int = 1) -> ImportanceWeights:
    """Sampling probabilities of generic windows that reproduce `domain_hist` (shares or counts, length k)."""
    ids = np.asarray(window_cluster_ids)
    domain = np.asarray(domain_hist, dtype=np.float64)
    k = len(domain)
    if len(ids) == 0:
        raise LabError("no generic windows to resample")
    if ids.max() >= k or ids.min() < 0:
        raise LabError(f"generic cluster ids run to {int(ids.max())} but the domain histogram has {k} bins: "
                       "the two come from different k")
    if (domain < 0).any() or domain.sum() <= 0:
        raise LabError("the domain histogram must be non-negative with a positive sum")
    domain = domain / domain.sum()
    counts = np.bincount(ids, minlength=k)
    covered = counts >= max(min_generic_windows, 1)
    uncovered = np.flatnonzero(~covered & (domain > 0))
    uncovered_share = float(domain[uncovered].sum())
    if uncovered_share >= 1.0:
        raise LabError(f"the domain lies entirely in clusters {uncovered.tolist()} that hold fewer than "
                       f"{min_generic_windows} generic windows: nothing to resample")
    target = np.where(covered, domain, 0.0) / (1.0 - uncovered_share)
    per_cluster = np.divide(target, counts, out=np.zeros(k), where=covered)
    p = per_cluster[ids]
    p /= p.sum()
    return ImportanceWeights(probabilities=p, target=target, generic=counts / len(ids), uncovered=uncovered,
                             uncovered_share=uncovered_share, effective_windows=float(1.0 / np.sum(p * p)))


def importance_sampler(generic_tokens: np.ndarray, window_cluster_ids: np.ndarray, domain_hist: np.ndarray,
                       batch_size: int, context: int, seed: int = 0,
                       min_generic_windows: int = 1) -> BatchSampler:
    """Batches of generic windows whose clusters follow the domain histogram."""
    check_window_ids(generic_tokens, window_cluster_ids, context)
    iw = importance_weights(window_cluster_ids, domain_hist, min_generic_windows)
    if iw.uncovered_share > 0:
        warnings.warn(f"{iw.uncovered_share:.1%} of the domain lies in clusters {iw.uncovered.tolist()} that hold "
                      f"fewer than {min_generic_windows} generic windows; that mass is dropped and the rest "
                      "renormalised", stacklevel=2)
    return BatchSampler(generic_tokens, batch_size, context, seed,
                        starts=window_starts(len(generic_tokens), context), weights=iw.probabilities)


def domain_importance_sampler(corpus, clustering, domain: str, n_tokens: int, k: int,
                              batch_size: int, seed: int = 0) -> BatchSampler:
    """SLM-is data for one domain of a corpus: its training set of `n_tokens` sets the target at k clusters."""
    hist = clustering.histogram(corpus.train_set(domain, n_tokens), corpus_decode(corpus), k, name=domain)
    return importance_sampler(corpus.tokens("generic", "train"), clustering.generic_ids[k], hist,
                              batch_size, corpus.scale.context, seed)
