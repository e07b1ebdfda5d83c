"""The budget study: every method, from every pretraining budget, on every domain and set size.

    python -m lab study --scale S [--methods ...] [--domains ...] [--set-sizes ...] [--dry-run]

One study is a list of *steps*, each one cached call into the method registry
(`lab.methods`):

- a **pretraining** step per method with a generic model of its own (slm, llm,
  slm-mix, slm-hn): one run writes a checkpoint at each share of the budget;
- a **specialization** step per (method, domain, set size, budget): the method
  fine-tunes from the checkpoint nearest that pretraining budget (SLM-is, which
  has no pretraining, trains on resampled generic text for that specialization
  budget instead).

Which budgets. Specializing every checkpoint for every set size would multiply
the fine-tunings by five, so a plan specializes from *every* checkpoint for the
`curve_sets` only (default: the smallest set, where pretraining matters most),
and from the *largest* budget for every set. SLM-is pays a whole training run
per domain and set, so it runs on `is_sets` only (default: the curve sets);
its curve over specialization budgets costs fine-tunings only, because one
resampled run writes a checkpoint at every share of its budget.

Resuming. Every step is a cached run (`lab.results.cached_run`, checkpoints on
disk), so a killed study started again skips what is done and continues the
pretraining run that was interrupted. The study also keeps a manifest,
`<scale dir>/study/manifest.json`, naming the result row of each finished step:
notebooks 07 and 08 read the study's rows from the results store through it.

Methods that are not there yet. A method whose module does not import
(`ModuleNotFoundError`, or any `ImportError`) is reported as unavailable and skipped; the next run
of the study picks it up. A step that fails for another reason is reported,
and the method's remaining steps are skipped; the rest of the study goes on.

Time. Each step is priced before it runs (analytic FLOPs: a fine-tuning at its
step cap, so an upper bound), and the estimate of the time left converts the
FLOPs still to run at the seconds per FLOP measured so far for that kind of
step (method and phase), from earlier studies in the manifest or, before any
measurement, at a quiet-machine prior (`PRIOR_SECONDS_PER_FLOP`).
"""
from __future__ import annotations

import importlib
import json
import math
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .. import atomic, methods
from ..nn import costs
from ..data.corpus import load_corpus
from ..errors import LabError
from ..training.finetune import finetune_config
from ..nn.model import model_config, train_config
from ..paths import scale_dir
from ..progress import hidden
from ..methods.store import load_results
from ..scales import get_scale

ORDER = ("slm-generic", "slm", "slm-nopt", "slm-d", "llm", "slm-mix", "slm-hn", "slm-is")
"""Run order. SLM-d comes before the LLM: it fine-tunes the teacher keeping its weights,
a row the LLM's own step then reuses (the other way round fine-tunes the teacher twice)."""
PRETRAINED = ("slm", "llm", "slm-mix", "slm-hn")
"""Methods with a generic model of their own: one pretraining step each."""
NEEDS = {"slm-generic": ("slm",), "slm": ("slm",), "llm": ("llm",), "slm-d": ("slm", "llm"),
         "slm-mix": ("slm-mix",), "slm-hn": ("slm-hn",)}
"""The pretraining runs each method's specialization starts from."""
PRETRAIN_OPTIONS = {"slm-mix": ("experts",), "slm-hn": ("experts",)}
SPECIALIZE_OPTIONS = {"slm-mix": ("experts", "selection"), "slm-hn": ("experts", "instantiate"),
                      "slm-is": ("k", "spec_flops"), "slm-d": ("alpha", "temperature")}
"""Which of the command line's method options each method takes (the rest keep their defaults)."""

PRIOR_SECONDS_PER_FLOP = {"slm": 1.7e-11, "llm": 9.4e-12, "slm-hn": 2.8e-11}
"""Seconds per FLOP before anything is measured, from a quiet 2-core CPU at `default`
(DESIGN section 5: the SLM trains 25k tokens/s at 2.36 MFLOPs a token, the LLM 11.4k at
9.3 MFLOPs; the hyper-network's step takes up to 1.7x the SLM's time for 1.04x its FLOPs,
`benchmarks/bench_hypernet.py`). Other methods train SLM-shaped models: the "slm" rate."""

NO_CURVE = ("slm-d",)
"""Methods specialized from the largest budget only: distillation's curve over student budgets is
notebook 06's, and each of its points pays a teacher forward pass on every training token."""
# Per scale: the set sizes specialized from every checkpoint (indices into the scale's
# sizes) and the checkpoint shares they use. At tiny the tests keep three of the five.
CURVES = {"tiny": ((0,), (1 / 16, 1 / 4, 1.0)), "default": ((0,), None), "paper": ((0,), None)}


# -- the plan ------------------------------------------------------------------

@dataclass(frozen=True)
class Step:
    method: str
    phase: str
    """"pretrain" or "specialize"."""
    domain: str | None = None
    set_tokens: int | None = None
    fraction: float | None = None
    """Share of the largest budget: the pretraining checkpoint, or SLM-is's specialization budget."""
    budget: float | None = None
    """That budget in FLOPs (the checkpoint's `pretrain_flops`, or SLM-is's `spec_flops`)."""
    flops: float = 0.0
    """Planned FLOPs: an upper bound (fine-tuning at its step cap), 0 when another step pays them."""
    options: tuple = ()
    """(name, value) pairs passed to the method."""

    @property
    def id(self) -> str:
        opts = ",".join(f"{k}={v}" for k, v in self.options)
        return "|".join(str(x) for x in (self.method, self.phase, self.domain, self.set_tokens,
                                          _fraction_label(self.fraction), opts))

    @property
    def rate_key(self) -> str:
        return f"{self.method}/{self.phase}"

    def describe(self) -> str:
        if self.phase == "pretrain":
            return f"{self.method} pretraining"
        where = "spec. budget" if self.method == "slm-is" else "checkpoint"
        budget = "" if self.fraction is None else f", {where} {_fraction_label(self.fraction)}"
        return f"{self.method} on {self.domain} ({self.set_tokens:,} tokens{budget})"


def _fraction_label(f: float | None) -> str:
    if f is None:
        return "-"
    if f >= 1:
        return "1"
    return f"1/{round(1 / f)}" if abs(1 / f - round(1 / f)) < 1e-6 else f"{f:.3g}"


@dataclass
class Plan:
    scale: str
    methods: list[str]
    domains: list[str]
    set_sizes: list[int]
    curve_sets: list[int]
    is_sets: list[int]
    fractions: list[float]
    seed: int
    options: dict[str, dict]
    steps: list[Step]
    unavailable: dict[str, str] = field(default_factory=dict)
    """Methods left out because their module does not import: method -> reason."""


def available(method: str) -> str | None:
    """None if the method's module imports, else why not (a method still being written)."""
    module = methods.METHODS[method]
    try:
        importlib.import_module(f"lab.methods.{module}")
    except ImportError as e:  # ModuleNotFoundError, or a name its half-written helpers lack yet
        return f"lab/methods/{module}.py does not import yet ({e})"
    return None


def _options_for(method: str, options: dict, which: dict) -> dict:
    return {k: options[k] for k in which.get(method, ()) if options.get(k) is not None}


def make_plan(scale: str, methods_: Sequence[str] | None = None, domains: Sequence[str] | None = None,
              set_sizes: Sequence[int] | None = None, *, curve_sets: Sequence[int] | None = None,
              is_sets: Sequence[int] | None = None, fractions: Sequence[float] | None = None, seed: int = 0,
              **options) -> Plan:
    """The steps of a study, in run order, each priced in FLOPs.

    Defaults: every registered method, every domain of the scale's corpus, its
    three set sizes; `curve_sets` (specialized from every checkpoint share in
    `fractions`) the scale's smallest set; `is_sets` (where SLM-is trains) the
    curve sets. `options` are method options (experts, selection, instantiate,
    k, spec_flops, alpha, temperature), each given to the methods that take it.
    """
    known = {o for opts in SPECIALIZE_OPTIONS.values() for o in opts}
    unknown = sorted(set(options) - known)
    if unknown:
        raise LabError(f"unknown method option(s) {', '.join(unknown)}: the study passes on {', '.join(sorted(known))}")
    data = get_scale(scale)
    chosen = list(methods_) if methods_ else list(methods.METHODS)
    bad = [m for m in chosen if m not in methods.METHODS]
    if bad:
        raise LabError(f"unknown method(s) {', '.join(bad)}: choose among {', '.join(methods.METHODS)}")
    chosen = [m for m in ORDER if m in chosen] + [m for m in chosen if m not in ORDER]
    corpus = load_corpus(scale)
    domains = list(domains) if domains else list(corpus.domains)
    for d in domains:
        if d not in corpus.domains:
            raise LabError(f"unknown domain {d!r}: choose among {', '.join(corpus.domains)}")
    set_sizes = sorted(int(n) for n in (set_sizes or data.set_tokens))
    default_curve_idx, default_fractions = CURVES.get(scale, ((0,), None))
    curve_sets = sorted(int(n) for n in curve_sets) if curve_sets is not None else \
        [set_sizes[i] for i in default_curve_idx if i < len(set_sizes)]
    is_sets = sorted(int(n) for n in is_sets) if is_sets is not None else list(curve_sets)
    for name, sizes in (("curve_sets", curve_sets), ("is_sets", is_sets)):
        if not set(sizes) <= set(set_sizes):
            raise LabError(f"{name}={sizes}: each must be one of the study's set sizes {set_sizes}")
    tc = train_config("slm", scale)
    fractions = sorted(float(f) for f in (fractions or default_fractions or tc.checkpoint_fractions))
    if fractions[-1] != 1.0 or any(not any(math.isclose(f, c) for c in tc.checkpoint_fractions) for f in fractions):
        raise LabError(f"fractions={fractions}: choose among the checkpoint shares "
                       f"{', '.join(map(_fraction_label, tc.checkpoint_fractions))} of the pretraining budget, "
                       "1 included")

    unavailable = {m: why for m in chosen if (why := available(m))}
    steps: list[Step] = []
    pretrained = [p for p in PRETRAINED if any(p in NEEDS.get(m, ()) for m in chosen if m not in unavailable)]
    for p in pretrained:
        steps.append(Step(p, "pretrain", flops=_pretrain_flops(p, scale),
                          options=tuple(sorted(_options_for(p, options, PRETRAIN_OPTIONS).items()))))

    largest, curves = [], []
    teacher_tuned = set()  # (domain, set) where SLM-d already fine-tunes the LLM at its largest budget
    for m in chosen:
        if m in unavailable:
            continue
        opts = _options_for(m, options, SPECIALIZE_OPTIONS)
        if m == "slm-nopt":
            largest += [Step(m, "specialize", d, n, options=tuple(opts.items()),
                             flops=_finetune_flops("slm", scale, n, from_scratch=True))
                        for n in set_sizes for d in domains]
            continue
        if m == "slm-is":
            spec = float(opts.pop("spec_flops", tc.pretrain_flops))
            for n in is_sets:
                for f in sorted(fractions, reverse=True):
                    # The full budget trains the run (a checkpoint at every share); the rest only fine-tune.
                    flops = _finetune_flops("slm", scale, n) + (_run_flops(spec, tc) if f == 1.0 else 0.0)
                    step = [Step(m, "specialize", d, n, f, f * spec, flops,
                                 tuple(sorted({**opts, "spec_flops": f * spec}.items()))) for d in domains]
                    (largest if f == 1.0 else curves).extend(step)
            continue
        for n in set_sizes:
            for f in sorted(fractions if n in curve_sets and m not in NO_CURVE else [1.0], reverse=True):
                for d in domains:
                    flops = _specialize_flops(m, scale, n, opts)
                    if m == "slm-d":
                        teacher_tuned.add((d, n))
                    if m == "llm" and f == 1.0 and (d, n) in teacher_tuned:
                        flops = 2 * data.test_tokens * costs.forward_flops_per_token(model_config("llm", scale))
                    step = Step(m, "specialize", d, n, f, f * tc.pretrain_flops, flops, tuple(sorted(opts.items())))
                    (largest if f == 1.0 else curves).append(step)
    # The largest budget first: the comparisons at equal pretraining come early, the curves after.
    steps += largest + curves
    return Plan(scale=scale, methods=chosen, domains=domains, set_sizes=set_sizes, curve_sets=curve_sets,
                is_sets=is_sets, fractions=fractions, seed=seed, options=dict(options), steps=steps,
                unavailable=unavailable)


def _run_flops(budget: float, tc) -> float:
    """FLOPs of one pretraining run with a cooldown branch at each checkpoint share (`lab.train.pretrain`):
    the main run up to the largest branch's fork, plus every branch's cooldown."""
    return budget * (1 - tc.cooldown + tc.cooldown * sum(tc.checkpoint_fractions))


def _pretrain_flops(method: str, scale: str) -> float:
    kind = "llm" if method == "llm" else "slm"
    tc = train_config(kind, scale)
    return _run_flops(tc.pretrain_flops, tc)


def _finetune_flops(kind: str, scale: str, set_tokens: int, *, from_scratch: bool = False) -> float:
    """One fine-tuning at its step cap, with its validation and the test scoring before and after."""
    cfg, data = model_config(kind, scale), get_scale(scale)
    ft = finetune_config(kind, scale, set_tokens)
    steps = ft.max_steps * (2 if from_scratch else 1)
    train = steps * ft.batch_size * cfg.context * costs.train_flops_per_token(cfg)
    evals = (steps // ft.eval_every + 1) * ft.eval_tokens + 2 * data.test_tokens
    return train + evals * costs.forward_flops_per_token(cfg)


def _specialize_flops(method: str, scale: str, set_tokens: int, options: dict) -> float:
    slm = model_config("slm", scale)
    if method == "slm-generic":
        return get_scale(scale).test_tokens * costs.forward_flops_per_token(slm)
    if method == "llm":
        return _finetune_flops("llm", scale, set_tokens)
    base = _finetune_flops("slm", scale, set_tokens)
    if method == "slm-d":
        # The teacher's fine-tuning and its forward pass on every student training token.
        llm = model_config("llm", scale)
        ft = finetune_config("slm", scale, set_tokens)
        teacher = ft.max_steps * ft.batch_size * slm.context * costs.forward_flops_per_token(llm)
        return base + _finetune_flops("llm", scale, set_tokens) + teacher
    if method == "slm-mix":
        k = options.get("experts") or 4
        selection = options.get("selection", "top")
        if selection == "all":
            return k * base
        if selection == "loss":
            return base + k * set_tokens * costs.forward_flops_per_token(slm)
    return base


# -- the manifest -----------------------------------------------------------------

def manifest_path(scale: str) -> Path:
    return scale_dir(scale) / "study" / "manifest.json"


def read_manifest(scale: str) -> dict:
    path = manifest_path(scale)
    if not path.exists():
        return {"scale": scale, "steps": {}, "pretrain": {}, "methods": {}, "plan": {}}
    return json.loads(path.read_text())


# -- time estimates ---------------------------------------------------------------

class Rates:
    """Seconds per planned FLOP for each kind of step ("method/phase"), measured as steps run.

    A kind never measured borrows the rate of its phase measured on other methods
    (scaled by the ratio of their priors), and before any measurement the prior."""

    def __init__(self, measured: dict[str, tuple[float, float]] | None = None):
        self.measured = dict(measured or {})  # kind -> (seconds, planned flops)

    @classmethod
    def from_manifest(cls, manifest: dict) -> "Rates":
        rates = cls()
        for s in manifest.get("steps", {}).values():
            if s.get("status") == "done" and not s.get("cached") and s.get("planned_flops"):
                rates.observe(f"{s['method']}/{s['phase']}", s["seconds"], s["planned_flops"])
        return rates

    def observe(self, kind: str, seconds: float, flops: float) -> None:
        if flops > 0:
            s, f = self.measured.get(kind, (0.0, 0.0))
            self.measured[kind] = (s + seconds, f + flops)

    @staticmethod
    def prior(kind: str) -> float:
        method = kind.split("/")[0]
        return PRIOR_SECONDS_PER_FLOP.get(method, PRIOR_SECONDS_PER_FLOP["slm"])

    def rate(self, kind: str) -> tuple[float, str]:
        """(seconds per FLOP, where it comes from: "measured", "phase" or "prior")."""
        if kind in self.measured:
            s, f = self.measured[kind]
            return s / f, "measured"
        phase = kind.split("/")[1]
        # Scoring only (slm-generic) runs at another speed than training: it does not speak for the others.
        same = [(s, f, k) for k, (s, f) in self.measured.items()
                if k.endswith(f"/{phase}") and not k.startswith("slm-generic/")]
        if same:
            # Other methods' measured speed relative to their priors, applied to this one's prior.
            ratio = sum(s for s, _, _ in same) / sum(f * self.prior(k) for _, f, k in same)
            return ratio * self.prior(kind), "phase"
        return self.prior(kind), "prior"

    def seconds(self, step: Step) -> float:
        return step.flops * self.rate(step.rate_key)[0]


# -- running ----------------------------------------------------------------------

@dataclass
class StudyReport:
    scale: str
    done: int = 0
    cached: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    """Step id -> error."""
    unavailable: dict[str, str] = field(default_factory=dict)
    skipped: int = 0
    seconds: float = 0.0
    methods: dict[str, str] = field(default_factory=dict)
    """Method -> "done", "unavailable: ...", "failed: ..." or "partial: ..."."""

    @property
    def ok(self) -> bool:
        return not self.failed


def run_study(scale: str, methods_: Sequence[str] | None = None, domains: Sequence[str] | None = None,
              set_sizes: Sequence[int] | None = None, *, curve_sets: Sequence[int] | None = None,
              is_sets: Sequence[int] | None = None, fractions: Sequence[float] | None = None, seed: int = 0,
              dry_run: bool = False, progress: bool = True, log: Callable[[str], None] = tqdm.write,
              **options) -> StudyReport:
    """Run (or, with `dry_run`, only price) every step of the study; see `make_plan` for the arguments.

    Prints one line per step and an estimate of the time left; returns what happened.
    Cached steps cost nothing, so running it again resumes a killed study."""
    plan = make_plan(scale, methods_, domains, set_sizes, curve_sets=curve_sets, is_sets=is_sets,
                     fractions=fractions, seed=seed, **options)
    manifest = read_manifest(scale)
    rates = Rates.from_manifest(manifest)
    report = StudyReport(scale, unavailable=dict(plan.unavailable))
    for m, why in plan.unavailable.items():
        log(f"{m}: UNAVAILABLE, skipped ({why}); run the study again once it lands")
        report.methods[m] = f"unavailable: {why}"
    if dry_run:
        for line in describe_plan(plan, manifest, rates):
            log(line)
        return report

    manifest["plan"] = {"methods": plan.methods, "domains": plan.domains, "set_sizes": plan.set_sizes,
                        "curve_sets": plan.curve_sets, "is_sets": plan.is_sets, "fractions": plan.fractions,
                        "seed": seed, "options": plan.options}
    for m in plan.methods:
        manifest["methods"][m] = {"status": "unavailable", "reason": plan.unavailable[m]} \
            if m in plan.unavailable else {"status": "running"}
    _save(scale, manifest)

    failed_methods: dict[str, str] = {}
    t_start = time.perf_counter()
    n = len(plan.steps)
    bar = tqdm(total=n, desc=f"study ({scale})", disable=hidden(progress), unit="step")
    for i, step in enumerate(plan.steps, 1):
        blocked = failed_methods.get(step.method) or next(
            (f"needs {p}, which failed" for p in NEEDS.get(step.method, ()) if p in failed_methods
             and step.phase == "specialize"), None)
        if blocked:
            report.skipped += 1
            bar.update()
            continue
        try:
            entry = _run_step(step, plan)
        except KeyboardInterrupt:
            bar.close()
            raise
        except ImportError as e:
            failed_methods[step.method] = f"unavailable ({e})"
            report.methods[step.method] = f"unavailable: {e}"
            manifest["methods"][step.method] = {"status": "unavailable", "reason": str(e)}
            log(f"[{i}/{n}] {step.method}: UNAVAILABLE ({e}); its remaining steps are skipped")
            _save(scale, manifest)
            bar.update()
            continue
        except Exception as e:  # a broken method must not stop the others' steps
            error = f"{type(e).__name__}: {e}"
            report.failed[step.id] = error
            manifest["steps"][step.id] = {**_step_fields(step), "status": "failed", "error": error}
            if not isinstance(e, LabError):  # a bug: the method's other steps would fail alike
                failed_methods[step.method] = error
            log(f"[{i}/{n}] {step.describe()}: FAILED: {error}")
            if not isinstance(e, LabError):
                log("".join(traceback.format_exception(e)[-3:]).rstrip())
            _save(scale, manifest)
            bar.update()
            continue
        if step.phase == "pretrain":
            manifest["pretrain"][step.method] = entry.pop("rows")
        cached = entry["cached"]
        prev = manifest["steps"].get(step.id, {})
        # A cached step keeps the entry of the run that computed it: its measured time feeds the estimates.
        keep = cached and prev.get("status") == "done" and prev.get("cache_key") == entry.get("cache_key")
        manifest["steps"][step.id] = prev if keep else entry
        if cached:
            report.cached += 1
        else:
            report.done += 1
            rates.observe(step.rate_key, entry["seconds"], step.flops)
        _save(scale, manifest)
        left = sum(rates.seconds(s) for s in plan.steps[i:]
                   if s.method not in failed_methods and manifest["steps"].get(s.id, {}).get("status") != "done")
        elapsed = time.perf_counter() - t_start
        took = "cached" if cached else f"took {_duration(entry['seconds'])}"
        log(f"[{i}/{n}] {step.describe()}: {entry['summary']} ({took}) | elapsed {_duration(elapsed)}, "
            f"about {_duration(left)} left")
        bar.set_postfix_str(f"~{_duration(left)} left")
        bar.update()
    bar.close()

    report.seconds = time.perf_counter() - t_start
    for m in plan.methods:
        if m in plan.unavailable:
            continue
        if m in failed_methods:
            status = {"status": "unavailable" if failed_methods[m].startswith("unavailable") else "failed",
                      "reason": failed_methods[m]}
        else:
            errors = [e for sid, e in report.failed.items() if sid.startswith(f"{m}|")]
            status = {"status": "partial", "reason": f"{len(errors)} step(s) failed: {errors[0]}"} if errors \
                else {"status": "done"}
        manifest["methods"][m] = status
        report.methods[m] = status["status"] + (f": {status['reason']}" if "reason" in status else "")
    _save(scale, manifest)
    log(f"study ({scale}): {report.done} steps run, {report.cached} cached, {len(report.failed)} failed, "
        f"{report.skipped} skipped, in {_duration(report.seconds)}")
    for m, s in report.methods.items():
        log(f"  {m:<12} {s}")
    return report


def _step_fields(step: Step) -> dict:
    return {"method": step.method, "phase": step.phase, "domain": step.domain, "set_tokens": step.set_tokens,
            "fraction": step.fraction, "budget": step.budget, "options": dict(step.options),
            "planned_flops": step.flops}


def _run_step(step: Step, plan: Plan) -> dict:
    t0, started = time.perf_counter(), time.time()
    if step.phase == "pretrain":
        rows = methods.pretrain(step.method, plan.scale, seed=plan.seed, progress=False, **dict(step.options))
        # Cached if every checkpoint was on disk before the step began.
        cached = all((Path(r["checkpoint"]) / "meta.json").stat().st_mtime < started for r in rows)
        last = max(rows, key=lambda r: r["pretrain_flops"])
        loss = last.get("valid_loss")
        summary = f"{len(rows)} checkpoints, largest {last['pretrain_flops']:.3g} FLOPs" + \
            (f", generic perplexity {math.exp(loss):.1f}" if loss is not None else "")
        keep = ("checkpoint", "pretrain_flops", "pretrain_tokens", "valid_loss", "seconds", "experts")
        return {**_step_fields(step), "status": "done", "cached": cached, "seconds": time.perf_counter() - t0,
                "summary": summary, "rows": [{k: r[k] for k in keep if k in r} for r in rows]}
    options = dict(step.options)
    pretrain_flops = None if step.method in ("slm-nopt", "slm-is") else step.budget
    row = methods.specialize(step.method, step.domain, step.set_tokens, plan.scale, seed=plan.seed,
                             pretrain_flops=pretrain_flops, progress=False, **options)
    summary = f"perplexity {row['ppl_before']:.1f} -> {row['ppl_after']:.1f}"
    return {**_step_fields(step), "status": "done", "cached": bool(row["cached"]),
            "seconds": time.perf_counter() - t0, "summary": summary, "cache_key": row["cache_key"],
            "row_id": row["id"]}


def _save(scale: str, manifest: dict) -> None:
    atomic.write_json(manifest_path(scale), manifest)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _pretrained_in_store(method: str, scale: str) -> bool:
    """Whether the results store holds a generic row of `method` at every checkpoint budget (a notebook
    or an earlier command trained it): the dry run then prices its pretraining at nothing."""
    store = load_results(scale)
    if store.empty:
        return False
    tc = train_config("llm" if method == "llm" else "slm", scale)
    have = store.loc[(store["method"] == method) & (store["domain"] == "generic"), "pretrain_flops"].to_numpy()
    return all(np.any(np.abs(have / b - 1) < 0.02) for b in tc.checkpoint_flops)


def describe_plan(plan: Plan, manifest: dict, rates: Rates) -> list[str]:
    """The dry run's lines: the steps grouped by (method, set size, budget) over domains, each
    with planned FLOPs and estimated time, then the totals per method and overall."""
    done = {sid for sid, s in manifest.get("steps", {}).items() if s.get("status") == "done"}
    done |= {s.id for s in plan.steps if s.phase == "pretrain" and _pretrained_in_store(s.method, plan.scale)}
    lines = [f"study plan ({plan.scale}): {len(plan.methods) - len(plan.unavailable)} methods, "
             f"{len(plan.domains)} domains, set sizes {', '.join(f'{n:,}' for n in plan.set_sizes)}; every "
             f"checkpoint ({', '.join(map(_fraction_label, plan.fractions))} of the budget) for sets "
             f"{', '.join(f'{n:,}' for n in plan.curve_sets)}, the largest for the others; SLM-is on sets "
             f"{', '.join(f'{n:,}' for n in plan.is_sets)}",
             "seconds per FLOP: " + ", ".join(
                 f"{k} {r:.2g} ({src})" for k in sorted({s.rate_key for s in plan.steps})
                 for r, src in [rates.rate(k)]),
             f"{'step':<58} {'steps':>5} {'to run':>6} {'FLOPs':>9} {'time':>8}"]
    groups: dict[tuple, list[Step]] = {}
    for s in plan.steps:
        groups.setdefault((s.method, s.phase, s.set_tokens, s.fraction), []).append(s)
    totals: dict[str, list[float]] = {}
    for (method, phase, n, f), steps in groups.items():
        todo = [s for s in steps if s.id not in done]
        flops = sum(s.flops for s in todo)
        secs = sum(rates.seconds(s) for s in todo)
        t = totals.setdefault(method, [0, 0, 0.0, 0.0])
        t[0] += len(steps)
        t[1] += len(todo)
        t[2] += flops
        t[3] += secs
        label = f"{method} pretraining" + (" (in the results store)" if steps[0].id in done else "") \
            if phase == "pretrain" else \
            f"{method} x {len(steps)} domains, set {n:,}" + ("" if f is None else
                                                             f", {'spec. budget' if method == 'slm-is' else 'checkpoint'} {_fraction_label(f)}")
        lines.append(f"{label:<58} {len(steps):>5} {len(todo):>6} {flops:>9.3g} {_duration(secs):>8}")
    lines.append("per method:")
    for method, (n, todo, flops, secs) in totals.items():
        lines.append(f"  {method:<12} {n:>4} steps, {todo:>4} to run, {flops:9.3g} FLOPs, about {_duration(secs)}")
    all_secs = sum(t[3] for t in totals.values())
    lines.append(f"total: {len(plan.steps)} steps, {sum(t[1] for t in totals.values())} to run, "
                 f"{sum(t[2] for t in totals.values()):.3g} FLOPs, about {_duration(all_secs)} "
                 "(fine-tunings priced at their step cap: early stopping makes them shorter)")
    for m, why in plan.unavailable.items():
        lines.append(f"not planned: {m} (unavailable: {why})")
    return lines


# -- reading the study back ----------------------------------------------------------

EXTRA_FIELDS = ("histogram_entropy", "top_share", "domain_entropy_nats", "experts", "k", "selection", "instantiate",
                "alpha", "temperature", "is_flops", "finetune_flops", "student_pretrain_flops",
                "teacher_pretrain_flops", "teacher_specialize_flops", "best_step", "stopped_by")


@dataclass
class StudyResults:
    """What the study measured, read from the results store through the manifest."""
    scale: str
    results: pd.DataFrame
    """One row per specialization step: method, domain, set_tokens, fraction, budget, the
    reported costs and perplexities, and a few method fields (entropy of the domain's histogram, ...)."""
    pretrain: pd.DataFrame
    """One row per pretraining checkpoint: method, fraction, pretrain_flops, pretrain_tokens, valid_loss, generic_ppl."""
    methods: dict[str, str]
    """Method -> "done", "partial: ...", "failed: ...", "unavailable: ..." or "not run"."""
    plan: dict

    @property
    def domains(self) -> list[str]:
        return sorted(self.results["domain"].unique()) if len(self.results) else []

    @property
    def set_sizes(self) -> list[int]:
        return sorted(int(n) for n in self.results["set_tokens"].unique()) if len(self.results) else []

    @property
    def curve_set(self) -> int | None:
        """The set size of the budget curves: the smallest SLM-is ran on, else the smallest."""
        r = self.results
        if not len(r):
            return None
        is_sets = r.loc[r["method"] == "slm-is", "set_tokens"]
        return int(is_sets.min() if len(is_sets) else r["set_tokens"].min())

    def measured(self, method: str) -> bool:
        return len(self.results) > 0 and (self.results["method"] == method).any()

    def status_table(self) -> pd.DataFrame:
        """Per method: its status and how many results it has (unavailable methods say why)."""
        counts = self.results.groupby("method").size() if len(self.results) else pd.Series(dtype=int)
        return pd.DataFrame([{"method": m, "status": s, "results": int(counts.get(m, 0))}
                             for m, s in self.methods.items()]).set_index("method")


RESULT_COLUMNS = ("method", "domain", "set_tokens", "fraction", "budget", "ppl_before", "ppl_after", "pretrain_flops",
                  "specialize_flops", "inference_flops_per_token", "pretrain_tokens", "specialize_tokens", "seconds")


def load_study(scale: str) -> StudyResults:
    """The study's rows from the results store (`lab.results.load_results`), and each method's status:
    a method the study skipped as unavailable whose module now imports says "not run"."""
    manifest = read_manifest(scale)
    steps = {s["cache_key"]: s for s in manifest["steps"].values()  # methods since unregistered are left out
             if s.get("status") == "done" and s.get("phase") == "specialize" and s["method"] in methods.METHODS}
    store = load_results(scale) if steps else pd.DataFrame(columns=["cache_key", "extra"])
    store = store[store["cache_key"].isin(list(steps))]
    rows = []
    for r in store.to_dict("records"):
        s = steps[r["cache_key"]]
        extra = r["extra"] or {}
        rows.append({**{c: r.get(c) for c in RESULT_COLUMNS}, "fraction": s["fraction"], "budget": s["budget"],
                     **{f: extra.get(f) for f in EXTRA_FIELDS}})
    results = pd.DataFrame(rows, columns=list(RESULT_COLUMNS) + list(EXTRA_FIELDS))
    if len(results):
        results["set_tokens"] = results["set_tokens"].astype(int)
    pre = []
    for method, ckpts in manifest.get("pretrain", {}).items():
        top = max(r["pretrain_flops"] for r in ckpts)
        for r in ckpts:
            loss = r.get("valid_loss")
            pre.append({"method": method, "fraction": r["pretrain_flops"] / top, "pretrain_flops": r["pretrain_flops"],
                        "pretrain_tokens": r["pretrain_tokens"], "valid_loss": loss,
                        "generic_ppl": math.exp(loss) if loss is not None else np.nan})
    pretrain = pd.DataFrame(pre, columns=["method", "fraction", "pretrain_flops", "pretrain_tokens", "valid_loss",
                                          "generic_ppl"])
    status = {}
    for m in methods.METHODS:
        s = manifest.get("methods", {}).get(m)
        if s is None:
            why = available(m)
            status[m] = f"unavailable: {why}" if why else "not run"
        elif s["status"] == "unavailable" and available(m) is None:
            status[m] = "not run (its module imports now: run the study again)"
        elif s["status"] == "running":
            status[m] = "incomplete (the study is running or was stopped: run it again to finish)"
        else:
            status[m] = s["status"] + (f": {s['reason']}" if s.get("reason") else "")
    return StudyResults(scale, results, pretrain, status, manifest.get("plan", {}))


def macro_points(results: pd.DataFrame) -> pd.DataFrame:
    """One point per (method, set size, budget share): the macro-average over domains (exp of the mean
    log-perplexity) before and after specialization, the mean specialization FLOPs per domain, the
    pretraining and inference FLOPs. Points missing some of the set size's domains are dropped,
    so that every macro-average is over the same domains."""
    cols = ["method", "set_tokens", "fraction", "pretrain_flops", "specialize_flops", "inference_flops_per_token",
            "ppl_before", "ppl_after", "n_domains"]
    if not len(results):
        return pd.DataFrame(columns=cols)
    out = []
    for n, at_n in results.groupby("set_tokens"):
        domains = set(at_n["domain"])
        for (method, fraction), g in at_n.groupby(["method", at_n["fraction"].fillna(1.0)]):
            if set(g["domain"]) != domains:
                continue
            out.append({"method": method, "set_tokens": int(n), "fraction": float(fraction),
                        "pretrain_flops": float(g["pretrain_flops"].mean()),
                        "specialize_flops": float(g["specialize_flops"].mean()),
                        "inference_flops_per_token": float(g["inference_flops_per_token"].max()),
                        "ppl_before": float(np.exp(np.log(g["ppl_before"]).mean())),
                        "ppl_after": float(np.exp(np.log(g["ppl_after"]).mean())), "n_domains": len(g)})
    return pd.DataFrame(out, columns=cols).sort_values(["method", "set_tokens", "pretrain_flops"], ignore_index=True)
