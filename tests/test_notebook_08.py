"""Notebook 08 (budget explorer) runs headless under papermill on the tiny study and writes its metrics."""
import json
import math

import pytest

from lab import study
from lab.notebooks import run_notebooks

# The same study as notebook 07's test: all cached when both run.
STUDY = dict(domains=["code", "legal"], set_sizes=[2_000, 16_000], fractions=[0.25, 1.0], spec_flops=2e11)


@pytest.fixture(scope="module")
def tiny_study(tiny_corpus):
    report = study.run_study("tiny", progress=False, log=lambda _: None, **STUDY)
    assert report.ok, report.failed
    return report


def test_notebook_08_budget_explorer(tiny_study, tmp_path):
    # A budget too small for the LLM's inference cost: the widget must not wait, and the answer must fit.
    run_notebooks("tiny", tmp_path, ["08"], cell_timeout=600, parameters={"n_domains": 3})
    m = json.loads((tmp_path / "08_budget_explorer.json").read_text())
    b, r = m["budgets"], m["recommendation"]
    assert b["n_domains"] == 3 and b["set_tokens"] == 2_000
    assert r is not None and r["method"] in m["feasible_methods"]
    assert math.isfinite(r["ppl"]) and r["ppl"] > 1
    assert r["pretrain_flops"] <= b["pretrain_budget"] * (1 + 1e-6)
    assert 3 * r["specialize_flops"] <= b["spec_budget"] * (1 + 1e-6)
    assert r["inference_flops_per_token"] <= b["inference_budget"] * (1 + 1e-6)
    assert math.isclose(r["total_flops"], r["pretrain_flops"] + 3 * r["specialize_flops"], rel_tol=1e-9)
    # The cheapest point within the tolerance (2%) of the lowest perplexity: never dearer, never worse than that.
    c = m["cheapest"]
    assert m["tolerance"] == 0.02 and c["method"] in m["feasible_methods"]
    assert math.isclose(c["ppl_limit"], r["ppl"] * 1.02) and r["ppl"] <= c["ppl"] <= c["ppl_limit"] * (1 + 1e-6)
    assert c["total_flops"] <= r["total_flops"] and c["inference_flops_per_token"] <= b["inference_budget"] * (1 + 1e-6)

    assert 0.8 <= m["tree_accuracy"] <= 1.0 and "class:" in m["tree"]
    assert math.isclose(sum(m["map_share"].values()), 1.0)
    assert set(m["map_share"]) - {"none"} <= set(m["methods"])
    for fig in ("08_explorer.png", "08_decision_tree.png"):
        assert (tmp_path / fig).stat().st_size > 1000, fig
