"""Notebook 03 (importance sampling) runs at the tiny scale and writes sane metrics."""
import json
import math

import pytest

from lab.analysis.importance import notebook_sets
from lab.errors import LabError
from lab.notebooks import run_notebooks


def test_notebook_03_sets_are_the_scales_unless_given():
    assert notebook_sets("tiny") == ([2_000, 16_000], 16_000)
    assert notebook_sets("default") == ([8_000, 64_000], 64_000)
    assert notebook_sets("tiny", "2000", 0) == ([2_000], 2_000)
    with pytest.raises(LabError, match="set_sizes='2k'"):
        notebook_sets("tiny", "2k")


def test_notebook_03_importance_sampling(tiny_corpus, tmp_path):
    n = tiny_corpus.scale.set_tokens[1]
    folder = tmp_path / "my_notes"  # a user's folder: the tiny corpus's legal documents as plain text files
    folder.mkdir()
    for i, doc in enumerate(tiny_corpus.documents("legal", "train")):
        (folder / f"{i:04d}.txt").write_text(doc.text, encoding="utf-8")
    run_notebooks("tiny", tmp_path, ["03"], cell_timeout=600,
                  parameters={"domains": "medicine", "set_sizes": str(n), "spec_share": 0.03, "k": 16,
                              "ablation_ks": "4,16", "ablation_set": 0, "compare_domains": "medicine",
                              "compare_share": 0.01, "user_folder": str(folder), "cost_axis": "hours"})
    m = json.loads((tmp_path / "03_importance_sampling.json").read_text())
    curves = m["curves"]
    assert set(curves["ppl_after"]) == {f"medicine/{n}"} == set(m["reference"])
    for setting, after in curves["ppl_after"].items():
        before, spec, is_flops = (curves[key][setting] for key in ("ppl_before", "specialize_flops", "is_flops"))
        assert len(after) == 5 and all(math.isfinite(p) and p > 1 for p in after + before)
        assert all(f == 0 for f in curves["pretrain_flops"][setting])
        # Budgets grow, every one paid as specialization, and the largest is the one asked for.
        assert is_flops == sorted(is_flops) and all(s > i for s, i in zip(spec, is_flops))
        assert math.isclose(is_flops[-1], m["spec_flops"], rel_tol=0.02)
        # More resampled training makes a better model before fine-tuning; fine-tuning helps more still.
        assert before[-1] < before[0] and after[0] < before[0]
    assert m["spec_flops"] < m["slm_pretrain_flops"]
    assert set(m["k_ablation"][f"medicine/{n}"]) == {"4", "16"}
    top = m["top_vs_histogram"]
    assert set(top) == {"histogram", "top"} and all(len(v[f"medicine/{n}"]) == 5 for v in top.values())
    assert 0 < m["top_share"][f"medicine/{n}"] <= 1
    # DSIR beside cluster histograms, on a domain and on the user's folder, at one budget: each stream is
    # By DSIR's n-gram measure its stream is closer to the domain than as many uniform generic windows,
    # and gains more over them than the clusters' stream does.
    assert set(m["dsir_vs_clusters"]) == {"medicine"} and len(m["user_folder"]) == 1
    for found in (m["dsir_vs_clusters"]["medicine"], *m["user_folder"].values()):
        kl, uniform, gain = found["ngram_kl"], found["ngram_kl_uniform"], found["ngram_kl_reduction"]
        assert kl["dsir"] < uniform["dsir"] and gain["dsir"] > gain["clusters"]
        assert math.isclose(found["is_flops"]["dsir"], found["is_flops"]["clusters"], rel_tol=1e-9)
        assert all(math.isfinite(p) and 1 < p < found["ppl_before"][imp] for imp, p in found["ppl_after"].items())
    for fig in ("03_budget_curves.png", "03_k_ablation.png", "03_top_vs_histogram.png", "03_dsir_vs_clusters.png",
                "03_dsir_vs_clusters_user.png"):
        assert (tmp_path / fig).stat().st_size > 1000
