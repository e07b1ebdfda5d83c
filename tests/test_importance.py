"""Importance resampling of generic windows, on synthetic cluster ids (no text needed)."""
import numpy as np
import pytest
from scipy.stats import chisquare

from lab.errors import LabError
from lab.training.importance import importance_sampler, importance_weights
from lab.data.tokens import window_starts

CONTEXT = 16


def generic_stream(n_windows):
    return np.arange(n_windows * CONTEXT + 1, dtype=np.uint16)


def skewed_ids(n_windows, k, seed=0):
    """Cluster ids whose generic histogram is far from uniform (cluster c about twice as common as c+1)."""
    p = 0.5 ** np.arange(k)
    return np.random.default_rng(seed).choice(k, size=n_windows, p=p / p.sum())


def test_weights_are_the_density_ratio():
    ids = skewed_ids(3000, 5)
    domain = np.array([0.1, 0.1, 0.2, 0.3, 0.3])
    iw = importance_weights(ids, domain)
    generic = np.bincount(ids, minlength=5) / len(ids)
    ratio = domain[ids] / generic[ids]
    assert np.allclose(iw.probabilities, ratio / ratio.sum())
    assert np.isclose(iw.probabilities.sum(), 1.0)
    assert np.allclose(iw.target, domain) and iw.uncovered_share == 0
    # Counts work as well as shares.
    assert np.allclose(importance_weights(ids, domain * 70).probabilities, iw.probabilities)


def test_resampled_stream_matches_the_target_histogram():
    k, n = 8, 5000
    ids = skewed_ids(n, k)
    domain = np.random.default_rng(1).dirichlet(np.ones(k))
    sampler = importance_sampler(generic_stream(n), ids, domain, batch_size=20_000, context=CONTEXT, seed=3)
    offsets = sampler.offsets()
    assert set(offsets) <= set(window_starts(n * CONTEXT + 1, CONTEXT))
    counts = np.bincount(ids[offsets // CONTEXT], minlength=k)
    assert chisquare(counts, domain * counts.sum()).pvalue > 1e-3
    # The generic stream itself is far from the target: the test has power.
    assert chisquare(np.bincount(ids, minlength=k) * 4, domain * n * 4).pvalue < 1e-6


def test_domain_clusters_missing_from_generic_are_dropped_and_reported():
    ids = np.array([0, 0, 1, 1, 1, 3] * 50)  # cluster 2 holds no generic window
    domain = np.array([0.3, 0.3, 0.2, 0.2])
    iw = importance_weights(ids, domain)
    assert iw.uncovered.tolist() == [2] and np.isclose(iw.uncovered_share, 0.2)
    assert np.allclose(iw.target, [0.375, 0.375, 0.0, 0.25]) and np.isfinite(iw.probabilities).all()
    with pytest.warns(UserWarning, match=r"20.0% of the domain lies in clusters \[2\]"):
        sampler = importance_sampler(generic_stream(len(ids)), ids, domain, batch_size=100, context=CONTEXT)
    assert 2 not in set(ids[sampler.offsets() // CONTEXT])
    # Clusters with fewer generic windows than asked for count as missing too.
    assert importance_weights(ids, domain, min_generic_windows=60).uncovered.tolist() == [2, 3]
    with pytest.raises(LabError, match="entirely"):
        importance_weights(ids, np.array([0, 0, 1.0, 0]))


def test_effective_windows():
    ids = skewed_ids(1000, 4)
    generic = np.bincount(ids, minlength=4) / len(ids)
    assert np.isclose(importance_weights(ids, generic).effective_windows, 1000)
    peaked = importance_weights(ids, np.array([0.01, 0.01, 0.01, 0.97]))
    assert peaked.effective_windows < 0.2 * 1000


def test_mismatched_inputs_are_explained():
    ids = skewed_ids(100, 4)
    with pytest.raises(LabError, match="different k"):
        importance_weights(ids, np.ones(3))
    with pytest.raises(LabError, match="another stream"):
        importance_sampler(generic_stream(99), ids, np.ones(4), batch_size=8, context=CONTEXT)
    with pytest.raises(LabError, match="non-negative"):
        importance_weights(ids, np.array([1.0, -1.0, 0.5, 0.5]))
