"""Which regime a pretraining run is in.

The paper's findings hold for a capacity-limited SLM: about 1,400 tokens per
parameter, its loss flattened. A run still falling fast per doubling of
compute, at a few tokens per parameter, is in the opposite regime, where a
single small model beats wider models and mixtures at equal FLOPs (DESIGN
section 5). These tables let a reader see which one a run is in.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..nn.model import GPTConfig, non_embedding_params, param_count_formula
from ..training.train import read_meta


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
                    "seconds": r["seconds"]})
    df = pd.DataFrame(out)
    doublings = np.log2(df["pretrain_flops"]).diff()
    df["loss_drop_per_doubling"] = -df["valid_loss"].diff() / doublings
    return df


def summary(curves: pd.DataFrame) -> pd.DataFrame:
    """The last checkpoint of each method, with the slope over its last doubling(s)."""
    last = curves.sort_values("pretrain_flops").groupby("method").tail(1)
    return last[["method", "pretrain_flops", "tokens", "params", "tokens_per_param",
                 "tokens_per_non_embedding_param", "valid_ppl", "loss_drop_per_doubling"]].reset_index(drop=True)
