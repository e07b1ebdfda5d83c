"""Reading a study back: its rows from the results store, through the manifest.

Notebooks 07 and 08, the findings and the budget explorer need this alone: they train nothing.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..data.corpus import corpus_dir
from ..errors import LabError
from ..methods import METHODS
from ..methods.store import ResultRow, load_results
from ..scales import SCALES
from ..training.evaluate import macro_perplexity
from .run import read_manifest

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
    """One row per pretraining checkpoint: method, fraction, pretrain_flops, pretrain_tokens, valid_loss, generic_ppl,
    the optimizer steps and the measured seconds (and `pretrain_hours`) of the run up to it on its device (the
    paper's cost axis is device time)."""
    methods: dict[str, str]
    """Method -> "done", "partial: ...", "failed: ...", "incomplete ..." or "not run"."""
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
        """Per method: its status and how many results it has (failed methods say why)."""
        counts = self.results.groupby("method").size() if len(self.results) else pd.Series(dtype=int)
        return pd.DataFrame([{"method": m, "status": s, "results": int(counts.get(m, 0))}
                             for m, s in self.methods.items()]).set_index("method")


RESULT_COLUMNS = tuple(c for c in ResultRow.REPORTED if c not in ("scale", "seed", "cached")) + \
    ("fraction", "budget", "pretrain_seconds", "pretrain_device")
"""A study table's columns: the rows' reported fields (`seconds` is the specialization's measured time), the
step's budget share and FLOPs, and the measured seconds of the pretraining the row started from."""


def _pretraining(manifest: dict):
    """`lookup(method, flops)`: (measured seconds of `method`'s pretraining run up to its checkpoint of
    `flops` FLOPs, its device); (NaN, None) when the study has no such checkpoint."""
    runs = {m: [(r["pretrain_flops"], r.get("seconds"), r.get("device")) for r in rows]
            for m, rows in manifest.get("pretrain", {}).items()}

    def lookup(method: str, flops: float) -> tuple[float, str | None]:
        for f, s, device in runs.get(method, ()):
            if s is not None and math.isclose(f, flops, rel_tol=1e-3):
                return float(s), device
        return math.nan, None

    return lookup


def _row_pretraining(row: dict, extra: dict, lookup) -> dict:
    """The measured pretraining behind a row: its method's (the model it needs), or for SLM-d its student's
    plus its teacher's."""
    if extra.get("teacher_pretrain_flops") is not None:
        parts = [lookup("slm", extra["student_pretrain_flops"]), lookup("llm", extra["teacher_pretrain_flops"])]
    elif row.get("pretrain_flops"):
        method = METHODS[row["method"]]
        parts = [lookup(method.needs[0] if method.needs else row["method"], row["pretrain_flops"])]
    else:
        parts = []
    return {"pretrain_seconds": sum(s for s, _ in parts),
            "pretrain_device": "; ".join(sorted({d for _, d in parts if d})) or None}


def load_study(scale: str) -> StudyResults:
    """The study's rows from the results store (`lab.methods.store.load_results`), and each registered
    method's status ("not run" for one the study has not reached)."""
    manifest = read_manifest(scale)
    steps = {s["cache_key"]: s for s in manifest["steps"].values()  # methods since unregistered are left out
             if s.get("status") == "done" and s.get("phase") == "specialize" and s["method"] in METHODS}
    store = load_results(scale) if steps else pd.DataFrame(columns=["cache_key", "extra"])
    store = store[store["cache_key"].isin(list(steps))]
    rows = []
    lookup = _pretraining(manifest)
    for r in store.to_dict("records"):
        s = steps[r["cache_key"]]
        extra = r["extra"] or {}
        rows.append({**{c: r.get(c) for c in RESULT_COLUMNS}, "fraction": s["fraction"], "budget": s["budget"],
                     **_row_pretraining(r, extra, lookup),
                     **{f: extra.get(f) for f in EXTRA_FIELDS}})
    results = pd.DataFrame(rows, columns=list(RESULT_COLUMNS) + list(EXTRA_FIELDS))
    if len(results):
        results["set_tokens"] = results["set_tokens"].astype(int)
    results["pretrain_hours"] = results["pretrain_seconds"].astype(float) / 3600
    results["specialize_hours"] = results["seconds"].astype(float) / 3600
    pre = []
    for method, ckpts in manifest.get("pretrain", {}).items():
        top = max(r["pretrain_flops"] for r in ckpts)
        for r in ckpts:
            loss = r.get("valid_loss")
            pre.append({"method": method, "fraction": r["pretrain_flops"] / top, "pretrain_flops": r["pretrain_flops"],
                        "pretrain_tokens": r["pretrain_tokens"], "valid_loss": loss,
                        "generic_ppl": math.exp(loss) if loss is not None else np.nan,
                        "seconds": r.get("seconds"), "device": r.get("device"), "steps": r.get("steps")})
    pretrain = pd.DataFrame(pre, columns=["method", "fraction", "pretrain_flops", "pretrain_tokens", "valid_loss",
                                          "generic_ppl", "seconds", "device", "steps"])
    pretrain["pretrain_hours"] = pretrain["seconds"].astype(float) / 3600
    status = {}
    for m in METHODS:
        s = manifest.get("methods", {}).get(m)
        if s is None or s["status"] == "unavailable":  # manifests of studies that skipped unwritten methods
            status[m] = "not run"
        elif s["status"] == "running":
            status[m] = "incomplete (the study is running or was stopped: run it again to finish)"
        else:
            status[m] = s["status"] + (f": {s['reason']}" if s.get("reason") else "")
    return StudyResults(scale, results, pretrain, status, manifest.get("plan", {}))


def macro_points(results: pd.DataFrame) -> pd.DataFrame:
    """One point per (method, set size, budget share): the macro-average over domains (exp of the mean
    log-perplexity) before and after specialization, the mean specialization FLOPs per domain, the
    pretraining and inference FLOPs; the same costs in measured device-hours (`pretrain_hours`,
    `specialize_hours`: means over the domains) and the devices they were measured on. Points missing some
    of the set size's domains are dropped, so that every macro-average is over the same domains."""
    cols = ["method", "set_tokens", "fraction", "pretrain_flops", "specialize_flops", "inference_flops_per_token",
            "ppl_before", "ppl_after", "n_domains", "pretrain_hours", "specialize_hours", "device"]
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
                        "ppl_before": macro_perplexity(g["ppl_before"]),
                        "ppl_after": macro_perplexity(g["ppl_after"]), "n_domains": len(g),
                        "pretrain_hours": float(g["pretrain_hours"].mean()),
                        "specialize_hours": float(g["specialize_hours"].mean()),
                        "device": "; ".join(devices(g["device"], g["pretrain_device"]))})
    return pd.DataFrame(out, columns=cols).sort_values(["method", "set_tokens", "pretrain_flops"], ignore_index=True)


def devices(*columns: pd.Series) -> list[str]:
    """The devices named in `columns` (cells may list several, "; "-separated), sorted."""
    return sorted({d for c in columns for cell in c.dropna() for d in str(cell).split("; ") if d})


# A scale with results is the one a reader ran: the largest first, since tiny is the smoke test.
PREFERENCE = ("paper", "default", "tiny")


def has_corpus(scale: str) -> bool:
    return (corpus_dir(scale) / "manifest.json").exists()


def has_study(scale: str) -> bool:
    """Whether the scale's study has finished at least one specialization step (what notebooks 07 and 08 read)."""
    return any(s.get("status") == "done" and s.get("phase") == "specialize"
               for s in read_manifest(scale)["steps"].values())


def find_scale(scale: str = "", needs: str = "study") -> str:
    """The scale a notebook works at: `scale` when given (papermill passes it), else `$LAB_SCALE`, else
    the largest scale that has what the notebook reads, a study with results (`needs="study"`,
    notebooks 07 and 08) or a built corpus (`needs="corpus"`, 00-06). When none has, the error says
    what each scale has and what to run."""
    if needs not in ("study", "corpus"):
        raise ValueError(f"needs={needs!r}: 'study' or 'corpus'")
    if scale:
        if scale not in SCALES:
            raise LabError(f"scale={scale!r} is not a scale: choose one of {', '.join(SCALES)} "
                           "(or leave it empty to use the scale that has results)")
        return scale
    chosen = os.environ.get("LAB_SCALE", "")
    if chosen:
        if chosen not in SCALES:
            raise LabError(f"LAB_SCALE={chosen!r} is not a scale: set it to one of {', '.join(SCALES)}, "
                           "or unset it to use the scale that has results")
        return chosen
    has = has_study if needs == "study" else has_corpus
    for s in PREFERENCE:
        if has(s):
            return s
    state = "; ".join(f"{s}: " + ("study results" if has_study(s) else "corpus built, no study results"
                                  if has_corpus(s) else "nothing built") for s in SCALES)
    built = next((s for s in PREFERENCE if has_corpus(s)), None)
    todo = (f"`python -m lab study --scale {built}`" if needs == "study" and built else
            "`python -m lab data build --scale tiny` then `python -m lab study --scale tiny`" if needs == "study"
            else "`python -m lab data build --scale tiny`")
    raise LabError(f"no scale has {'study results' if needs == 'study' else 'a built corpus'} yet ({state}): run "
                   f"{todo}, or name a scale in the notebook's parameters cell or in LAB_SCALE")
