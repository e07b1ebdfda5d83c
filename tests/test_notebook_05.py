"""Notebook 05 (mixture of experts) runs under papermill at the tiny scale and writes its metrics."""
import json
import math

from lab.notebooks import run_notebooks

DOMAINS = "code,legal"


def finite(x):
    return isinstance(x, (int, float)) and math.isfinite(x)


def test_notebook_05_mixture(tiny_corpus, tmp_path):
    # Two domains keep the selection rules (about six fine-tunings a domain) to seconds; at tiny
    # the 8k-token set, as 1k tokens often stop fine-tuning at step 0.
    run_notebooks("tiny", tmp_path, ["05"], cell_timeout=600, parameters={"domains": DOMAINS, "set_tokens": 8_000, "cost_axis": "hours"})
    m = json.loads((tmp_path / "05_mixture.json").read_text())
    k = m["experts"]
    assert k == 4 and len(m["expert_tokens"]) == k == len(m["expert_windows"])
    assert sum(m["expert_tokens"]) == m["pretrain_tokens"] and len(set(m["expert_tokens"])) == 1

    (mixture,) = [name for name in m["curves"] if name.startswith("slm-mix")]
    for name, curve in m["curves"].items():
        assert all(map(finite, curve["valid_ppl"] + curve["pretrain_flops"])), name
        assert curve["valid_ppl"][-1] < curve["valid_ppl"][0], name  # more pretraining, lower perplexity
    # Equal FLOPs: the mixture's budgets are the SLM's.
    for a, b in zip(m["curves"][mixture]["pretrain_flops"], m["curves"]["slm"]["pretrain_flops"]):
        assert math.isclose(a, b, rel_tol=0.05)
    assert {"slm", "llm"} <= set(m["curves"])
    assert len(m["crossover"]["gap_ppl"]) == len(m["curves"]["slm"]["valid_ppl"])

    assert len(m["ablation"]) >= 3 and all(map(finite, m["ablation"].values()))
    # The paper's Figure 11 is after fine-tuning: each count (and the SLM, 1) has its macro perplexity there.
    assert m["ablation_after"].keys() == m["ablation"].keys()
    assert all(finite(v) and 1 < v < 1024 for v in m["ablation_after"].values())  # below a uniform guess (vocabulary)

    assert set(m["domains"]) == set(DOMAINS.split(","))
    for domain, rules in m["domains"].items():
        assert set(rules) == {"top", "loss", "all", "slm"}, domain
        for rule, r in rules.items():
            assert finite(r["ppl_after"]) and finite(r["ppl_before"]), (domain, rule)
        assert rules["top"]["selection_flops"] == 0 < rules["loss"]["selection_flops"]
        # "all" pays for fine-tuning every expert, the chosen one's fine-tuning included.
        assert rules["all"]["specialize_flops"] > rules["all"]["selection_flops"] > 0
    assert set(m["selection"]) == {"slm", "slm-mix (top)", "slm-mix (loss)", "slm-mix (all)"}
    for name, s in m["selection"].items():
        assert s["macro_ppl_after"] < s["macro_ppl_before"], name  # fine-tuning helps every method
    for fig in ("05_generic_ppl.png", "05_routing.png", "05_experts.png", "05_selection.png",
                "05_domain_histograms.png"):
        assert (tmp_path / fig).stat().st_size > 1000
