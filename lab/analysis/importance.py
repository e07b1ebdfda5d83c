"""Notebook 03 (SLM-is): specialization-budget curves against the fine-tuned SLM, the ablation over
the number of clusters k, cluster importance sampling beside DSIR, and the tables and metrics built
from their result rows."""
from __future__ import annotations

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .. import methods
from ..data import dsir
from ..data.cluster import corpus_decode
from ..data.corpus import load_corpus, load_domain
from ..data.tokens import window_starts
from ..methods.importance import IMPORTANCE, curve, stream
from ..scales import get_scale
from .params import parse_list


FIELDS = ("k", "weights", "is_flops", "is_tokens", "finetune_flops", "is_valid_loss", "effective_windows",
          "effective_epochs", "top_cluster", "top_share", "uncovered_share", "sparse", "importance",
          "selected_windows", "generic_ngram_kl", "selected_ngram_kl")
"""SLM-is's own fields, next to the reported ones, in the tables below."""


def notebook_sets(scale: str, set_sizes: str = "", ablation_set: int = 0) -> tuple[list[int], int]:
    """Notebook 03's set sizes (comma-separated tokens; empty: the scale's two smallest, as the
    largest set's runs cost the most and the study covers it) and the set of its ablation (0: the
    largest of those)."""
    sizes = parse_list(set_sizes, name="set_sizes")
    sizes = sizes or sorted(get_scale(scale).set_tokens)[:2]
    return sizes, ablation_set or max(sizes)


def flat(row: dict) -> dict:
    """A result row as a table row: the reported fields, SLM-is's own where it has them, and the measured
    device-hours of the specialization (and of SLM-is's resampled run alone)."""
    extra = row.get("extra") or {}
    hours = {"specialize_hours": row["seconds"] / 3600}
    if "is_seconds" in extra:
        hours["is_hours"] = extra["is_seconds"] / 3600
    return {**row.report(), **{f: extra[f] for f in FIELDS if f in extra}, **hours}


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
    top = max(methods.pretrain("slm", scale, seed=seed, progress=False), key=lambda r: r["pretrain_flops"])
    return pd.DataFrame([{**flat(methods.specialize("slm", d, n, scale, seed=seed, progress=False)),
                          "pretrain_hours": top["seconds"] / 3600} for d, n in tqdm(jobs, desc="slm")])


def k_ablation(domains: list[str], set_sizes: list[int], scale: str, *, ks: list[int],
               spec_flops: float | None = None, seed: int = 0) -> pd.DataFrame:
    """SLM-is at one specialization budget for each number of clusters k (the paper's Figure 10)."""
    jobs = [(d, n, k) for d in domains for n in set_sizes for k in ks]
    return pd.DataFrame([flat(methods.specialize("slm-is", d, n, scale, seed=seed, k=k, spec_flops=spec_flops,
                                                 progress=False)) for d, n, k in tqdm(jobs, desc="slm-is k")])


def stream_ngram_kl(rs, domain_set: np.ndarray, decode, windows: int = 2_000, seed: int = 0) -> tuple[float, float]:
    """DSIR's measure of a resampled stream: KL from the domain set's hashed n-gram distribution to that of
    the distinct windows among `windows` draws of the stream's sampler, and to as many distinct generic
    windows drawn uniformly (nats; sizes match, as fewer windows cover fewer n-grams)."""
    ctx = rs.context
    domain = dsir.ngram_counts(dsir.window_texts(domain_set, ctx, decode)[1])
    drawn = np.unique(rs.sampler(windows, seed).offsets())
    uniform = np.random.default_rng(seed).choice(window_starts(len(rs.generic), ctx), len(drawn), replace=False)

    def kl(offsets: np.ndarray) -> float:
        texts = [decode(np.asarray(rs.generic[o:o + ctx + 1]).tolist()) for o in offsets]
        return dsir.ngram_kl(domain, dsir.ngram_counts(texts))

    return kl(drawn), kl(uniform)


def compare_importance(domains: list[str], set_tokens: int, scale: str, *, spec_flops: float,
                       seed: int = 0) -> pd.DataFrame:
    """SLM-is resampled by cluster histograms and by DSIR, at one specialization budget, on each domain (a
    built-in name or a folder): the rows, and each stream's hashed n-gram KL to the domain beside the
    generic corpus's, measured alike on windows the two samplers draw (`stream_ngram_kl`)."""
    decode = corpus_decode(load_corpus(scale))
    rows = []
    for d, imp in tqdm([(d, i) for d in domains for i in IMPORTANCE], desc="slm-is clusters / dsir"):
        row = flat(methods.specialize("slm-is", d, set_tokens, scale, seed=seed, importance=imp,
                                      spec_flops=spec_flops, progress=False))
        rs = stream(d, set_tokens, scale, importance=imp, spec_flops=spec_flops, seed=seed)
        row["stream_ngram_kl"], row["uniform_ngram_kl"] = stream_ngram_kl(rs, load_domain(d, scale).set(set_tokens),
                                                                          decode, seed=seed)
        rows.append({**row, "importance": imp})
    return pd.DataFrame(rows)


def importance_metrics(table: pd.DataFrame) -> dict:
    """Per domain and importance ("clusters", "dsir"): perplexity before and after fine-tuning, the n-gram KL
    from the domain to the stream read, to as many uniform generic windows, and how much lower the stream's is
    (`compare_importance`)."""
    out = {}
    for domain, g in table.groupby("domain", sort=False):
        by = {r.importance: r for r in g.itertuples()}
        out[domain] = {
            "ppl_after": {i: r.ppl_after for i, r in by.items()},
            "ppl_before": {i: r.ppl_before for i, r in by.items()},
            "ngram_kl": {i: r.stream_ngram_kl for i, r in by.items()},
            "ngram_kl_uniform": {i: r.uniform_ngram_kl for i, r in by.items()},
            "ngram_kl_reduction": {i: r.uniform_ngram_kl - r.stream_ngram_kl for i, r in by.items()},
            "specialize_flops": {i: r.specialize_flops for i, r in by.items()},
            "is_flops": {i: r.is_flops for i, r in by.items()},
        }
    return out


def by_setting(frame: pd.DataFrame, value: str) -> dict[str, list]:
    """One column's values per "domain/set size", in budget order (for metrics files)."""
    return {f"{d}/{n}": g.sort_values("is_flops")[value].tolist()
            for (d, n), g in frame.groupby(["domain", "set_tokens"])}


def metrics(curves: pd.DataFrame, reference: pd.DataFrame, ablation: pd.DataFrame, both: pd.DataFrame,
            top: pd.DataFrame, *, scale: str, k: int, spec_flops: float, slm_pretrain_flops: float,
            compare: pd.DataFrame | None = None, user: pd.DataFrame | None = None) -> dict:
    """Notebook 03's metrics file, from its tables: the budget curves (`budget_curves`), the SLM
    reference (`reference`), the k ablation (`k_ablation`), the histogram against the top-cluster
    weights (`both`: both kinds of curve at one set size; `top`: the top-cluster ones), and cluster
    resampling against DSIR on the corpus's domains (`compare`) and a user's folder (`user`)."""
    return {
        "dsir_vs_clusters": None if compare is None else importance_metrics(compare),
        "user_folder": None if user is None else importance_metrics(user),
        "scale": scale, "k": k, "spec_flops": spec_flops, "slm_pretrain_flops": slm_pretrain_flops,
        "curves": {key: by_setting(curves, key) for key in
                   ("specialize_flops", "pretrain_flops", "is_flops", "ppl_before", "ppl_after")},
        "reference": {f"{r.domain}/{r.set_tokens}": r.ppl_after for r in reference.itertuples()},
        "k_ablation": {f"{d}/{n}": {str(r.k): r.ppl_after for r in g.itertuples()}
                       for (d, n), g in ablation.groupby(["domain", "set_tokens"])},
        "top_vs_histogram": {w: by_setting(g, "ppl_after") for w, g in both.groupby("weights")},
        "top_share": {f"{r.domain}/{r.set_tokens}": r.top_share for r in top.drop_duplicates("domain").itertuples()},
    }
