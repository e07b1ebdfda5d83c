"""Notebook 01 (pretraining): which regime a pretraining run is in, and the paper's Table 4.

The paper's findings hold for a capacity-limited SLM: about 1,400 tokens per
parameter, its loss flattened. A run still falling fast per doubling of
compute, at a few tokens per parameter, is in the opposite regime, where a
single small model beats wider models and mixtures at equal FLOPs
(docs/regime.md, section 5). These tables let a reader see which one a run is in.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .. import methods
from ..nn.model import GPTConfig, non_embedding_params, param_count_formula
from ..training.evaluate import macro_perplexity
from ..nn.checkpoints import read_meta


def curve(method: str, rows: list[dict]) -> pd.DataFrame:
    """One row per checkpoint: FLOPs, tokens, tokens per parameter, generic validation
    loss and perplexity, and the loss drop per doubling of compute since the previous one."""
    out = []
    for r in sorted(rows, key=lambda r: r["pretrain_flops"]):
        cfg = GPTConfig(**read_meta(r["checkpoint"])["model_config"])
        loss = r["valid_loss"]
        out.append({"method": method, "pretrain_flops": r["pretrain_flops"], "tokens": r["pretrain_tokens"],
                    "params": param_count_formula(cfg), "non_embedding_params": non_embedding_params(cfg),
                    "tokens_per_param": r["pretrain_tokens"] / param_count_formula(cfg),
                    "tokens_per_non_embedding_param": r["pretrain_tokens"] / non_embedding_params(cfg),
                    "valid_loss": loss, "valid_ppl": math.exp(loss) if loss is not None else None,
                    "seconds": r["seconds"], "pretrain_hours": r["seconds"] / 3600, "device": r.get("device")})
    df = pd.DataFrame(out)
    doublings = np.log2(df["pretrain_flops"]).diff()
    df["loss_drop_per_doubling"] = -df["valid_loss"].diff() / doublings
    return df


def summary(curves: pd.DataFrame) -> pd.DataFrame:
    """The last checkpoint of each method, with the slope over its last doubling(s)."""
    last = curves.sort_values("pretrain_flops").groupby("method").tail(1)
    return last[["method", "pretrain_flops", "tokens", "params", "tokens_per_param",
                 "tokens_per_non_embedding_param", "valid_ppl", "loss_drop_per_doubling"]].reset_index(drop=True)


def _run(method: str, domains: Sequence[str], set_sizes: Sequence[int], scale: str, seed: int,
         pretrain_flops: float | None) -> list[dict]:
    rows = []
    jobs = [(d, n) for d in domains for n in set_sizes]
    for domain, n in tqdm(jobs, desc=method):
        rows.append(methods.specialize(method, domain, n, scale, seed=seed, pretrain_flops=pretrain_flops,
                                       progress=False).report())
    return rows


def table4(scale: str, domains: Sequence[str], set_sizes: Sequence[int], seed: int = 0,
           pretrain_flops: float | None = None) -> pd.DataFrame:
    """Test perplexity per domain of the SLM and the LLM generic only (before fine-tuning), fine-tuned on each
    set size, and of the SLM trained on each set alone (SLM-nopt), with the macro-average (exp of the mean
    per-domain log-perplexity) as the last row: the paper's Table 4, LLM included."""
    rows = (_run("slm", domains, set_sizes, scale, seed, pretrain_flops)
            + _run("llm", domains, set_sizes, scale, seed, pretrain_flops)
            + _run("slm-nopt", domains, set_sizes, scale, seed, pretrain_flops))
    df = pd.DataFrame(rows)
    name = {"slm": "SLM", "llm": "LLM", "slm-nopt": "SLM-nopt"}
    df["column"] = [f"{name[r.method]} {r.set_tokens:,}" for r in df.itertuples()]
    # Before fine-tuning, a pretrained model is the generic-only one, whatever the set.
    generic = df[df["method"] != "slm-nopt"].drop_duplicates(["method", "domain"]).assign(
        column=lambda d: d["method"].map({"slm": "generic only", "llm": "LLM generic only"}),
        ppl_after=lambda d: d["ppl_before"])
    table = pd.concat([generic, df]).pivot_table(index="domain", columns="column", values="ppl_after", sort=False)
    order = ["generic only"] + [f"SLM {n:,}" for n in set_sizes] + ["LLM generic only"] + \
        [f"LLM {n:,}" for n in set_sizes] + [f"SLM-nopt {n:,}" for n in set_sizes]
    table = table[order]
    table.loc["average"] = table.apply(macro_perplexity)
    return table


def metrics(scale: str, curves: pd.DataFrame, table: pd.DataFrame) -> dict:
    """Notebook 01's metrics file: generic perplexity at each checkpoint, the last checkpoint's tokens
    per parameter and loss drop per doubling (from `curve`), and Table 4 (from `table4`)."""
    last = curves.sort_values("pretrain_flops").groupby("method").tail(1).set_index("method")
    return {
        "scale": scale,
        "generic_ppl": {m: curves[curves.method == m].sort_values("pretrain_flops")["valid_ppl"].tolist()
                        for m in ("slm", "llm")},
        "tokens_per_param": last["tokens_per_param"].to_dict(),
        "loss_drop_per_doubling": last["loss_drop_per_doubling"].to_dict(),
        "table4": {d: row.to_dict() for d, row in table.iterrows()},
    }


def lora_table(scale: str, domains: Sequence[str], set_sizes: Sequence[int], ranks: Sequence[int],
               seed: int = 0, models: Sequence[str] = ("slm",)) -> pd.DataFrame:
    """The paper's Figure 14: each model fine-tuned on each domain and set in full (rank 0, Table 4's rows)
    and with LoRA at each rank, from its largest pretraining checkpoint (cached rows of the results store)."""
    jobs = [(m, r, d, n) for m in models for r in (0, *ranks) for d in domains for n in set_sizes]
    rows = []
    for method, rank, domain, n in tqdm(jobs, desc="full and LoRA fine-tuning"):
        row = methods.specialize(method, domain, n, scale, seed=seed, progress=False, lora_rank=rank)
        extra = row["extra"]
        rows.append({**row.report(), "lora_rank": rank, "trained_params": extra.get("trained_params"),
                     "best_step": extra.get("best_step")})
    return pd.DataFrame(rows)


def lora_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Macro test perplexity after fine-tuning (over domains), mean specialization FLOPs and trained
    weights, per model, rank (0: full fine-tuning) and set size."""
    keys = ["method", "lora_rank", "set_tokens"]
    return (table.groupby(keys, sort=False)
            .agg(ppl_after=("ppl_after", macro_perplexity), ppl_before=("ppl_before", macro_perplexity),
                 specialize_flops=("specialize_flops", "mean"), trained_params=("trained_params", "max"))
            .reset_index())


def lora_metrics(summary: pd.DataFrame) -> dict:
    """Figure 14 for the metrics file: per model and fine-tuning ("full", "lora r=8"), macro perplexity,
    specialization FLOPs and trained weights by set size."""
    out: dict = {}
    for (method, rank), g in summary.groupby(["method", "lora_rank"], sort=False):
        out.setdefault(method, {})["full" if rank == 0 else f"lora r={rank}"] = {
            field: {str(r.set_tokens): getattr(r, field) for r in g.itertuples()}
            for field in ("ppl_after", "specialize_flops", "trained_params")}
    return out
