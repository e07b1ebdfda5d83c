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

Parallel. With `workers` or `address` the steps go to a Ray cluster
(`lab.study.workers`), each as soon as the steps it builds on are finished; the
study's process alone writes the manifest, through the same `Ledger` as the
sequential loop, as the workers' outcomes come back.

Failures. A step that fails is reported; a bug (anything but a `LabError`)
skips the method's remaining steps and those of the methods that need its
pretraining; the rest of the study goes on.

Time. Each step is priced before it runs (its method's `price`: a fine-tuning
at its step cap, so an upper bound), and the estimate of the time left converts
the FLOPs still to run at the seconds per FLOP measured so far for that kind of
step (method and phase), from earlier studies in the manifest or, before any
measurement, at the method's quiet-machine prior (`Method.seconds_per_flop`);
on a cluster, shared among the steps that run at once.
"""
from __future__ import annotations

import fcntl
import json
import math
import shlex
import shutil
import subprocess
import sys
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
              workers: int | None = None, address: str | None = None, pretrain_launcher: str | None = None,
              **options) -> StudyReport:
    """Run (or, with `dry_run`, only price) every step of the study; see `make_plan` for the arguments.

    Prints one line per step and an estimate of the time left; returns what happened.
    Cached steps cost nothing, so running it again resumes a killed study.

    `workers` (a local Ray cluster of that many) or `address` (an existing cluster) runs
    independent steps in parallel (`lab.study.workers`); without either, one after another
    in this process. `pretrain_launcher` (e.g. "torchrun --nproc_per_node=8") runs the SLM's
    and the LLM's pretraining steps as `<launcher> -m lab pretrain ...`."""
    plan = make_plan(scale, methods_, domains, set_sizes, curve_sets=curve_sets, is_sets=is_sets,
                     fractions=fractions, seed=seed, **options)
    scale = plan.scale
    manifest = read_manifest(scale)
    rates = Rates.from_manifest(manifest)
    if dry_run:
        for line in describe_plan(plan, manifest, rates, slots=workers or 1):
            log(line)
        return StudyReport(scale.name)
    launcher = launcher_argv(pretrain_launcher)
    parallel = workers is not None or address is not None
    if parallel:
        from .workers import connect  # Ray only where asked for: the sequential study never imports it

        cluster = connect(workers, address)
    # tqdm's own ETA assumes steps of equal length; the lab's (priced per step) is the postfix.
    bar = tqdm(total=len(plan.steps), desc=f"study ({scale})", disable=hidden(progress),
               bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} steps [{elapsed}{postfix}]")
    try:
        manifest = update_manifest(scale, {
            "plan": {"methods": plan.methods, "domains": plan.domains, "set_sizes": plan.set_sizes,
                     "curve_sets": plan.curve_sets, "is_sets": plan.is_sets, "fractions": plan.fractions,
                     "seed": seed, "options": plan.options},
            "methods": {m: {"status": "running"} for m in plan.methods}})
        if parallel:
            ledger = Ledger(plan, manifest, rates, log, bar, slots=cluster.slots)
            cluster.run(plan, ledger, launcher)
        else:
            ledger = Ledger(plan, manifest, rates, log, bar)
            for step in plan.steps:
                if ledger.blocked(step):
                    ledger.skip(step)
                else:
                    ledger.record(step, attempt(step, plan, launcher))
    finally:
        bar.close()
        if parallel:
            cluster.close()
    return ledger.close()


def shared_seconds(steps: Sequence[float], slots: int) -> float:
    """The time `steps` (seconds each) take on `slots` workers: their sum shared among them, but never
    less than the longest, which one worker runs alone."""
    return max(sum(steps) / slots, max(steps, default=0.0))


class Ledger:
    """A study's bookkeeping as its steps finish, in whatever order and whoever ran them: the
    manifest, the report, the measured rates, the estimate of the time left, the log line and
    the bar. Only the study's own process writes through it (Ray workers return their outcome)."""

    def __init__(self, plan: Plan, manifest: dict, rates: Rates, log: Callable[[str], None], bar, slots: int = 1):
        self.plan, self.manifest, self.rates, self.log, self.bar = plan, manifest, rates, log, bar
        self.slots = slots
        """Steps that run at once: the time left is the work left shared among them."""
        self.report = StudyReport(plan.scale.name)
        self.failed_methods: dict[str, str] = {}
        self.finished: set[str] = set()
        self.t_start = time.perf_counter()

    def blocked(self, step: Step) -> str | None:
        """Why `step` is not worth running: its method, or the pretraining it needs, hit a bug."""
        return self.failed_methods.get(step.method) or next(
            (f"needs {p}, which failed" for p in METHODS[step.method].needs if p in self.failed_methods
             and step.phase == "specialize"), None)

    def skip(self, step: Step) -> None:
        self.report.skipped += 1
        self._count(step)

    def record(self, step: Step, outcome: dict) -> None:
        """Book what `attempt` returned for `step`."""
        if "error" in outcome:
            self._failed(step, outcome)
            return
        entry = dict(outcome["entry"])
        changes = {"pretrain": {step.method: entry.pop("rows")}} if step.phase == "pretrain" else {}
        cached = entry["cached"]
        prev = self.manifest["steps"].get(step.id, {})
        # A cached step keeps the entry of the run that computed it: its measured time feeds the estimates.
        keep = cached and prev.get("status") == "done" and prev.get("cache_key") == entry.get("cache_key")
        self.manifest = update_manifest(self.plan.scale, {**changes, "steps": {step.id: prev if keep else entry}})
        if cached:
            self.report.cached += 1
        else:
            self.report.done += 1
            self.rates.observe(step.rate_key, entry["seconds"], step.flops)
        i = self._count(step)
        left = self.seconds_left()
        took = "cached" if cached else f"took {_duration(entry['seconds'])}"
        self.log(f"[{i}/{len(self.plan.steps)}] {step.describe()}: {entry['summary']} ({took}) | elapsed "
                 f"{_duration(time.perf_counter() - self.t_start)}, about {_duration(left)} left")
        self.bar.set_postfix_str(f"~{_duration(left)} left")

    def _failed(self, step: Step, outcome: dict) -> None:
        error = outcome["error"]
        self.report.failed[step.id] = error
        if outcome["bug"]:  # the method's other steps would fail alike
            self.failed_methods[step.method] = error
        i = self._count(step)
        self.log(f"[{i}/{len(self.plan.steps)}] {step.describe()}: FAILED: {error}")
        if outcome.get("trace"):
            self.log(outcome["trace"])
        self.manifest = update_manifest(self.plan.scale, {"steps": {step.id: {**_step_fields(step), "status": "failed",
                                                                              "error": error}}})

    def _count(self, step: Step) -> int:
        self.finished.add(step.id)
        self.bar.update()
        return len(self.finished)

    def seconds_left(self) -> float:
        """The estimated time of the steps not finished (those running counted whole), shared among
        the slots, but never less than the longest of them."""
        return shared_seconds([self.rates.seconds(s) for s in self.plan.steps if s.id not in self.finished
                               and s.method not in self.failed_methods
                               and self.manifest["steps"].get(s.id, {}).get("status") != "done"], self.slots)

    def close(self) -> StudyReport:
        """The report, with each method's status, also written to the manifest and the log."""
        report = self.report
        report.seconds = time.perf_counter() - self.t_start
        statuses = {}
        for m in self.plan.methods:
            if m in self.failed_methods:
                status = {"status": "failed", "reason": self.failed_methods[m]}
            else:
                errors = [e for sid, e in report.failed.items() if sid.startswith(f"{m}|")]
                status = {"status": "partial", "reason": f"{len(errors)} step(s) failed: {errors[0]}"} if errors \
                    else {"status": "done"}
            statuses[m] = status
            report.methods[m] = status["status"] + (f": {status['reason']}" if "reason" in status else "")
        update_manifest(self.plan.scale, {"methods": statuses})
        self.log(f"study ({self.plan.scale}): {report.done} steps run, {report.cached} cached, "
                 f"{len(report.failed)} failed, {report.skipped} skipped, in {_duration(report.seconds)}")
        for m, s in report.methods.items():
            self.log(f"  {m:<12} {s}")
        return report


def _step_fields(step: Step) -> dict:
    return {"method": step.method, "phase": step.phase, "domain": step.domain, "set_tokens": step.set_tokens,
            "fraction": step.fraction, "budget": step.budget, "options": dict(step.options),
            "planned_flops": step.flops}


def attempt(step: Step, plan: Plan, launcher: list[str] | None = None) -> dict:
    """Run one step and say how it went, as plain data (a Ray worker sends it back to the study):
    {"entry": manifest entry} or {"error": ..., "bug": not a user mistake, "trace": its last lines}."""
    try:
        return {"entry": _run_step(step, plan, launcher)}
    except Exception as e:  # a broken method must not stop the others' steps
        bug = not isinstance(e, LabError)
        return {"error": f"{type(e).__name__}: {e}", "bug": bug,
                "trace": "".join(traceback.format_exception(e)[-3:]).rstrip() if bug else None}


def launcher_argv(launcher: str | None) -> list[str] | None:
    """The pretraining launcher as argv, its program found on PATH or beside this Python (the
    virtual environment's torchrun, when the lab runs as .venv/bin/python -m lab)."""
    if launcher is None:
        return None
    argv = shlex.split(launcher)
    program = argv and (shutil.which(argv[0]) or shutil.which(argv[0], path=str(Path(sys.executable).parent)))
    if not program:
        raise LabError(f"--pretrain-launcher {launcher!r}: {argv[0] if argv else 'an empty command'} is not a "
                       "program on PATH; give e.g. \"torchrun --nproc_per_node=8\" (torchrun comes with torch)")
    return [program, *argv[1:]]


def launched(step: Step, launcher: list[str] | None) -> bool:
    """Whether `step` runs through the pretraining launcher. Only a plain transformer trains across
    processes: the pretraining of a method that is its own recipe (`Method.kind`: slm, llm)."""
    return bool(launcher) and step.phase == "pretrain" and METHODS[step.method].kind == step.method


def _launch_pretraining(step: Step, plan: Plan, launcher: list[str]) -> None:
    """`<launcher> -m lab pretrain ...` for `step`: it writes the checkpoints and rows the step then reads."""
    argv = [*launcher, "-m", "lab", "pretrain", "--method", step.method, "--scale", plan.scale.name,
            "--seed", str(plan.seed)]
    for name, value in step.options:
        argv += ["--" + name.replace("_", "-"), str(value)]
    done = subprocess.run(argv)
    if done.returncode:
        raise LabError(f"`{shlex.join(argv)}` exited with status {done.returncode} (its output above says why); "
                       "run it alone to see it, then run the study again")


def _run_step(step: Step, plan: Plan, launcher: list[str] | None = None) -> dict:
    t0, started = time.perf_counter(), time.time()
    if step.phase == "pretrain":
        if launched(step, launcher):
            _launch_pretraining(step, plan, launcher)
        rows = METHODS[step.method].pretrain(plan.scale, seed=plan.seed, progress=False, **dict(step.options))
        # Cached if every checkpoint was on disk before the step began.
        cached = all((Path(r["checkpoint"]) / "meta.json").stat().st_mtime < started for r in rows)
        last = max(rows, key=lambda r: r["pretrain_flops"])
        loss = last.get("valid_loss")
        summary = f"{len(rows)} checkpoints, largest {last['pretrain_flops']:.3g} FLOPs" + \
            (f", generic perplexity {math.exp(loss):.1f}" if loss is not None else "")
        keep = ("checkpoint", "pretrain_flops", "pretrain_tokens", "valid_loss", "seconds", "device", "experts", "steps")
        return {**_step_fields(step), "status": "done", "cached": cached, "seconds": time.perf_counter() - t0,
                "started": started, "summary": summary, "rows": [{k: r[k] for k in keep if k in r} for r in rows]}
    options = dict(step.options)
    method = METHODS[step.method]
    pretrain_flops = None if method.from_scratch else step.budget
    row = method.specialize(step.domain, step.set_tokens, plan.scale, seed=plan.seed,
                            pretrain_flops=pretrain_flops, progress=False, **options)
    summary = f"perplexity {row['ppl_before']:.1f} -> {row['ppl_after']:.1f}"
    return {**_step_fields(step), "status": "done", "cached": bool(row["cached"]),
            "seconds": time.perf_counter() - t0, "started": started, "summary": summary, "cache_key": row["cache_key"],
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


def _measured_seconds(step: Step, manifest: dict) -> float:
    """The seconds a done step took when it was computed. A pretraining the study found already
    trained (by `lab pretrain` or a notebook) took no time in the study; its largest checkpoint's
    recorded training time stands in (evaluations and the other checkpoints' cooldowns excluded)."""
    entry = manifest.get("steps", {}).get(step.id, {})
    seconds = float(entry.get("seconds") or 0.0)
    if step.phase == "pretrain" and entry.get("cached"):
        rows = manifest.get("pretrain", {}).get(step.method, [])
        seconds = max([seconds] + [float(r.get("seconds") or 0.0) for r in rows])
    return seconds


def _wall_seconds(entries: Sequence[dict]) -> float:
    """The wall time during which at least one of these steps ran: steps that overlapped on workers
    count once, and the pauses of a killed and resumed study not at all. Entries written before
    steps recorded when they started are left out."""
    spans = sorted((e["started"], e["started"] + e["seconds"]) for e in entries if e.get("started"))
    total, end = 0.0, -math.inf
    for a, b in spans:
        total += max(0.0, b - max(a, end))
        end = max(end, b)
    return total


def describe_plan(plan: Plan, manifest: dict, rates: Rates, slots: int = 1) -> list[str]:
    """The dry run's lines: the steps grouped by (method, set size, budget) over domains, each
    with planned FLOPs and estimated time of the steps left and the step time of those done,
    then the totals per method and overall. With `slots` workers the total time left is shared
    among them; the step time of the steps done sums the workers' seconds, and the wall time beside
    it is what they took."""
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
             f"{'step':<58} {'steps':>5} {'to run':>6} {'FLOPs':>9} {'time':>8} {'step time':>9}"]
    groups: dict[tuple, list[Step]] = {}
    for s in plan.steps:
        groups.setdefault((s.method, s.phase, s.set_tokens, s.fraction), []).append(s)
    totals: dict[str, list[float]] = {}
    left: list[float] = []
    for (method, phase, n, f), steps in groups.items():
        todo = [s for s in steps if s.id not in done]
        flops = sum(s.flops for s in todo)
        todo_secs = [rates.seconds(s) for s in todo]
        left += todo_secs
        secs = sum(todo_secs)
        measured = sum(_measured_seconds(s, manifest) for s in steps if s.id in done)
        t = totals.setdefault(method, [0, 0, 0.0, 0.0, 0.0])
        t[0] += len(steps)
        t[1] += len(todo)
        t[2] += flops
        t[3] += secs
        t[4] += measured
        label = f"{method} pretraining" + (" (in the results store)" if steps[0].id in done else "") \
            if phase == "pretrain" else \
            f"{method} x {len(steps)} domains, set {n:,}" + ("" if f is None else
                                                             f", {'spec. budget' if method == 'slm-is' else 'checkpoint'} {fraction_label(f)}")
        lines.append(f"{label:<58} {len(steps):>5} {len(todo):>6} {flops:>9.3g} {_duration(secs):>8} "
                     f"{_duration(measured) if len(todo) < len(steps) else '-':>9}")
    lines.append("per method:")
    for method, (n, todo, flops, secs, measured) in totals.items():
        lines.append(f"  {method:<12} {n:>4} steps, {todo:>4} to run, {flops:9.3g} FLOPs, about {_duration(secs)}"
                     f"; {n - todo} done in {_duration(measured)}")
    all_secs = shared_seconds(left, slots)
    wall = _wall_seconds([manifest["steps"][s.id] for s in plan.steps if s.id in manifest.get("steps", {})
                          and s.id in done])
    lines.append(f"total: {len(plan.steps)} steps, {sum(t[1] for t in totals.values())} to run, "
                 f"{sum(t[2] for t in totals.values()):.3g} FLOPs, about {_duration(all_secs)}"
                 f"{f' on {slots} workers' if slots > 1 else ''} "
                 "(fine-tunings priced at their step cap: early stopping makes them shorter); done so far "
                 f"in {_duration(sum(t[4] for t in totals.values()))} of step time"
                 + (f", {_duration(wall)} of wall time" if wall else ""))
    return lines
