"""Notebook 06 (distillation) runs under papermill at the tiny scale and writes its metrics."""
import json
import math

from lab.notebooks import run_notebooks


def test_notebook_06_distillation(tiny_corpus, tmp_path):
    from lab.methods.store import load_results

    run_notebooks("tiny", tmp_path, ["06"], cell_timeout=600,
                  parameters={"domains": "legal", "set_index": 0, "budgets": 2,
                              "compare_with": "no-such-method", "cost_axis": "hours"})
    m = json.loads((tmp_path / "06_distillation.json").read_text())
    assert m["domains"] == ["legal"] and m["runs"] == 3 + 2 + 2
    assert any(s.startswith("no-such-method") for s in m["skipped"])
    (found,) = m["findings"].values()
    for key in ("slm", "slm_d", "llm", "slm_generic"):
        assert math.isfinite(found[key]) and found[key] > 1, key
    assert found["slm"] < found["slm_generic"]  # fine-tuning helps
    assert [len(found["gain_by_teacher"]), len(found["gain_by_student"])] == [2, 2]
    assert all(math.isfinite(g["gain"]) for g in found["gain_by_teacher"] + found["gain_by_student"])
    # The largest pair is in both sweeps: the same run, the same gain.
    assert found["gain_by_teacher"][-1]["gain"] == found["gain_by_student"][-1]["gain"]
    assert found["gain_by_teacher"][0]["teacher_flops"] < found["gain_by_teacher"][1]["teacher_flops"]
    assert 0 <= found["slm_beats_slm_d_at_equal_total_cost"] <= 1
    for run in found["equal_total_cost"]:
        assert run["total_flops"] == run["student_flops"] + run["teacher_flops"] >= run["slm_flops"]
    # Every SLM-d row in the store carries teacher + student pretraining and one SLM's inference cost.
    rows = load_results("tiny")
    distilled = rows[rows.method == "slm-d"]
    assert len(distilled) >= 3
    for r in distilled.itertuples():
        assert r.pretrain_flops == r.extra["student_pretrain_flops"] + r.extra["teacher_pretrain_flops"]
        assert r.specialize_flops >= r.extra["teacher_specialize_flops"]
    slm_inference = rows[rows.method == "slm"].inference_flops_per_token.iloc[0]
    assert (distilled.inference_flops_per_token == slm_inference).all()
    for fig in ("06_distillation_cost.png", "06_teacher_budget.png"):
        assert (tmp_path / fig).stat().st_size > 1000
