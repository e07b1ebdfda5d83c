"""Notebook 05 (SLM-mix): the mixture's generic curves against the SLM's, where it starts to win,
the number-of-experts ablation, the routing tables, and the expert-selection rules compared per domain."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from .. import methods
from ..data.corpus import load_corpus
from ..errors import LabError
from ..methods.common import pick_checkpoint
from ..methods.dense import specialize_checkpoint
from ..methods.mixture import SELECTIONS, n_experts, specialize
from ..scales import get_scale
from ..training.evaluate import macro_perplexity
from ..training.train import train_config
from .params import parse_list


def generic_curves(scale: str, *, experts: int | None = None, with_llm: bool = True, seed: int = 0,
                   progress: bool = True) -> pd.DataFrame:
    """Generic validation perplexity against pretraining FLOPs: SLM, SLM-mix (routed) and,
    if asked, the LLM, all on the same validation windows. Trains what is not cached."""
    k = n_experts(scale, experts)
    runs_ = {"slm": methods.pretrain("slm", scale, seed=seed, progress=progress),
             f"slm-mix ({k} experts)": methods.pretrain("slm-mix", scale, seed=seed, progress=progress, experts=k)}
    if with_llm:
        runs_["llm"] = methods.pretrain("llm", scale, seed=seed, progress=progress)
    rows = [{"method": name, "pretrain_flops": r["pretrain_flops"], "pretrain_tokens": r["pretrain_tokens"],
             "valid_loss": r["valid_loss"], "ppl": math.exp(r["valid_loss"]),
             "pretrain_hours": r["seconds"] / 3600, "device": r["device"]}
            for name, rs in runs_.items() for r in rs]
    return pd.DataFrame(rows).sort_values(["method", "pretrain_flops"], ignore_index=True)


def crossover(curves: pd.DataFrame, mixture: str, reference: str = "slm") -> dict:
    """Where the mixture starts to beat the reference on generic perplexity.

    Budgets are paired in order (both runs checkpoint at the same FLOP fractions).
    `first_win_flops`: the smallest budget from which the mixture is better at every
    larger one (None if it never is); `crossover_flops`: the point between that
    budget and the one before where the perplexity gap, interpolated linearly in
    log FLOPs, is zero (None unless the mixture first loses, then wins).
    """
    a = curves[curves["method"] == mixture].sort_values("pretrain_flops")
    b = curves[curves["method"] == reference].sort_values("pretrain_flops")
    if len(a) != len(b) or len(a) == 0:
        raise LabError(f"{mixture} has {len(a)} budgets and {reference} {len(b)}: they must match")
    flops = np.sqrt(a["pretrain_flops"].to_numpy() * b["pretrain_flops"].to_numpy())
    gap = a["ppl"].to_numpy() - b["ppl"].to_numpy()
    wins = gap < 0
    losing = np.flatnonzero(~wins)
    first = 0 if len(losing) == 0 else int(losing[-1]) + 1
    out = {"first_win_flops": float(flops[first]) if first < len(flops) else None, "crossover_flops": None,
           "gap_ppl": gap.tolist(), "pretrain_flops": flops.tolist()}
    if 0 < first < len(flops):
        x0, x1 = np.log(flops[first - 1]), np.log(flops[first])
        t = gap[first - 1] / (gap[first - 1] - gap[first])
        out["crossover_flops"] = float(np.exp(x0 + t * (x1 - x0)))
    return out


def parse_experts(experts: str | Sequence[int], scale: str) -> list[int]:
    """Expert counts from "4,8,16" or a list; empty means the scale's ablation list."""
    return parse_list(experts, name="experts") or list(get_scale(scale).mixture_ablation)


def _domains(domains: str | Sequence[str], scale: str) -> list[str]:
    """A comma-separated string or a list of domains; empty: the scale's study domains."""
    return parse_list(domains, str) or load_corpus(scale).study_domains


def expert_ablation(scale: str, experts: str | Sequence[int] = "", fraction: float = 0.25,
                    domains: str | Sequence[str] = "", *, set_tokens: int = 0, seed: int = 0,
                    progress: bool = True) -> pd.DataFrame:
    """The mixture against its number of experts at one budget (`fraction` of the SLM's), with the SLM
    at the same budget as the 1-expert reference (the paper's Figure 11): generic perplexity (`ppl`) and
    the domains' macro test perplexity after fine-tuning on `set_tokens` tokens (default: the smallest
    set) as SLM-mix does, top-cluster expert (`domain_ppl_after`)."""
    if not 0 < fraction <= 1:
        raise LabError(f"fraction={fraction}: give a share of the pretraining budget in (0, 1]")
    budget = fraction * train_config("slm", scale).pretrain_flops
    domains = _domains(domains, scale)
    n = set_tokens or min(get_scale(scale).set_tokens)
    slm = pick_checkpoint(methods.pretrain("slm", scale, seed=seed, progress=progress), budget)
    after = [specialize_checkpoint(slm["checkpoint"], "slm", d, n, scale, method="slm", seed=seed,
                                   progress=False)["ppl_after"] for d in domains]
    rows = [{"experts": 1, "method": "slm", "pretrain_flops": slm["pretrain_flops"],
             "tokens_per_expert": slm["pretrain_tokens"], "ppl": math.exp(slm["valid_loss"]),
             "domain_ppl_after": macro_perplexity(after), "set_tokens": n}]
    for k in parse_experts(experts, scale):
        (r,) = methods.pretrain("slm-mix", scale, seed=seed, progress=progress, experts=k, budget_flops=[budget])
        after = [specialize("slm-mix", d, n, scale, seed=seed, progress=False, experts=k, budget_flops=[budget],
                            pretrain_flops=budget)["ppl_after"] for d in domains]
        rows.append({"experts": k, "method": "slm-mix", "pretrain_flops": r["pretrain_flops"],
                     "tokens_per_expert": r["expert_tokens"][0], "ppl": math.exp(r["valid_loss"]),
                     "domain_ppl_after": macro_perplexity(after), "set_tokens": n})
    return pd.DataFrame(rows)


def pretrain_table(rows: list[dict]) -> pd.DataFrame:
    """The mixture's checkpoints: budget, tokens (in all and per expert), routed generic validation."""
    return pd.DataFrame([{"pretrain_flops": r["pretrain_flops"], "pretrain_tokens": r["pretrain_tokens"],
                          "tokens_per_expert": r["expert_tokens"][0], "valid_loss": r["valid_loss"],
                          "valid_ppl": math.exp(r["valid_loss"]), "seconds": r["seconds"]} for r in rows])


def routing_table(row: dict) -> pd.DataFrame:
    """One pretraining checkpoint's routing statistics, one row per expert."""
    k = row["experts"]
    return pd.DataFrame({"expert": range(k), "generic_windows": row["expert_windows"],
                         "tokens_trained": row["expert_tokens"], "epochs": row["expert_epochs"],
                         "valid_tokens": row["expert_valid_tokens"],
                         "valid_ppl": [math.exp(x) if x is not None else None for x in row["expert_valid_loss"]]})


def compare_selection(scale: str, set_tokens: int = 0, domains: str | Sequence[str] = "", *,
                      experts: int | None = None, with_slm: bool = True, seed: int = 0,
                      progress: bool = True) -> pd.DataFrame:
    """The three selection rules on each domain (the paper's Table 5; default: the corpus's
    `study_domains`), and the fine-tuned SLM for reference: one row per (domain, rule). `set_tokens` 0 means the scale's smallest set."""
    set_tokens = set_tokens or min(get_scale(scale).set_tokens)
    rows = []
    for domain in _domains(domains, scale):
        for rule in SELECTIONS:
            r = methods.specialize("slm-mix", domain, set_tokens, scale, seed=seed, progress=progress,
                                   experts=experts, selection=rule)
            x = r["extra"]
            rows.append({"domain": domain, "method": f"slm-mix ({rule})", "selection": rule, "expert": x["expert"],
                         "top_cluster": x["top_cluster"], "top_share": x["top_share"], "histogram": x["histogram"],
                         "ppl_before": r["ppl_before"], "ppl_after": r["ppl_after"],
                         "ppl_before_routed": x["ppl_before_routed"], "specialize_flops": r["specialize_flops"],
                         "selection_flops": x["selection_flops"], "cached": r["cached"]})
        if with_slm:
            r = methods.specialize("slm", domain, set_tokens, scale, seed=seed, progress=progress)
            rows.append({"domain": domain, "method": "slm", "selection": None, "expert": None, "top_cluster": None,
                         "top_share": None, "histogram": None, "ppl_before": r["ppl_before"],
                         "ppl_after": r["ppl_after"], "ppl_before_routed": None, "specialize_flops": r["specialize_flops"],
                         "selection_flops": 0.0, "cached": r["cached"]})
    return pd.DataFrame(rows).astype({"expert": "Int64", "top_cluster": "Int64"})


def selection_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per method (SLM and each rule): macro test perplexity before and after fine-tuning over
    the domains, mean specialization FLOPs, and how often the rule picked the "top" expert."""
    top = table[table["selection"] == "top"].set_index("domain")["expert"]
    rows = []
    for method, g in table.groupby("method", sort=False):
        same = [top.get(d) == e for d, e in zip(g["domain"], g["expert"])] if g["selection"].notna().all() else []
        rows.append({"method": method, "domains": len(g), "macro_ppl_before": macro_perplexity(g["ppl_before"]),
                     "macro_ppl_after": macro_perplexity(g["ppl_after"]),
                     "mean_specialize_flops": g["specialize_flops"].mean(),
                     "same_expert_as_top": float(np.mean(same)) if same else None})
    return pd.DataFrame(rows)


def domain_gains(table: pd.DataFrame) -> pd.DataFrame:
    """Per domain: how concentrated it is on one cluster (top_share) and what SLM-mix ("top")
    gains over the fine-tuned SLM, in perplexity points (positive: the mixture is better).
    The paper's finding 7: domains spread over many clusters gain little or nothing."""
    mix = table[table["selection"] == "top"].set_index("domain")
    out = mix[["top_share", "expert", "ppl_after"]].rename(columns={"ppl_after": "mix_ppl_after"})
    slm = table[table["method"] == "slm"].set_index("domain")["ppl_after"]
    if len(slm):
        out["slm_ppl_after"] = slm
        out["gain"] = out["slm_ppl_after"] - out["mix_ppl_after"]
    return out.sort_values("top_share", ascending=False).reset_index()


def notebook_metrics(rows: list[dict], curves: pd.DataFrame, cross: dict, ablation: pd.DataFrame,
                     selection: pd.DataFrame) -> dict:
    """The small metrics file notebook 05 writes (and its test reads)."""
    def curve(method: str) -> dict:
        c = curves[curves["method"] == method].sort_values("pretrain_flops")
        return {"pretrain_flops": c["pretrain_flops"].tolist(), "valid_ppl": c["ppl"].tolist()}

    last = rows[-1]
    per_domain: dict[str, dict] = {}
    for r in selection.itertuples():
        rule = r.selection if isinstance(r.selection, str) else r.method
        per_domain.setdefault(r.domain, {})[rule] = {
            "expert": None if pd.isna(r.expert) else int(r.expert),
            "ppl_before": r.ppl_before, "ppl_after": r.ppl_after, "specialize_flops": r.specialize_flops,
            "selection_flops": r.selection_flops}
    summary = selection_summary(selection).set_index("method")
    return {
        "experts": last["experts"],
        "curves": {method: curve(method) for method in curves["method"].unique()},
        "crossover": cross,
        "expert_tokens": last["expert_tokens"], "expert_windows": last["expert_windows"],
        "pretrain_tokens": last["pretrain_tokens"],
        "ablation": {int(r.experts): r.ppl for r in ablation.itertuples()},
        "ablation_after": {int(r.experts): r.domain_ppl_after for r in ablation.itertuples()},
        "selection": {m: {"macro_ppl_before": s.macro_ppl_before, "macro_ppl_after": s.macro_ppl_after,
                          "mean_specialize_flops": s.mean_specialize_flops} for m, s in summary.iterrows()},
        "domains": per_domain,
    }
