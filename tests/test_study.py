"""The study (plan, resume, failures, time estimates), the method registry, and the findings it feeds.

The runner is exercised with a toy method registered on the fly, so these
tests cost no training; notebooks 07 and 08's tests run the real tiny study.
"""
import json
import math

import numpy as np
import pandas as pd
import pytest

from lab import methods, study
from lab.analysis.findings import FAILS, HOLDS, NOT_MEASURED, compute_findings, table8
from lab.cli import main
from lab.errors import LabError
from lab.methods.base import Method, Option, Step
from lab.methods.store import ResultStore, cached_run
from lab.training.train import train_config


def test_plan_orders_and_prices_the_steps(tiny_corpus):
    plan = study.make_plan("tiny", domains=["code", "legal"], set_sizes=[2_000, 16_000], fractions=[0.25, 1.0])
    steps = plan.steps
    phases = [s.phase for s in steps]
    assert phases == sorted(phases)  # every pretraining before any specialization
    assert [s.method for s in steps if s.phase == "pretrain"] == ["slm", "llm", "slm-mix", "slm-hn"]
    spec = [s for s in steps if s.phase == "specialize"]
    first_curve = next(i for i, s in enumerate(spec) if s.fraction not in (None, 1.0))
    assert all(s.fraction in (None, 1.0) for s in spec[:first_curve])  # the largest budget first
    curves = spec[first_curve:]
    assert {s.set_tokens for s in curves} == {2_000, 16_000}  # curves on the two smallest sets
    assert "slm-d" not in {s.method for s in curves} and "slm-nopt" not in {s.method for s in curves}
    assert {s.set_tokens for s in spec if s.method == "slm-is"} == {2_000}
    budget = train_config("slm", "tiny").pretrain_flops
    for s in spec:
        assert s.flops > 0, s.id
        if s.method == "slm-is":  # a quarter of the SLM's budget, as the paper's SLM-is
            assert math.isclose(s.budget, s.fraction * 0.25 * budget), s.id
        elif s.method != "slm-nopt":
            assert math.isclose(s.budget, s.fraction * budget), s.id
    assert len({s.id for s in steps}) == len(steps)
    # SLM-is's full budget trains its run; the smaller shares only fine-tune.
    full, share = (next(s for s in spec if s.method == "slm-is" and s.fraction == f) for f in (1.0, 0.25))
    assert full.flops > 5 * share.flops
    # Every price is its method's own.
    layout = methods.base.Layout(plan.scale, tuple(plan.methods), tuple(plan.domains), tuple(plan.set_sizes),
                                 tuple(plan.curve_sets), tuple(plan.is_sets), tuple(plan.fractions))
    assert all(s.flops == methods.METHODS[s.method].price(s, layout) for s in spec)
    # Unless told, a study covers the scale's study domains: two at tiny, a smoke run.
    assert study.make_plan("tiny").domains == ["code", "legal"]


def test_plan_rejects_mistakes(tiny_corpus):
    with pytest.raises(LabError, match="unknown method"):
        study.make_plan("tiny", ["slm", "gpt5"])
    with pytest.raises(LabError, match="unknown domain"):
        study.make_plan("tiny", ["slm"], ["klingon"])
    with pytest.raises(LabError, match="curve_sets"):
        study.make_plan("tiny", ["slm"], set_sizes=[2_000], curve_sets=[16_000])
    with pytest.raises(LabError, match="unknown method option"):
        study.make_plan("tiny", ["slm"], wings=3)
    with pytest.raises(LabError, match="fractions"):
        study.make_plan("tiny", ["slm"], fractions=[0.5])
    with pytest.raises(LabError, match="--selection"):
        study.make_plan("tiny", ["slm-mix"], selection="best")


# -- a toy method: one module and one registry line ------------------------------------

CALLS = []
KILL_AT = []
BROKEN = []


class Toy(Method):
    """Scores the domain with a made-up perplexity: the runner's tests cost no training."""
    name, title, from_scratch = "toy", "Toy", True
    options = (Option("wings", int, "how many wings the toy has"),)

    def specialize(self, domain, set_tokens, scale, *, seed=0, pretrain_flops=None, progress=True, **options):
        options = self.check_options(options)
        CALLS.append((domain, set_tokens))
        if (domain, set_tokens) in KILL_AT:
            raise KeyboardInterrupt
        if domain in BROKEN:
            raise ModuleNotFoundError("No module named 'lab.halfwritten'")
        key = {"method": self.name, "scale": scale, "domain": domain, "set_tokens": set_tokens, "seed": seed,
               **options}
        ppl = 50.0 + len(domain) - set_tokens / 1000
        return cached_run(ResultStore.for_scale(scale), key, lambda: {
            "ppl_before": ppl * 2, "ppl_after": ppl, "pretrain_flops": 0.0, "specialize_flops": 1e9,
            "inference_flops_per_token": 1e5, "pretrain_tokens": 0, "specialize_tokens": set_tokens,
            "seconds": 0.01, "device": "cpu", "histogram_entropy": 0.5})

    def price(self, step, layout):
        return 1e9


@pytest.fixture
def toy(register_method):
    register_method(Toy())
    CALLS.clear()
    KILL_AT.clear()
    BROKEN.clear()


def test_a_registered_method_runs_through_the_study_and_the_command_line(tiny_corpus, toy, capsys):
    lines = []
    report = study.run_study("tiny", ["toy"], ["code", "legal"], [2_000], dry_run=True, progress=False,
                             log=lines.append, wings=3)
    assert report.done == 0 and not CALLS
    assert any(line.startswith("toy x 2 domains, set 2,000") for line in lines)
    report = study.run_study("tiny", ["toy"], ["code", "legal"], [2_000], curve_sets=[], progress=False,
                             log=lines.append, wings=3)
    assert report.ok and report.done + report.cached == 2 and report.methods["toy"] == "done"
    assert any("about" in line and "left" in line for line in lines)
    # The dry run after it books what was done, and how long it took (the README's study times).
    lines.clear()
    study.run_study("tiny", ["toy"], ["code", "legal"], [2_000], curve_sets=[], dry_run=True, progress=False,
                    log=lines.append, wings=3)
    assert any(line.startswith("  toy") and "2 done in" in line for line in lines)
    assert "done so far in" in lines[-1] and "of wall time" in lines[-1]
    loaded = study.load_study("tiny")
    rows = loaded.results[loaded.results["method"] == "toy"]
    assert set(rows["domain"]) == {"code", "legal"} and (rows["ppl_after"] < rows["ppl_before"]).all()

    assert main(["specialize", "--method", "toy", "--domain", "code", "--set-tokens", "2000", "--scale", "tiny",
                 "--wings", "3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cached"]  # the study's row
    assert main(["specialize", "--method", "toy", "--domain", "code", "--set-tokens", "2000", "--scale", "tiny",
                 "--experts", "3"]) == 2
    assert "toy takes the options wings, not experts" in capsys.readouterr().err


def test_every_method_refuses_options_it_does_not_take(tiny_corpus, capsys):
    """Checked before anything trains, for methods with options and without."""
    with pytest.raises(LabError, match="slm takes the options lora_rank, lr_scale, not experts"):
        methods.specialize("slm", "code", 2_000, "tiny", experts=3)
    with pytest.raises(LabError, match="slm-generic takes no options, not lora_rank"):
        methods.specialize("slm-generic", "code", 2_000, "tiny", lora_rank=4)
    with pytest.raises(LabError, match="slm pretraining takes no options, not experts"):
        methods.pretrain("slm", "tiny", experts=3)
    with pytest.raises(LabError, match="slm-mix pretraining takes the options experts, not selection"):
        methods.pretrain("slm-mix", "tiny", selection="top")
    assert main(["specialize", "--method", "llm", "--domain", "code", "--set-tokens", "2000", "--scale", "tiny",
                 "--k", "4"]) == 2
    assert "llm takes the options lora_rank, lr_scale, not k" in capsys.readouterr().err


def test_only_unregistered_methods_are_unknown(tiny_corpus, toy):
    with pytest.raises(LabError, match="unknown method 'dsir'"):
        methods.get("dsir")
    with pytest.raises(LabError, match="cannot register"):
        methods.register(Toy())


def test_a_killed_study_resumes_where_it_stopped(tiny_corpus, toy):
    domains, sets = ["code", "legal", "medicine"], [4_000, 8_000]
    KILL_AT.append(("medicine", 4_000))  # killed during its third step
    with pytest.raises(KeyboardInterrupt):
        study.run_study("tiny", ["toy"], domains, sets, curve_sets=[], progress=False, log=lambda _: None)
    KILL_AT.clear()
    assert CALLS[-1] == ("medicine", 4_000) and len(CALLS) == 3
    CALLS.clear()
    report = study.run_study("tiny", ["toy"], domains, sets, curve_sets=[], progress=False, log=lambda _: None)
    assert report.ok and report.cached == 2 and report.done == 4  # two were stored before the kill
    manifest = study.read_manifest("tiny")
    done = [s for s in manifest["steps"].values() if s["method"] == "toy" and s["set_tokens"] in sets]
    assert len(done) == 6 and all(s["status"] == "done" for s in done)


def test_a_broken_method_fails_with_its_error_and_the_others_go_on(tiny_corpus, toy):
    BROKEN.append("legal")
    lines = []
    report = study.run_study("tiny", ["toy"], ["code", "legal", "medicine"], [2_000], curve_sets=[],
                             progress=False, log=lines.append)
    assert report.methods["toy"].startswith("failed: ModuleNotFoundError")
    assert any("FAILED: ModuleNotFoundError" in line for line in lines)
    assert any("Traceback" in line or "File " in line for line in lines)
    assert ("code", 2_000) in CALLS


def test_rates_learn_from_measured_steps():
    rates = study.Rates()
    pre = Step("slm", "pretrain", flops=1e12)
    ft = Step("slm-mix", "specialize", "code", 2_000, 1.0, 1.0, flops=1e10)
    prior = methods.METHODS["slm"].seconds_per_flop
    assert rates.rate("slm/pretrain") == (prior, "prior")
    rates.observe("slm/specialize", 20.0, 1e10)  # a slow machine: 2e-9 s/FLOP
    assert rates.rate("slm-mix/specialize")[1] == "phase"
    assert math.isclose(rates.seconds(ft), 20.0)
    rates.observe("slm-mix/specialize", 5.0, 1e10)
    assert rates.rate("slm-mix/specialize") == (5e-10, "measured")
    assert rates.seconds(pre) == pytest.approx(1e12 * prior)


def test_dry_run_lists_steps_and_time(tiny_corpus):
    lines = []
    report = study.run_study("tiny", ["slm", "slm-is"], ["code"], [2_000, 16_000], dry_run=True, log=lines.append)
    assert report.done == 0
    text = "\n".join(lines)
    assert "slm pretraining" in text and "slm-is x 1 domains, set 2,000" in text
    assert text.splitlines()[-1].startswith("total:") and "FLOPs" in text.splitlines()[-1]
    lines.clear()
    study.run_study("tiny", ["slm", "slm-is"], ["code"], [2_000, 16_000], dry_run=True, log=lines.append, workers=2)
    assert "on 2 workers" in lines[-1]


def test_wall_time_counts_overlapping_steps_once():
    from lab.study.run import _wall_seconds
    steps = [{"started": 100.0, "seconds": 10.0}, {"started": 105.0, "seconds": 10.0},  # two workers
             {"started": 200.0, "seconds": 5.0},  # after a pause
             {"seconds": 50.0}]  # written before steps recorded their start
    assert _wall_seconds(steps) == pytest.approx(20.0)


# -- findings on synthetic studies ------------------------------------------------------

def _synthetic(mix_gain=(3.0, 1.0), generic=None, with_is=True) -> study.StudyResults:
    """A study of four domains and two set sizes whose numbers are set by hand."""
    domains = {"a": 0.2, "b": 0.4, "c": 1.2, "d": 1.5}  # histogram entropy
    base = {2_000: 60.0, 16_000: 40.0}
    rows = []

    def add(method, n, ppl_after, ppl_before, pre, spec, inf, fraction=1.0, entropy=None):
        for dom, h in domains.items():
            rows.append({"method": method, "domain": dom, "set_tokens": n, "fraction": fraction, "budget": pre,
                         "ppl_before": ppl_before, "ppl_after": ppl_after(dom), "pretrain_flops": pre,
                         "specialize_flops": spec, "inference_flops_per_token": inf,
                         "histogram_entropy": h if entropy else None,
                         # Measured time at 1e-12 s per FLOP (1 TFLOP/s), on one device.
                         "pretrain_hours": pre * 1e-12 / 3600, "specialize_hours": spec * 1e-12 / 3600,
                         "device": "cpu (test)", "pretrain_device": "cpu (test)" if pre else None})

    for i, (n, b) in enumerate(base.items()):
        add("slm", n, lambda d: b, 100.0, 1e12, 1e10, 1e5)
        add("slm", n, lambda d: b + 10, 150.0, 2.5e11, 1e10, 1e5, fraction=0.25)
        add("slm-generic", n, lambda d: 100.0, 100.0, 1e12, 0.0, 1e5)
        # The mixtures help low-entropy domains only.
        add("slm-mix", n, lambda d, g=mix_gain[i]: b - 2 * g if domains[d] < 1 else b, 90.0, 1e12, 1e10, 1e5,
            entropy=True)
        add("slm-hn", n, lambda d, g=mix_gain[i]: b - 2 * g if domains[d] < 1 else b + 0.1, 95.0, 1e12, 1e10, 1e5,
            entropy=True)
        add("llm", n, lambda d: b - 15, 70.0, 1e12, 4e10, 4e5)
        add("slm-d", n, lambda d: b + 1, 100.0, 2e12, 5e10, 1e5)
        if with_is:
            add("slm-is", n, lambda d: b - 8, 80.0, 0.0, 2e12, 1e5)
            add("slm-is", n, lambda d: b + 20, 120.0, 0.0, 1.3e11, 1e5, fraction=0.0625)
    results = pd.DataFrame(rows)
    generic = generic or {"llm": 50.0, "slm-mix": 60.0, "slm-hn": 65.0, "slm": 70.0}
    pretrain = pd.DataFrame([{"method": m, "fraction": 1.0, "pretrain_flops": 1e12, "pretrain_tokens": 10**6,
                              "valid_loss": math.log(p), "generic_ppl": p, "steps": 1000, "seconds": 1.0,
                              "pretrain_hours": 1 / 3600, "device": "cpu (test)"} for m, p in generic.items()])
    status = {m: "done" if (results["method"] == m).any() else "not run" for m in methods.METHODS}
    return study.StudyResults("tiny", results, pretrain, status, {})


def test_findings_follow_the_numbers():
    found = {f.number: f for f in compute_findings(_synthetic())}
    assert found[1].status == HOLDS
    assert found[3].status == HOLDS and found[3].numbers["generic_ppl"]["llm"] == 50.0
    assert found[4].status == HOLDS  # gains 6 then 2 points, shrinking
    assert found[5].status == HOLDS, found[5].detail
    assert found[5].numbers["total_cost"]["slm-hn"]["break_even_domains"] == 1
    assert found[6].status == HOLDS
    assert found[7].status == HOLDS and found[7].numbers["slm-mix"]["spearman"] < 0
    assert found[8].status == HOLDS, found[8].numbers
    for f in found.values():
        assert f.status in (HOLDS, FAILS, NOT_MEASURED) and f.line().startswith(f"{f.number}.")

    flipped = {f.number: f for f in compute_findings(_synthetic(mix_gain=(1.0, 3.0),
                                                                generic={"llm": 80.0, "slm-mix": 60.0,
                                                                         "slm-hn": 65.0, "slm": 70.0}))}
    assert flipped[3].status == FAILS and flipped[4].status == FAILS


def test_break_even_compares_costs_at_equal_perplexity():
    from lab.analysis.findings import _break_even

    own = pd.DataFrame({"pretrain_flops": [0.0, 0.0], "specialize_flops": [1e12, 1e11], "ppl_after": [50.0, 90.0]})
    rival = pd.DataFrame({"pretrain_flops": [1e13], "specialize_flops": [1e10], "ppl_after": [50.0]})
    assert _break_even(own, rival, 50.0) == 11  # 1e13 + n * 1e10 <= n * 1e12 from n = 10.1
    assert _break_even(own, rival, 90.0) == 112  # own reaches 90 for 1e11 a domain: from n = 111.1
    assert _break_even(own, rival, 40.0) is None


def test_missing_methods_are_not_measured():
    s = _synthetic(with_is=False)
    found = {f.number: f for f in compute_findings(s)}
    assert found[5].status == NOT_MEASURED and found[5].missing == ["slm-is"]
    assert found[8].status == NOT_MEASURED
    s.results = s.results[s.results["method"] != "slm-hn"]
    s.pretrain = s.pretrain[s.pretrain["method"] != "slm-hn"]
    found = {f.number: f for f in compute_findings(s)}
    assert found[3].status == NOT_MEASURED and "slm-hn" in found[3].missing
    assert found[4].status == NOT_MEASURED
    assert found[7].status == HOLDS  # the mixture alone is enough to test it


def test_macro_points_and_table8():
    s = _synthetic()
    points = study.macro_points(s.results)
    slm = points[(points.method == "slm") & (points.set_tokens == 2_000)].sort_values("pretrain_flops")
    assert slm["ppl_after"].tolist() == pytest.approx([70.0, 60.0])
    mix = points[(points.method == "slm-mix") & (points.set_tokens == 2_000)].iloc[0]
    assert mix["ppl_after"] == pytest.approx(math.exp(np.mean(np.log([54, 54, 60, 60]))))
    assert slm["pretrain_hours"].tolist() == pytest.approx([0.25 / 3600, 1 / 3600])
    assert set(points["device"]) == {"cpu (test)"}
    t8 = table8(points, s.pretrain)
    assert list(t8.columns) == ["steps", "generic", "before", "after 2,000", "after 16,000"]
    assert t8.loc[(2.5e11, "slm"), "after 2,000"] == pytest.approx(70.0)
    assert t8.loc[(1e12, "slm"), ["steps", "generic", "before", "after 2,000", "after 16,000"]].tolist() == \
        pytest.approx([1000, 70.0, 100.0, 60.0, 40.0])
    assert t8.loc[(2.5e11, "slm"), "before"] == pytest.approx(150.0)
    assert math.isnan(t8.loc[(2.5e11, "slm"), "generic"])  # one pretraining checkpoint: never extrapolated
    for c in (2.5e11, 1e12):  # flat: no pretraining
        assert t8.loc[(c, "slm-is"), "after 2,000"] == pytest.approx(52.0)
    assert math.isnan(t8.loc[(2.5e11, "slm-d"), "after 2,000"])  # its pretraining includes the teacher's
    hours = table8(points, s.pretrain, cost="hours")
    assert hours.index.names[0] == "pretraining cost (device-hours)"
    assert hours.loc[(1 / 3600, "llm"), "after 16,000"] == pytest.approx(25.0)


def test_finding_3_also_reads_the_measured_seconds():
    from lab.analysis.findings import _at_equal_seconds

    rows = []
    for m, secs, ppls in (("slm", (10, 20), (100, 70)), ("llm", (15, 60), (90, 45)),
                          ("slm-mix", (12, 24), (95, 60)), ("slm-hn", (13, 26), (97, 65))):
        rows += [{"method": m, "seconds": s, "generic_ppl": p, "device": "cpu (test)"} for s, p in zip(secs, ppls)]
    pre = pd.DataFrame(rows)
    timed = _at_equal_seconds(pre, ["llm", "slm-mix", "slm-hn", "slm"])
    assert timed["seconds"] == 20 and timed["device"] == "cpu (test)"
    assert timed["generic_ppl"]["slm"] == 70
    assert 45 < timed["generic_ppl"]["llm"] < 90  # the LLM has not reached its budget by then
    # An LLM that uses its FLOPs faster finishes its equal-FLOPs budget first (the default scale):
    # every method is then read at the LLM's time, the SLM before its largest budget.
    faster = pre.copy()
    faster.loc[faster["method"] == "llm", "seconds"] = [5, 15]
    timed = _at_equal_seconds(faster, ["llm", "slm-mix", "slm-hn", "slm"])
    assert timed["seconds"] == 15 and timed["generic_ppl"]["llm"] == 45 and 70 < timed["generic_ppl"]["slm"] < 100
    pre.loc[pre["method"] == "llm", "device"] = "cuda (another)"
    assert _at_equal_seconds(pre, ["llm", "slm"]) is None  # seconds of two devices do not compare


def test_finding_3_is_checked_again_for_each_seed(monkeypatch):
    from lab.analysis import findings

    # Seed 1 swaps SLM-mix and SLM-hn, as a noisy pair would.
    final = {0: {"llm": 20, "slm-mix": 25, "slm-hn": 28, "slm": 32}, 1: {"llm": 20, "slm-mix": 29, "slm-hn": 27, "slm": 33}}
    asked = []

    def pretrain(method, scale, *, seed, progress):
        asked.append((method, seed))
        return [{"pretrain_flops": 1.0, "valid_loss": math.log(2 * final[seed][method])},
                {"pretrain_flops": 2.0, "valid_loss": math.log(final[seed][method])}]

    monkeypatch.setattr(findings.lab_methods, "pretrain", pretrain)
    by_seed = findings.generic_order_by_seed("tiny", "0, 1")
    assert sorted(asked) == sorted((m, s) for m in findings.GENERIC_ORDER for s in (0, 1))
    assert by_seed.loc[0, "paper_order"] and not by_seed.loc[1, "paper_order"]
    assert by_seed.loc[1, "order"] == "llm < slm-hn < slm-mix < slm"
    assert by_seed.loc[1, "slm-hn"] == pytest.approx(27)
    published = findings.seed_metrics(by_seed)
    assert published["1"]["paper_order"] is False and published["0"]["generic_ppl"]["slm"] == 32
    assert findings.generic_order_by_seed("tiny", "").empty
