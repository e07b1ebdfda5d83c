"""Notebook 06 (SLM-d, the paper's Figure 5): every run the notebook plots, their macro-average over
domains, and finding 6 in numbers (distillation against the SLM at equal and at total pretraining cost)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .. import methods
from ..errors import LabError
from ..progress import hidden
from ..training.distill import DEFAULT_ALPHA, DEFAULT_TEMPERATURE, check_options
from ..training.evaluate import macro_perplexity


def study(scale: str, domains: Sequence[str], set_sizes: Sequence[int], *, seed: int = 0,
          alpha: float = DEFAULT_ALPHA, temperature: float = DEFAULT_TEMPERATURE,
          compare_with: Sequence[str] = (), budgets: int = 0,
          progress: bool = True) -> tuple[pd.DataFrame, list[str]]:
    """Every run that notebook 06 plots, one row each, through the cached method registry:

    - SLM and LLM fine-tuned from each of their pretraining checkpoints;
    - SLM-d from each SLM checkpoint with the most pretrained teacher (`student_sweep`);
    - SLM-d from the most pretrained SLM with each LLM checkpoint as teacher (`teacher_sweep`);
    - any `compare_with` method (e.g. "slm-mix") from each of its checkpoints. One that is
      not implemented yet or fails with a `LabError` is left out; the second value returned
      lists those, with the reason.

    `budgets` keeps only that many of each model's largest checkpoints (0: all of them).

    Columns: method, domain, set_tokens, student_flops (pretraining of the deployed model),
    teacher_flops (SLM-d only, else 0), pretrain_flops (all pretraining), specialize_flops,
    the same pretraining costs in measured device-hours (student_hours, teacher_hours,
    pretrain_hours), ppl_before, ppl_after, student_sweep, teacher_sweep, cached, seconds.
    """
    check_options(alpha, temperature)
    if budgets < 0:
        raise LabError(f"budgets={budgets}: give how many of the largest checkpoints to use, or 0 for all")
    # [-0:] is the whole list: budgets=0 keeps every checkpoint.
    hours = {m: _hours(m, scale, seed, progress) for m in ("slm", "llm")}
    student_budgets = sorted(hours["slm"])[-budgets:]
    teacher_budgets = sorted(hours["llm"])[-budgets:]
    jobs = []
    for s in student_budgets:
        jobs.append(("slm-d", {"pretrain_flops": s, "teacher_flops": teacher_budgets[-1]}))
    for t in teacher_budgets[:-1]:
        jobs.append(("slm-d", {"pretrain_flops": student_budgets[-1], "teacher_flops": t}))
    # The LLM rows last: SLM-d fine-tuned these teachers (keeping their weights), so they are cached by then.
    jobs += [("slm", {"pretrain_flops": s}) for s in student_budgets]
    jobs += [("llm", {"pretrain_flops": t}) for t in teacher_budgets]
    skipped = []
    for method in compare_with:
        try:
            hours[method] = _hours(method, scale, seed, progress)
            jobs += [(method, {"pretrain_flops": b}) for b in sorted(hours[method])[-budgets:]]
        except (ModuleNotFoundError, LabError) as e:
            skipped.append(f"{method}: {e}")
    rows = []
    work = [(d, n, m, opts) for d in domains for n in set_sizes for m, opts in jobs]
    for domain, n, method, opts in tqdm(work, desc="distillation study", disable=hidden(progress)):
        options = {"alpha": alpha, "temperature": temperature, **opts} if method == "slm-d" else opts
        try:
            row = methods.specialize(method, domain, n, scale, seed=seed, progress=False, **options)
        except LabError as e:
            if method not in compare_with:  # a mistake in the study's own arguments
                raise
            skipped.append(f"{method} on {domain} ({n:,} tokens): {e}")
            continue
        rows.append(_study_row(row, opts, student_budgets[-1], teacher_budgets[-1], hours))
    return pd.DataFrame(rows), skipped


def _hours(method: str, scale: str, seed: int, progress: bool) -> dict[float, float]:
    """Each pretraining checkpoint's FLOPs -> the measured device-hours of its run up to it."""
    return {r["pretrain_flops"]: r["seconds"] / 3600
            for r in methods.pretrain(method, scale, seed=seed, progress=progress)}


def _study_row(row: dict, opts: dict, top_student: float, top_teacher: float,
               hours: dict[str, dict[float, float]]) -> dict:
    extra = row["extra"]
    distilled = row["method"] == "slm-d"
    student = extra["student_pretrain_flops"] if distilled else row["pretrain_flops"]
    teacher = extra["teacher_pretrain_flops"] if distilled else 0.0
    student_hours = hours["slm" if distilled else row["method"]][student]
    teacher_hours = hours["llm"][teacher] if distilled else 0.0
    return {
        "method": row["method"], "domain": row["domain"], "set_tokens": row["set_tokens"],
        "student_flops": student, "teacher_flops": teacher,
        "pretrain_flops": row["pretrain_flops"], "specialize_flops": row["specialize_flops"],
        "student_hours": student_hours, "teacher_hours": teacher_hours,
        "pretrain_hours": student_hours + teacher_hours,
        "ppl_before": row["ppl_before"], "ppl_after": row["ppl_after"],
        "student_sweep": distilled and opts["teacher_flops"] == top_teacher,
        "teacher_sweep": distilled and opts["pretrain_flops"] == top_student,
        "cached": row["cached"], "seconds": row["seconds"], "device": row["device"],
    }


def macro(table: pd.DataFrame) -> pd.DataFrame:
    """The paper's average over domains: per method, set size and budgets, the exp of the
    mean log-perplexity (every domain weighs the same) and the mean costs."""
    keys = ["method", "set_tokens", "student_flops", "teacher_flops", "student_sweep", "teacher_sweep"]
    out = table.groupby(keys, as_index=False).agg(
        domains=("domain", "nunique"), pretrain_flops=("pretrain_flops", "mean"),
        student_hours=("student_hours", "mean"), teacher_hours=("teacher_hours", "mean"),
        pretrain_hours=("pretrain_hours", "mean"), device=("device", lambda d: "; ".join(sorted(set(d.dropna())))),
        specialize_flops=("specialize_flops", "mean"), ppl_before=("ppl_before", macro_perplexity),
        ppl_after=("ppl_after", macro_perplexity))
    return out.sort_values(keys[:4]).reset_index(drop=True)


def findings(summary: pd.DataFrame) -> dict:
    """Finding 6 in numbers, per set size, from `macro(...)`: the SLM-d perplexity gain over the SLM
    (positive: distillation wins) for each teacher budget (against the largest SLM) and each student
    budget (against the SLM of that budget), ordered by budget; and for every SLM-d run the best SLM
    whose whole pretraining costs no more than SLM-d's, teacher included (`equal_total_cost`), with
    the share of SLM-d runs that SLM matches or beats."""
    out = {}
    for n, g in summary.groupby("set_tokens"):
        slm = g[g.method == "slm"].set_index("student_flops")["ppl_after"]
        llm = g[g.method == "llm"].set_index("student_flops")["ppl_after"]
        by_teacher = g[(g.method == "slm-d") & g.teacher_sweep].set_index("teacher_flops")["ppl_after"]
        by_student = g[(g.method == "slm-d") & g.student_sweep]
        best_slm = slm.iloc[-1]
        affordable = []
        for r in g[g.method == "slm-d"].itertuples():
            within = slm[slm.index <= r.pretrain_flops]
            affordable.append({"student_flops": float(r.student_flops), "teacher_flops": float(r.teacher_flops),
                               "total_flops": float(r.pretrain_flops), "slm_d": float(r.ppl_after),
                               "slm_flops": float(within.idxmin()), "slm": float(within.min())})
        out[str(int(n))] = {
            "slm": float(best_slm), "llm": float(llm.iloc[-1]), "slm_d": float(by_teacher.iloc[-1]),
            "slm_generic": float(g[g.method == "slm"]["ppl_before"].iloc[-1]),
            "gain_by_teacher": [{"teacher_flops": float(t), "gain": float(best_slm - p)}
                                for t, p in by_teacher.items()],
            "gain_by_student": [{"student_flops": float(r.student_flops),
                                 "gain": float(slm[r.student_flops] - r.ppl_after)} for r in by_student.itertuples()],
            "slm_beats_slm_d_at_equal_total_cost": float(np.mean([a["slm"] <= a["slm_d"] for a in affordable])),
            "equal_total_cost": affordable,
        }
    return out


def findings_table(found: dict) -> pd.DataFrame:
    """The scalar entries of `findings(...)` as a table, one column per set size."""
    return pd.DataFrame({n: {k: v for k, v in f.items() if not isinstance(v, list)} for n, f in found.items()})


def specialization_costs(summary: pd.DataFrame) -> pd.DataFrame:
    """Specialization FLOPs per domain of each method from its largest pretraining budget (SLM-d:
    largest student and teacher), one column per set size."""
    top = summary[summary.student_flops == summary.groupby("method").student_flops.transform("max")]
    top = top[(top.method != "slm-d") | (top.student_sweep & top.teacher_sweep)]
    return top.pivot_table(index="method", columns="set_tokens", values="specialize_flops")


def gains_table(found: dict) -> pd.DataFrame:
    """The per-budget gains of `findings(...)` in one long table: set size, which model's budget
    varies (teacher or student), its pretraining FLOPs, and SLM perplexity minus SLM-d's."""
    rows = [{"set_tokens": int(n), "varies": sweep, "pretrain_flops": g[f"{sweep}_flops"], "gain": g["gain"]}
            for n, f in found.items() for sweep in ("teacher", "student") for g in f[f"gain_by_{sweep}"]]
    return pd.DataFrame(rows)


def metrics(table: pd.DataFrame, skipped: list[str], found: dict, *, scale: str, domains: Sequence[str],
            set_sizes: Sequence[int], alpha: float, temperature: float) -> dict:
    """Notebook 06's metrics file: the study's settings, how many runs it took (and trained now),
    what it left out, and `findings(...)`."""
    return {"scale": scale, "domains": domains, "set_sizes": set_sizes, "alpha": alpha,
            "temperature": temperature, "runs": len(table), "trained_now": int((~table["cached"]).sum()),
            "skipped": skipped, "findings": found}
