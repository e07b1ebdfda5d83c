"""The budget explorer: the recommendation honours every budget and weighs cost, the sliders drive it, the
map and tree follow."""
import pandas as pd
import pytest

from lab.analysis import decisions
from lab.errors import LabError
from lab.ui.explorer import BudgetExplorer

SLM, LLM = 1e5, 4e5  # inference FLOPs per token


def _points():
    """Macro points as `lab.study.macro_points` gives them, with costs and perplexities set by hand."""
    rows = []

    def add(method, pre, spec, inf, ppl, n=2_000, fraction=1.0):
        rows.append({"method": method, "set_tokens": n, "fraction": fraction, "pretrain_flops": pre,
                     "specialize_flops": spec, "inference_flops_per_token": inf, "ppl_before": ppl * 2,
                     "ppl_after": ppl, "n_domains": 4,
                     # Measured at 2e-12 s per FLOP: the hours axis keeps the FLOPs' order.
                     "pretrain_hours": pre * 2e-12 / 3600, "specialize_hours": spec * 2e-12 / 3600,
                     "device": "cpu (test)"})

    add("slm-generic", 1e12, 0.0, SLM, 100.0)
    add("slm", 1e12, 1e10, SLM, 60.0)
    add("slm", 2.5e11, 1e10, SLM, 70.0, fraction=0.25)
    add("slm-hn", 1e12, 1e10, SLM, 55.0)
    add("slm-hn", 2.5e11, 1e10, SLM, 72.0, fraction=0.25)
    add("llm", 1e12, 4e10, LLM, 45.0)
    add("slm-is", 0.0, 1e12, SLM, 50.0)
    add("slm-is", 0.0, 1.2e11, SLM, 65.0, fraction=0.125)
    add("slm", 1e12, 5e10, SLM, 40.0, n=16_000)
    return pd.DataFrame(rows)


def test_recommend_honours_every_budget():
    p = _points()
    everything = dict(pretrain_budget=1e13, spec_budget=1e13, inference_budget=1e6, set_tokens=2_000)
    assert decisions.recommend(p, **everything)["method"] == "llm"
    small = {**everything, "inference_budget": SLM}
    assert decisions.recommend(p, **small)["method"] == "slm-is"
    r = decisions.recommend(p, **{**small, "spec_budget": 2e10})
    assert r["method"] == "slm-hn" and r["ppl"] == 55.0 and r["total_flops"] == pytest.approx(1.01e12)
    # Fifty domains share the specialization budget: SLM-is's 1e12 per domain no longer fits.
    r = decisions.recommend(p, **{**small, "spec_budget": 1e13, "n_domains": 50})
    assert r["method"] == "slm-hn" and 50 * r["specialize_flops"] <= 1e13
    # No pretraining budget: only what needs none.
    assert decisions.recommend(p, **{**small, "pretrain_budget": 1.0})["method"] == "slm-is"
    assert decisions.recommend(p, **{**small, "pretrain_budget": 1.0, "spec_budget": 1.0}) is None
    assert decisions.recommend(p, **{**small, "spec_budget": 0.0})["method"] == "slm-generic"
    assert decisions.recommend(p, **{**small, "set_tokens": 16_000})["ppl"] == 40.0
    with pytest.raises(LabError, match="n_domains"):
        decisions.recommend(p, **{**small, "n_domains": 0})


def test_sliders_drive_the_recommendation():
    ex = BudgetExplorer(_points())
    s = ex.sliders
    assert set(s) == {"pretrain", "spec", "inference", "set_tokens", "n_domains", "tolerance", "cost"}
    assert ex.recommendation["method"] == "llm"  # every slider starts at its largest budget
    s["inference"].value = 1.5e5  # below the LLM's cost per token
    assert ex.recommendation["method"] == "slm-is" and "SLM-is" in ex.summary and "50.00" in ex.summary
    s["spec"].value = 3e10
    assert ex.recommendation["method"] == "slm-hn"
    assert ex.recommendation["inference_flops_per_token"] <= s["inference"].value
    assert ex.recommendation["specialize_flops"] <= s["spec"].value
    s["n_domains"].value = 5  # 5 x 1e10 > 3e10: nothing pretrained fits, generic only does
    assert ex.recommendation["method"] == "slm-generic"
    s["pretrain"].value = 10 ** s["pretrain"].min
    assert ex.recommendation is None and "No measured method" in ex.summary
    s["set_tokens"].value = 16_000
    s["pretrain"].value = 10 ** s["pretrain"].max
    s["spec"].value = 10 ** s["spec"].max
    s["inference"].value = 10 ** s["inference"].max
    assert ex.recommendation["method"] == "slm" and ex.recommendation["ppl"] == 40.0
    fig = ex.figure()
    assert fig.axes[0].get_xlabel().startswith("total cost for 5 domains")
    assert fig.axes[0].get_xlabel().endswith("(FLOPs)")
    s["cost"].value = "hours"  # the same points at their measured device time; the budgets stay FLOPs
    assert ex.recommendation["method"] == "slm"
    fig = ex.figure()
    assert "(device-hours)\non cpu (test)" in fig.axes[0].get_xlabel()
    star = next(c for c in fig.axes[0].collections if c.get_label().startswith("lowest perplexity"))
    assert star.get_offsets()[0][0] == pytest.approx(ex.recommendation["total_flops"] * 2e-12 / 3600)


def test_widget_redraws_without_a_front_end():
    ex = BudgetExplorer(_points(), inference_budget=SLM)
    box = ex.widget()
    assert ex.label in box.children and ex.output in box.children
    ex.sliders["spec"].value = 3e10
    assert ex.recommendation["method"] == "slm-hn" and "SLM-hn" in ex.label.value


def test_the_cheapest_choice_trades_a_little_perplexity_for_cost():
    p = _points()
    small = dict(pretrain_budget=1e13, spec_budget=1e13, inference_budget=SLM, set_tokens=2_000)
    # SLM-is is best (50), at 1e12 per domain; nothing else is within 2% of it.
    assert decisions.cheapest(p, **small)["method"] == "slm-is"
    # Within 12%: SLM-hn (55, 1.01e12 in total) instead of SLM-is (50, 1e12 per domain) for 3 domains.
    c = decisions.cheapest(p, **small, n_domains=3, tolerance=0.12)
    assert c["method"] == "slm-hn" and c["ppl_limit"] == pytest.approx(56.0)
    assert c["total_flops"] == pytest.approx(1e12 + 3 * 1e10)
    # At one domain SLM-is costs 1e12 < 1.01e12: it stays the cheapest too.
    assert decisions.cheapest(p, **small, tolerance=0.12)["method"] == "slm-is"
    # A wide tolerance reaches SLM-is's 1/8 run (65, 1.2e11): the cheapest point of all at one domain.
    c = decisions.cheapest(p, **small, tolerance=0.5)
    assert c["method"] == "slm-is" and c["fraction"] == 0.125
    lines = decisions.explain(decisions.recommend(p, **small), c, tolerance=0.5)
    assert "SLM-is trained on 1/8 of its specialization budget" in lines[1] and "88% of the total cost" in lines[1]
    assert "FLOPs per token" in lines[2] and "2,000 tokens" in lines[2] and "4 domains" in lines[2]
    assert decisions.cheapest(p, **{**small, "pretrain_budget": 1.0, "spec_budget": 1.0}) is None
    for bad in (-0.01, float("nan"), "2%"):
        with pytest.raises(LabError, match="tolerance"):
            decisions.cheapest(p, **small, tolerance=bad)


def test_the_tolerance_slider_and_the_sentence():
    ex = BudgetExplorer(_points(), inference_budget=SLM, n_domains=3)
    assert ex.tolerance == pytest.approx(0.02) and ex.recommendation["method"] == "slm-is"
    assert "also the cheapest" in ex.summary
    before = ex.summary
    ex.sliders["tolerance"].value = 12.0
    assert ex.cheapest["method"] == "slm-hn" and ex.summary != before
    assert "Cheapest within 12% of that perplexity (at most 56.00): SLM-hn" in ex.summary
    assert "3 x 1e10 FLOPs of specialization (paid per domain)" in ex.summary
    with pytest.raises(LabError, match="tolerance"):
        BudgetExplorer(_points(), tolerance=-1)


def test_decision_map_and_tree_read_the_rule_off_the_data():
    dmap = decisions.decision_map(_points(), set_tokens=2_000)
    big = dmap[dmap["inference_budget"] >= LLM]
    assert big.sort_values("spec_budget")["method"].iloc[-1] == "llm"
    small = dmap[dmap["inference_budget"] == SLM].sort_values("spec_budget")
    assert small["method"].iloc[-1] == "slm-is" and "slm-hn" in set(small["method"])
    assert small["method"].iloc[0] == "slm-generic"
    tree = decisions.decision_tree(dmap)
    assert tree.accuracy >= 0.9 and "llm" in tree.text and "slm-is" in tree.text
    with pytest.raises(LabError, match="no study results"):
        decisions.decision_map(_points(), set_tokens=999)


def test_metrics_read_the_explorer_state_from_plain_values():
    ex = BudgetExplorer(_points(), inference_budget=SLM, spec_budget=3e10)
    dmap = decisions.decision_map(_points(), set_tokens=ex.budgets["set_tokens"])
    m = decisions.metrics(_points(), ex.budgets, dmap, decisions.decision_tree(dmap))
    assert m["budgets"] == ex.budgets and m["recommendation"] == ex.recommendation
    assert m["feasible_methods"] == sorted(ex.feasible()["method"].unique())
    assert m["recommendation"]["method"] == "slm-hn" and "llm" not in m["feasible_methods"]
    assert m["tolerance"] == 0.02 and m["cheapest"] == ex.cheapest


def test_an_empty_study_says_what_to_do():
    with pytest.raises(LabError, match="python -m lab study"):
        BudgetExplorer(_points().iloc[0:0])
