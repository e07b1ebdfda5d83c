"""Notebook 04 (SLM-hn): the hyper-network's shape and generic curves, the number-of-experts ablation,
and top-cluster against histogram instantiation per domain."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from .. import methods
from ..data.corpus import load_corpus
from ..device import pick_device
from ..errors import LabError
from ..methods.common import pick_checkpoint
from ..methods.dense import specialize_checkpoint
from ..methods.hypernet import INSTANTIATIONS, domain_histogram, hyper_config, specialize
from ..nn import costs
from ..nn.checkpoints import load_model
from ..nn.hypernet import load_hypernet, param_count_hypernet
from ..nn.model import param_count_formula
from ..scales import get_scale
from ..training.evaluate import evaluate, macro_perplexity
from ..training.train import train_config
from .params import parse_list


def shape_table(scale: str, experts: int | None = None) -> pd.DataFrame:
    """The hyper-network next to the SLM it generates: parameters and the cost of a training step."""
    cfg = hyper_config(scale, experts)
    tokens = train_config("slm", scale).batch_size * cfg.context
    slm_step = costs.train_flops(cfg.slm, tokens, 1)
    rows = [{"model": "SLM", "parameters": param_count_formula(cfg.slm), "step_flops": slm_step},
            {"model": f"SLM-hn (k={cfg.n_experts}, m={cfg.code_dim}, h={cfg.bank_size})",
             "parameters": param_count_hypernet(cfg), "step_flops": cfg.train_flops(tokens, 1)}]
    table = pd.DataFrame(rows)
    table["step_flops_vs_slm"] = table["step_flops"] / slm_step
    table["inference_flops_per_token"] = cfg.inference_flops_per_token()
    return table.set_index("model")


def histogram_set(scale: str) -> int:
    """The in-domain set the notebook instantiates from: the scale's middle one. The smallest
    (8k tokens at `default`, a couple of documents) can miss a domain's main cluster: the first
    8k tokens of legal and medicine put their top share in another cluster than their 64k-token
    sets and their test splits do."""
    return sorted(load_corpus(scale).scale.set_tokens)[1]


def generic_curves(scale: str, *, experts: int | None = None, seed: int = 0, progress: bool = True) -> pd.DataFrame:
    """Generic validation perplexity against pretraining FLOPs: SLM, LLM and SLM-hn (routed), on
    the same validation windows and budgets. Trains what is not cached."""
    k = hyper_config(scale, experts).n_experts
    found = {"slm": methods.pretrain("slm", scale, seed=seed, progress=progress),
             "llm": methods.pretrain("llm", scale, seed=seed, progress=progress),
             f"slm-hn ({k} experts)": methods.pretrain("slm-hn", scale, seed=seed, progress=progress, experts=k)}
    rows = [{"method": name, "pretrain_flops": r["pretrain_flops"], "pretrain_tokens": r["pretrain_tokens"],
             "valid_loss": r["valid_loss"], "ppl": math.exp(r["valid_loss"]),
             "pretrain_hours": r["seconds"] / 3600, "device": r["device"]}
            for name, rs in found.items() for r in rs]
    return pd.DataFrame(rows).sort_values(["method", "pretrain_flops"], ignore_index=True)


def experts_ablation(scale: str, experts: str | Sequence[int] = "", fraction: float = 0.125,
                     domains: str | Sequence[str] = "", *, set_tokens: int = 0, seed: int = 0,
                     progress: bool = True) -> pd.DataFrame:
    """SLM-hn against its number of experts at one budget (`fraction` of the SLM's), the SLM at
    the same budget as the one-model reference (the paper's Figure 7).

    Per k: generic validation perplexity (routed), the domains' macro test perplexity
    before fine-tuning of the top-cluster instantiation (each domain's histogram from its
    `histogram_set` training set), and after fine-tuning it on `set_tokens` tokens (default:
    that set) as SLM-hn does (`domain_ppl_after`)."""
    if not 0 < fraction <= 1:
        raise LabError(f"fraction={fraction}: give a share of the pretraining budget in (0, 1]")
    corpus = load_corpus(scale)
    domains = parse_list(domains, str) or corpus.study_domains
    budget = fraction * train_config("slm", scale).pretrain_flops
    slm = pick_checkpoint(methods.pretrain("slm", scale, seed=seed, progress=progress, budget_flops=[budget]), budget)
    tests = {d: corpus.tokens(d, "test") for d in domains}
    sets = {d: corpus.train_set(d, histogram_set(scale)) for d in domains}
    n = set_tokens or histogram_set(scale)
    device = pick_device()
    slm_model = load_model(slm["checkpoint"], device)
    rows = [{"experts": 1, "method": "slm", "pretrain_flops": slm["pretrain_flops"],
             "pretrain_tokens": slm["pretrain_tokens"], "generic_ppl": math.exp(slm["valid_loss"]),
             "domain_ppl": macro_perplexity({d: evaluate(slm_model, t) for d, t in tests.items()}),
             "domain_ppl_after": macro_perplexity([specialize_checkpoint(
                 slm["checkpoint"], "slm", d, n, scale, method="slm", seed=seed, progress=False)["ppl_after"]
                 for d in domains]), "set_tokens": n}]
    for k in parse_list(experts, name="experts") or get_scale(scale).hypernet_ablation:
        (r,) = methods.pretrain("slm-hn", scale, seed=seed, progress=progress, experts=k, budget_flops=[budget])
        model = load_hypernet(r["checkpoint"], device)
        top = {d: int(np.argmax(domain_histogram(scale, k, s, d))) for d, s in sets.items()}
        after = [specialize("slm-hn", d, n, scale, seed=seed, progress=False, experts=k, budget_flops=[budget],
                            pretrain_flops=budget)["ppl_after"] for d in domains]
        rows.append({"experts": k, "method": "slm-hn", "pretrain_flops": r["pretrain_flops"],
                     "pretrain_tokens": r["pretrain_tokens"], "generic_ppl": math.exp(r["valid_loss"]),
                     "domain_ppl": macro_perplexity({d: evaluate(model.instantiate(top[d]), t)
                                                     for d, t in tests.items()}),
                     "domain_ppl_after": macro_perplexity(after), "set_tokens": n})
    return pd.DataFrame(rows)


def compare_instantiation(scale: str, set_tokens: int = 0, domains: str | Sequence[str] = "", *,
                          experts: int | None = None, with_slm: bool = True, seed: int = 0,
                          progress: bool = True) -> pd.DataFrame:
    """Top-cluster against histogram instantiation on each domain (default: the corpus's
    `study_domains`), before and after fine-tuning, with each domain's histogram entropy (and the
    fine-tuned SLM for reference): one row per (domain, method). `set_tokens` 0 means `histogram_set(scale)`."""
    corpus = load_corpus(scale)
    set_tokens = set_tokens or histogram_set(scale)
    rows = []
    for domain in parse_list(domains, str) or corpus.study_domains:
        found = {f"slm-hn ({how})": methods.specialize("slm-hn", domain, set_tokens, scale, seed=seed,
                                                       progress=progress, experts=experts, instantiate=how)
                 for how in INSTANTIATIONS}
        x = found["slm-hn (top)"]["extra"]  # the domain's histogram, the same for both
        if with_slm:
            found["slm"] = methods.specialize("slm", domain, set_tokens, scale, seed=seed, progress=progress)
        for name, r in found.items():
            rows.append({"domain": domain, "method": name, "set_tokens": set_tokens,
                         "entropy_nats": x["histogram_entropy"], "top_share": x["top_share"],
                         "ppl_before": r["ppl_before"], "ppl_after": r["ppl_after"],
                         "valid_loss_before": r["extra"]["initial_valid_loss"],
                         "valid_loss_after": r["extra"]["best_valid_loss"],
                         "specialize_flops": r["specialize_flops"], "pretrain_flops": r["pretrain_flops"],
                         "cached": r["cached"]})
    return pd.DataFrame(rows)


def histogram_gain(table: pd.DataFrame) -> pd.DataFrame:
    """Per domain: entropy, and how much histogram instantiation beats top (perplexity of top
    minus histogram; positive: the histogram is better), before and after fine-tuning."""
    wide = table.pivot_table(index=["domain", "entropy_nats", "top_share"], columns="method",
                             values=["ppl_before", "ppl_after"])
    out = pd.DataFrame({
        "gain_before": wide[("ppl_before", "slm-hn (top)")] - wide[("ppl_before", "slm-hn (histogram)")],
        "gain_after": wide[("ppl_after", "slm-hn (top)")] - wide[("ppl_after", "slm-hn (histogram)")],
    }).reset_index()
    return out.sort_values("entropy_nats", ignore_index=True)


def metrics(curves: pd.DataFrame, ablation: pd.DataFrame, table: pd.DataFrame) -> dict:
    """The numbers notebook 04 reports (and its test checks)."""
    gains = histogram_gain(table)
    high = gains["entropy_nats"] >= gains["entropy_nats"].median()
    curves = curves.sort_values("pretrain_flops")
    domains = {}
    for domain, g in table.groupby("domain"):
        domains[domain] = {"entropy_nats": float(g["entropy_nats"].iloc[0]), "top_share": float(g["top_share"].iloc[0]),
                           **{m: {"before": float(r["ppl_before"]), "after": float(r["ppl_after"]),
                                  "valid_loss_before": float(r["valid_loss_before"]),
                                  "valid_loss_after": float(r["valid_loss_after"])}
                              for m, r in g.set_index("method").iterrows()}}
    return {
        "generic_ppl": {m: g["ppl"].tolist() for m, g in curves.groupby("method")},
        "pretrain_flops": {m: g["pretrain_flops"].tolist() for m, g in curves.groupby("method")},
        "ablation": ablation[["experts", "method", "generic_ppl", "domain_ppl", "domain_ppl_after",
                              "set_tokens"]].to_dict(orient="records"),
        "domains": domains,
        "macro_ppl_before": {m: macro_perplexity(g["ppl_before"]) for m, g in table.groupby("method")},
        "macro_ppl_after": {m: macro_perplexity(g["ppl_after"]) for m, g in table.groupby("method")},
        "histogram_gain_after": {"high_entropy": float(gains.loc[high, "gain_after"].mean()),
                                 "low_entropy": float(gains.loc[~high, "gain_after"].mean())},
    }
