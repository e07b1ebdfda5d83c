"""Notebook 03 (SLM-is): specialization-budget curves against the fine-tuned SLM, the ablation over
the number of clusters k, and the tables and metrics built from their result rows."""
from __future__ import annotations

import pandas as pd
from tqdm.auto import tqdm

from .. import methods
from ..errors import LabError
from ..methods.importance import curve
from ..scales import get_scale


FIELDS = ("k", "weights", "is_flops", "is_tokens", "finetune_flops", "is_valid_loss", "effective_windows",
          "effective_epochs", "top_cluster", "top_share", "uncovered_share", "sparse")
"""SLM-is's own fields, next to the reported ones, in the tables below."""


def notebook_sets(scale: str, set_sizes: str = "", ablation_set: int = 0) -> tuple[list[int], int]:
    """Notebook 03's set sizes (comma-separated tokens; empty: the scale's two smallest, as the
    largest set's runs cost the most and the study covers it) and the set of its ablation (0: the
    largest of those)."""
    try:
        sizes = [int(n) for n in set_sizes.split(",") if n.strip()]
    except ValueError:
        raise LabError(f"set_sizes={set_sizes!r}: give comma-separated numbers of tokens, e.g. "
                       "\"2000,16000\", or leave it empty for the scale's") from None
    sizes = sizes or sorted(get_scale(scale).set_tokens)[:2]
    return sizes, ablation_set or max(sizes)


def flat(row: dict) -> dict:
    """A result row as a table row: the reported fields, and SLM-is's own where it has them."""
    extra = row.get("extra") or {}
    return {**row.report(), **{f: extra[f] for f in FIELDS if f in extra}}


def budget_curves(domains: list[str], set_sizes: list[int], scale: str, *, spec_flops: float | None = None,
                  k: int | None = None, weights: str = "histogram", seed: int = 0) -> pd.DataFrame:
    """SLM-is at every checkpoint share of `spec_flops`, per domain and set size (one run each)."""
    jobs = [(d, n) for d in domains for n in set_sizes]
    rows = [flat(r) for d, n in tqdm(jobs, desc=f"slm-is ({weights})")
            for r in curve(d, n, scale, spec_flops=spec_flops, k=k, weights=weights, seed=seed, progress=False)]
    return pd.DataFrame(rows)


def reference(domains: list[str], set_sizes: list[int], scale: str, *, seed: int = 0) -> pd.DataFrame:
    """The SLM pretrained on the generic corpus (its full budget, shared by every domain) and
    fine-tuned on each set: what SLM-is is measured against."""
    jobs = [(d, n) for d in domains for n in set_sizes]
    return pd.DataFrame([flat(methods.specialize("slm", d, n, scale, seed=seed, progress=False))
                         for d, n in tqdm(jobs, desc="slm")])


def k_ablation(domains: list[str], set_sizes: list[int], scale: str, *, ks: list[int],
               spec_flops: float | None = None, seed: int = 0) -> pd.DataFrame:
    """SLM-is at one specialization budget for each number of clusters k (the paper's Figure 10)."""
    jobs = [(d, n, k) for d in domains for n in set_sizes for k in ks]
    return pd.DataFrame([flat(methods.specialize("slm-is", d, n, scale, seed=seed, k=k, spec_flops=spec_flops,
                                                 progress=False)) for d, n, k in tqdm(jobs, desc="slm-is k")])


def by_setting(frame: pd.DataFrame, value: str) -> dict[str, list]:
    """One column's values per "domain/set size", in budget order (for metrics files)."""
    return {f"{d}/{n}": g.sort_values("is_flops")[value].tolist()
            for (d, n), g in frame.groupby(["domain", "set_tokens"])}


def metrics(curves: pd.DataFrame, reference: pd.DataFrame, ablation: pd.DataFrame, both: pd.DataFrame,
            top: pd.DataFrame, *, scale: str, k: int, spec_flops: float, slm_pretrain_flops: float) -> dict:
    """Notebook 03's metrics file, from its tables: the budget curves (`budget_curves`), the SLM
    reference (`reference`), the k ablation (`k_ablation`), and the histogram against the top-cluster
    weights (`both`: both kinds of curve at one set size; `top`: the top-cluster ones)."""
    return {
        "scale": scale, "k": k, "spec_flops": spec_flops, "slm_pretrain_flops": slm_pretrain_flops,
        "curves": {key: by_setting(curves, key) for key in
                   ("specialize_flops", "pretrain_flops", "is_flops", "ppl_before", "ppl_after")},
        "reference": {f"{r.domain}/{r.set_tokens}": r.ppl_after for r in reference.itertuples()},
        "k_ablation": {f"{d}/{n}": {str(r.k): r.ppl_after for r in g.itertuples()}
                       for (d, n), g in ablation.groupby(["domain", "set_tokens"])},
        "top_vs_histogram": {w: by_setting(g, "ppl_after") for w, g in both.groupby("weights")},
        "top_share": {f"{r.domain}/{r.set_tokens}": r.top_share for r in top.drop_duplicates("domain").itertuples()},
    }
