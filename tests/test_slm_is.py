"""SLM-is: the resampled stream follows the domain, costs are specialization, runs are per domain."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy.stats import chisquare

from lab import methods
from lab.data.corpus import load_corpus
from lab.errors import LabError
from lab.methods import importance as slm_is
from lab.methods.store import ResultRow
from lab.nn import costs
from lab.nn.model import model_config
from lab.training.train import train_config

DOMAIN = "medicine"
SCALE = "tiny"


@pytest.fixture(scope="module")
def sizes(tiny_corpus):
    return tiny_corpus.scale.set_tokens


@pytest.fixture(scope="module")
def spec_flops():
    return train_config("slm", SCALE).pretrain_flops / 64


def draw(rs, batches=200, batch_size=64, seed=1):
    """Cluster ids of the generic windows a sampler draws, found from the windows' offsets."""
    sampler = rs.sampler(batch_size, seed)
    offsets = np.concatenate([sampler.offsets() for _ in range(batches)])
    assert (offsets % rs.context == 0).all()
    return generic_ids(rs.k)[offsets // rs.context]


def generic_ids(k):
    return slm_is.clustering_for(load_corpus(SCALE), k).generic_ids[k]


def test_resampled_stream_matches_the_domain_histogram(sizes):
    k = 16
    rs = slm_is.resampling(DOMAIN, sizes[1], SCALE, k=k)
    ids = draw(rs)
    counts = np.bincount(ids, minlength=k)
    target = rs.importance.target
    assert np.allclose(target, rs.histogram)  # every domain cluster holds generic windows at tiny
    assert counts[target == 0].sum() == 0
    covered = target > 0
    assert chisquare(counts[covered], target[covered] * counts.sum()).pvalue > 1e-3
    # The generic stream itself is far from the domain: the test has power.
    generic = rs.importance.generic
    assert chisquare(generic[covered] / generic[covered].sum() * counts.sum(),
                     target[covered] * counts.sum()).pvalue < 1e-6


def test_training_reads_the_resampled_stream(sizes, spec_flops):
    rs = slm_is.resampling(DOMAIN, sizes[0], SCALE)
    seen = []
    rows = slm_is.train(DOMAIN, sizes[0], SCALE, spec_flops=spec_flops / 4, progress=False,
                        callbacks={"on_batch_end": [lambda t: seen.append(t.sampler)]})
    assert seen and all(np.array_equal(s.starts, rs.starts) and np.allclose(s.p, rs.probabilities) for s in seen)
    assert [r["pretrain_flops"] for r in rows] == sorted(r["pretrain_flops"] for r in rows)
    assert np.isclose(rows[-1]["pretrain_flops"], spec_flops / 4, rtol=0.02)
    assert all(slm_is.run_dir(rs, SCALE, 0).name in r["checkpoint"] for r in rows)


def test_top_cluster_variant_draws_only_from_that_cluster(sizes):
    rs = slm_is.resampling(DOMAIN, sizes[1], SCALE, k=16, weights="top")
    assert set(draw(rs, batches=20)) == {rs.top_cluster}
    assert rs.top_cluster == int(np.argmax(slm_is.resampling(DOMAIN, sizes[1], SCALE, k=16).histogram))
    assert len(rs.starts) == int(np.sum(generic_ids(16) == rs.top_cluster))


def test_specialize_books_everything_as_specialization_and_is_cached(sizes, spec_flops):
    cmd = [sys.executable, "-m", "lab", "specialize", "--method", "slm-is", "--domain", "legal",
           "--set-tokens", str(sizes[0]), "--scale", SCALE, "--k", "4", "--spec-flops", str(spec_flops), "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy(), timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    first = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(first) == set(ResultRow.REPORTED) and not first["cached"]
    assert first["method"] == "slm-is" and first["domain"] == "legal" and first["set_tokens"] == sizes[0]
    assert first["pretrain_flops"] == 0 and first["pretrain_tokens"] == 0
    assert all(np.isfinite(first[f]) and first[f] > 0 for f in ("ppl_before", "ppl_after", "specialize_flops",
                                                                "inference_flops_per_token", "seconds"))
    row = methods.specialize("slm-is", "legal", sizes[0], SCALE, k=4, spec_flops=spec_flops, progress=False)
    extra = row["extra"]
    assert row["cached"] and row["ppl_after"] == first["ppl_after"]
    assert first["specialize_flops"] > extra["finetune_flops"] > 0
    assert np.isclose(first["specialize_flops"], extra["is_flops"] + extra["finetune_flops"])
    assert np.isclose(extra["is_flops"], spec_flops, rtol=0.02)
    assert extra["k"] == 4 and extra["weights"] == "histogram"


def test_each_domain_set_k_and_weights_gets_its_own_run(sizes, spec_flops):
    dirs = {slm_is.run_dir(slm_is.resampling(d, n, SCALE, k=k, weights=w), SCALE, 0)
            for d in ("legal", "code") for n in sizes[:2] for k in (4, 16) for w in ("histogram", "top")}
    assert len(dirs) == 16
    legal = slm_is.train("legal", sizes[0], SCALE, spec_flops=spec_flops / 4, progress=False)
    code = slm_is.train("code", sizes[0], SCALE, spec_flops=spec_flops / 4, progress=False)
    assert {os.path.dirname(r["checkpoint"]) for r in legal}.isdisjoint(os.path.dirname(r["checkpoint"]) for r in code)


def test_mistakes_and_edge_cases(sizes):
    with pytest.raises(LabError, match="weights"):
        slm_is.resampling(DOMAIN, sizes[0], SCALE, weights="uniform")
    with pytest.raises(LabError, match="spec_flops"):
        slm_is.spec_budgets(SCALE, 0)
    with pytest.raises(LabError, match="window"):
        slm_is.resampling(DOMAIN, 20, SCALE)
    with pytest.warns(UserWarning, match="sampling noise"):
        rs = slm_is.resampling(DOMAIN, 500, SCALE, k=16)  # 7 windows for 16 clusters
    assert rs.sparse and rs.summary()["sparse"]
    # One cluster's windows, read over and over: said before training, not discovered after.
    top = slm_is.resampling(DOMAIN, sizes[1], SCALE, k=16, weights="top")
    flops = 20 * top.importance.effective_windows * top.context * costs.train_flops_per_token(
        model_config("slm", SCALE))
    with pytest.warns(UserWarning, match="about 20 times"):
        assert slm_is.check_repeats(top, flops, SCALE) > slm_is.REPEAT_WARNING
