"""The study on a local Ray cluster: the same rows as the sequential study, steps in dependency order."""
import os
import subprocess
import sys

import pytest

from lab import study
from lab.cli import main
from lab.errors import LabError
from lab.methods.store import load_results
from lab.paths import scale_dir
from lab.methods.base import Step
from lab.study.run import launched
from lab.study.workers import dependencies, resources

# SLM's pretraining then two fine-tunes: the fine-tunes run side by side, after the pretraining.
STUDY = {"methods_": ["slm"], "domains": ["code", "legal"], "set_sizes": [2_000], "curve_sets": []}
SAME = ["cache_key", "method", "domain", "set_tokens", "config_hash", "data_hash", "pretrain_flops",
        "specialize_flops", "specialize_tokens", "ppl_before", "ppl_after"]


def _rows(scale, plan):
    """This study's rows: the SLM's pretraining and the fine-tunes the manifest names."""
    steps = study.read_manifest(scale)["steps"]
    keys = {steps[s.id]["cache_key"] for s in plan.steps if s.phase == "specialize"}
    rows = load_results(scale)
    rows = rows[rows["cache_key"].isin(keys) | ((rows["method"] == "slm") & (rows["domain"] == "generic"))]
    return rows[SAME].sort_values("cache_key").reset_index(drop=True)


def test_two_ray_workers_give_the_rows_of_the_sequential_study(tiny_corpus, tmp_path, monkeypatch):
    plan = study.make_plan("tiny", **STUDY)
    study.run_study("tiny", progress=False, log=lambda _: None, **STUDY)
    expected = _rows("tiny", plan)

    # The same study in an empty data folder that shares only the corpus; the workers inherit LAB_DATA.
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / "corpus").symlink_to(scale_dir("tiny") / "corpus")
    monkeypatch.setenv("LAB_DATA", str(tmp_path))
    lines = []
    report = study.run_study("tiny", progress=False, log=lines.append, workers=2, **STUDY)
    assert report.ok and report.done == 3, lines
    assert lines[0].startswith("[1/3] slm pretraining") and all("left" in line for line in lines[:3])
    got = _rows("tiny", plan)
    assert len(got) == len(expected) == 7  # five checkpoints, two fine-tunes
    assert got.equals(expected), (got, expected)
    manifest = study.read_manifest("tiny")
    assert sum(s["status"] == "done" for s in manifest["steps"].values()) == 3

    again = study.run_study("tiny", progress=False, log=lambda _: None, **STUDY)
    assert again.cached == 3 and again.done == 0  # a rerun, on either executor, skips what is stored


def test_dependencies_follow_the_methods_needs(tiny_corpus):
    plan = study.make_plan("tiny", ["slm", "llm", "slm-d", "slm-is"], ["code"], [2_000], fractions=[0.25, 1.0])
    deps = dependencies(plan)
    by = {(s.method, s.phase, s.fraction): s.id for s in plan.steps}
    slm_d = deps[by["slm-d", "specialize", 1.0]]
    assert slm_d >= {by["slm", "pretrain", None], by["llm", "pretrain", None]}
    assert by["slm-d", "specialize", 1.0] in deps[by["llm", "specialize", 1.0]]  # reads the teacher SLM-d tuned
    assert by["slm-is", "specialize", 1.0] in deps[by["slm-is", "specialize", 0.25]]  # one run, every budget
    assert deps[by["slm", "specialize", 0.25]] == {by["slm", "pretrain", None]}
    assert all(not deps[s.id] for s in plan.steps if s.phase == "pretrain")


def test_bad_cluster_options_are_one_line(tiny_corpus, capsys):
    assert main(["study", "--scale", "tiny", "--methods", "slm", "--workers", "0"]) == 2
    assert capsys.readouterr().err == "error: --workers 0: give a whole number of at least 1\n"
    with pytest.raises(LabError, match="nothing answers at 127.0.0.1:9"):
        study.run_study("tiny", address="127.0.0.1:9", progress=False, log=lambda _: None, **STUDY)
    with pytest.raises(LabError, match="--pretrain-launcher"):
        study.run_study("tiny", pretrain_launcher="no-such-torchrun", progress=False, log=lambda _: None, **STUDY)


def test_the_sequential_study_does_not_import_ray(tiny_corpus):
    code = ("import sys; from lab.cli import main; "
            "assert main(['study', '--scale', 'tiny', '--methods', 'slm', '--domains', 'code', '--set-sizes', '2000', "
            "'--curve-sets']) == 0; assert 'ray' not in sys.modules, 'ray imported'")
    subprocess.run([sys.executable, "-c", code], check=True, env=os.environ)


def test_steps_ask_for_a_cpu_and_a_share_of_a_gpu(tiny_corpus):
    plan = study.make_plan("tiny", ["slm", "slm-mix"], ["code"], [2_000], curve_sets=[])
    pre = {s.method: s for s in plan.steps if s.phase == "pretrain"}
    tune = next(s for s in plan.steps if s.phase == "specialize")
    assert resources(tune, gpus=False) == {"num_cpus": 1}
    assert resources(tune, gpus=True) == {"num_cpus": 1, "num_gpus": 0.25}  # four small runs share a GPU
    big = Step("slm", "pretrain", flops=1e18)
    assert resources(big, gpus=True)["num_gpus"] == 1.0
    torchrun = ["torchrun", "--nproc_per_node=8"]
    assert resources(big, gpus=True, launcher=torchrun) == {"num_cpus": 1}  # torchrun places its own processes
    assert launched(pre["slm"], torchrun) and not launched(pre["slm-mix"], torchrun) and not launched(tune, torchrun)


def test_the_study_hands_pretraining_to_a_launcher(tiny_corpus, capfd):
    report = study.run_study("tiny", progress=False, log=print, pretrain_launcher=sys.executable, **STUDY)
    assert report.ok
    out = capfd.readouterr().out
    assert "generic valid loss" in out  # what `python -m lab pretrain` prints, before the study's lines
    assert out.index("generic valid loss") < out.index("[1/3] slm pretraining")
