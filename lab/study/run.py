"""Running a study: the manifest, the time model, the dry run and the runner.

    python -m lab study --scale S [--methods ...] [--domains ...] [--set-sizes ...] [--dry-run]

Resuming. Every step is a cached run (`lab.methods.store.cached_run`, checkpoints on
disk), so a killed study started again skips what is done and continues the
pretraining run that was interrupted. The study also keeps a manifest,
`<scale dir>/study/manifest.json`, naming the result row of each finished step:
notebooks 07 and 08 read the study's rows from the results store through it
(`lab.study.results`). Several studies may run on one scale at once (one
process per domain on a GPU machine): each merges only its own entries into
the manifest, under a lock beside it (`update_manifest`), so none loses another's.

Failures. A step that fails is reported; a bug (anything but a `LabError`)
skips the method's remaining steps and those of the methods that need its
pretraining; the rest of the study goes on.

Time. Each step is priced before it runs (its method's `price`: a fine-tuning
at its step cap, so an upper bound), and the estimate of the time left converts
the FLOPs still to run at the seconds per FLOP measured so far for that kind of
step (method and phase), from earlier studies in the manifest or, before any
measurement, at the method's quiet-machine prior (`Method.seconds_per_flop`).
"""
from __future__ import annotations

import fcntl
import json
import math
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from tqdm.auto import tqdm

from .. import atomic
from ..errors import LabError
from ..methods import METHODS
from ..methods.base import Method, Step, fraction_label
from ..methods.store import load_results
from ..paths import scale_dir
from ..progress import hidden
from ..scales import Scale
from ..training.train import train_config
from .plan import Plan, make_plan

# -- the manifest -----------------------------------------------------------------

def manifest_path(scale: str) -> Path:
    return scale_dir(scale) / "study" / "manifest.json"


def read_manifest(scale: str) -> dict:
    path = manifest_path(scale)
    if not path.exists():
        return {"scale": str(scale), "steps": {}, "pretrain": {}, "methods": {}, "plan": {}}
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise LabError(f"{path} is damaged ({e}); delete it and run `python -m lab study --scale {scale}` "
                       "with the same options again: its steps are cached, so it only writes the manifest "
                       "anew") from None


def update_manifest(scale: str, changes: dict[str, dict]) -> dict:
    """Merge `changes` (section -> entries: "steps", "pretrain", "methods", "plan") into the
    manifest on disk and return the merged manifest. The lock makes the read, merge and
    write of one process whole, so studies side by side each keep the other's entries."""
    path = manifest_path(scale)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        manifest = read_manifest(scale)
        for section, entries in changes.items():
            manifest.setdefault(section, {}).update(entries)
        atomic.write_json(path, manifest)
    return manifest


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
        return METHODS.get(kind.split("/")[0], Method).seconds_per_flop

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
    skipped: int = 0
    seconds: float = 0.0
    methods: dict[str, str] = field(default_factory=dict)
    """Method -> "done", "failed: ..." or "partial: ..."."""

    @property
    def ok(self) -> bool:
        return not self.failed


def run_study(scale: str | Scale, methods_: Sequence[str] | None = None, domains: Sequence[str] | None = None,
              set_sizes: Sequence[int] | None = None, *, curve_sets: Sequence[int] | None = None,
              is_sets: Sequence[int] | None = None, fractions: Sequence[float] | None = None, seed: int = 0,
              dry_run: bool = False, progress: bool = True, log: Callable[[str], None] = tqdm.write,
              **options) -> StudyReport:
    """Run (or, with `dry_run`, only price) every step of the study; see `make_plan` for the arguments.

    Prints one line per step and an estimate of the time left; returns what happened.
    Cached steps cost nothing, so running it again resumes a killed study."""
    plan = make_plan(scale, methods_, domains, set_sizes, curve_sets=curve_sets, is_sets=is_sets,
                     fractions=fractions, seed=seed, **options)
    scale = plan.scale
    manifest = read_manifest(scale)
    rates = Rates.from_manifest(manifest)
    report = StudyReport(scale.name)
    if dry_run:
        for line in describe_plan(plan, manifest, rates):
            log(line)
        return report

    manifest = update_manifest(scale, {
        "plan": {"methods": plan.methods, "domains": plan.domains, "set_sizes": plan.set_sizes,
                 "curve_sets": plan.curve_sets, "is_sets": plan.is_sets, "fractions": plan.fractions,
                 "seed": seed, "options": plan.options},
        "methods": {m: {"status": "running"} for m in plan.methods}})

    failed_methods: dict[str, str] = {}
    t_start = time.perf_counter()
    n = len(plan.steps)
    # tqdm's own ETA assumes steps of equal length; the lab's (priced per step) is the postfix.
    bar = tqdm(total=n, desc=f"study ({scale})", disable=hidden(progress),
               bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} steps [{elapsed}{postfix}]")
    for i, step in enumerate(plan.steps, 1):
        blocked = failed_methods.get(step.method) or next(
            (f"needs {p}, which failed" for p in METHODS[step.method].needs if p in failed_methods
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
        except Exception as e:  # a broken method must not stop the others' steps
            error = f"{type(e).__name__}: {e}"
            report.failed[step.id] = error
            if not isinstance(e, LabError):  # a bug: the method's other steps would fail alike
                failed_methods[step.method] = error
            log(f"[{i}/{n}] {step.describe()}: FAILED: {error}")
            if not isinstance(e, LabError):
                log("".join(traceback.format_exception(e)[-3:]).rstrip())
            manifest = update_manifest(scale, {"steps": {step.id: {**_step_fields(step), "status": "failed",
                                                                   "error": error}}})
            bar.update()
            continue
        changes = {"pretrain": {step.method: entry.pop("rows")}} if step.phase == "pretrain" else {}
        cached = entry["cached"]
        prev = manifest["steps"].get(step.id, {})
        # A cached step keeps the entry of the run that computed it: its measured time feeds the estimates.
        keep = cached and prev.get("status") == "done" and prev.get("cache_key") == entry.get("cache_key")
        manifest = update_manifest(scale, {**changes, "steps": {step.id: prev if keep else entry}})
        if cached:
            report.cached += 1
        else:
            report.done += 1
            rates.observe(step.rate_key, entry["seconds"], step.flops)
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
    statuses = {}
    for m in plan.methods:
        if m in failed_methods:
            status = {"status": "failed", "reason": failed_methods[m]}
        else:
            errors = [e for sid, e in report.failed.items() if sid.startswith(f"{m}|")]
            status = {"status": "partial", "reason": f"{len(errors)} step(s) failed: {errors[0]}"} if errors \
                else {"status": "done"}
        statuses[m] = status
        report.methods[m] = status["status"] + (f": {status['reason']}" if "reason" in status else "")
    update_manifest(scale, {"methods": statuses})
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
        rows = METHODS[step.method].pretrain(plan.scale, seed=plan.seed, progress=False, **dict(step.options))
        # Cached if every checkpoint was on disk before the step began.
        cached = all((Path(r["checkpoint"]) / "meta.json").stat().st_mtime < started for r in rows)
        last = max(rows, key=lambda r: r["pretrain_flops"])
        loss = last.get("valid_loss")
        summary = f"{len(rows)} checkpoints, largest {last['pretrain_flops']:.3g} FLOPs" + \
            (f", generic perplexity {math.exp(loss):.1f}" if loss is not None else "")
        keep = ("checkpoint", "pretrain_flops", "pretrain_tokens", "valid_loss", "seconds", "device", "experts")
        return {**_step_fields(step), "status": "done", "cached": cached, "seconds": time.perf_counter() - t0,
                "summary": summary, "rows": [{k: r[k] for k in keep if k in r} for r in rows]}
    options = dict(step.options)
    method = METHODS[step.method]
    pretrain_flops = None if method.from_scratch else step.budget
    row = method.specialize(step.domain, step.set_tokens, plan.scale, seed=plan.seed,
                            pretrain_flops=pretrain_flops, progress=False, **options)
    summary = f"perplexity {row['ppl_before']:.1f} -> {row['ppl_after']:.1f}"
    return {**_step_fields(step), "status": "done", "cached": bool(row["cached"]),
            "seconds": time.perf_counter() - t0, "summary": summary, "cache_key": row["cache_key"],
            "row_id": row["id"]}


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _pretrained_in_store(method: str, scale: Scale) -> bool:
    """Whether the results store holds a generic row of `method` at every checkpoint budget (a notebook
    or an earlier command trained it): the dry run then prices its pretraining at nothing."""
    store = load_results(scale)
    if store.empty:
        return False
    tc = train_config(METHODS[method].kind, scale)
    have = store.loc[(store["method"] == method) & (store["domain"] == "generic"), "pretrain_flops"].to_numpy()
    return all(np.any(np.abs(have / b - 1) < 0.02) for b in tc.checkpoint_flops)


def describe_plan(plan: Plan, manifest: dict, rates: Rates) -> list[str]:
    """The dry run's lines: the steps grouped by (method, set size, budget) over domains, each
    with planned FLOPs and estimated time, then the totals per method and overall."""
    done = {sid for sid, s in manifest.get("steps", {}).items() if s.get("status") == "done"}
    done |= {s.id for s in plan.steps if s.phase == "pretrain" and _pretrained_in_store(s.method, plan.scale)}
    lines = [f"study plan ({plan.scale}): {len(plan.methods)} methods, "
             f"{len(plan.domains)} domains, set sizes {', '.join(f'{n:,}' for n in plan.set_sizes)}; every "
             f"checkpoint ({', '.join(map(fraction_label, plan.fractions))} of the budget) for sets "
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
                                                             f", {'spec. budget' if method == 'slm-is' else 'checkpoint'} {fraction_label(f)}")
        lines.append(f"{label:<58} {len(steps):>5} {len(todo):>6} {flops:>9.3g} {_duration(secs):>8}")
    lines.append("per method:")
    for method, (n, todo, flops, secs) in totals.items():
        lines.append(f"  {method:<12} {n:>4} steps, {todo:>4} to run, {flops:9.3g} FLOPs, about {_duration(secs)}")
    all_secs = sum(t[3] for t in totals.values())
    lines.append(f"total: {len(plan.steps)} steps, {sum(t[1] for t in totals.values())} to run, "
                 f"{sum(t[2] for t in totals.values()):.3g} FLOPs, about {_duration(all_secs)} "
                 "(fine-tunings priced at their step cap: early stopping makes them shorter)")
    return lines
