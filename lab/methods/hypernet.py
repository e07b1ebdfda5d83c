"""SLM-hn: pretrain a hyper-network on clustered generic text, instantiate an SLM for a domain, fine-tune it.

Pretraining (`pretrain`) clusters the generic windows with k-means (`lab.cluster`,
k = the number of experts) and trains `lab.hypernet.HyperGPT` with each window
routed through its cluster's generated MLPs, on the SLM's optimizer, schedule
and FLOP budgets (`lab.train.pretrain`). The FLOPs count the weight generation,
so at equal FLOPs it sees a little fewer tokens than the SLM. Its generic
validation loss routes each validation window to its cluster.

Specialization (`specialize`) writes the domain's SLM out of the hyper-network
in closed form and fine-tunes it like the SLM (`lab.runs.specialize_run`):

- instantiate="top" (the paper's): the expert of the domain's most frequent
  cluster on its training set;
- instantiate="histogram": the experts' codes mixed by the domain's whole
  cluster histogram, so the model is the histogram-weighted sum of the
  experts' MLP matrices; meant for domains spread over several clusters, where
  the paper found the top cluster does not help (finding 7).

Inference costs exactly one SLM either way. The "slm-hn" result row carries the
instantiation, the domain's histogram, its entropy and top-cluster share; the
fine-tuning itself is stored as an "slm-hn-instance" row, as `specialize_run` writes it.

Shapes (`SHAPES`). At `default`: k = 16 clusters sharing banks of h = 8 matrices
through codes of m = 8, so the experts' MLPs span 8 SLMs' worth (m and h bound
the rank: more of either than the other adds nothing). A short measurement at
1/16 of the default budget (1.1M tokens; generic validation perplexity, the SLM
178.1) gave k = 4: 166.6, k = 16: 166.9, k = 64: 173.9 (h = 8), and k = 16 with
h = 16: 166.2. Four to sixteen clusters cost nothing there, and the paper's ratio
(twice the mixture's experts, 32 against 16) and finer histograms for
instantiation favour more, so 16; 64 has too little data per code at this budget.
A step costs 1.01x an SLM step in FLOPs and in time (`benchmarks/bench_hypernet.py`;
h = 64 would reach 1.6x in time, for no measured gain). `paper`: the paper's k = 32,
with m = h = 16 (1.0B pretraining parameters, 8x the SLM; not measured here).
"""
from __future__ import annotations

import math
from dataclasses import asdict, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..nn import costs
from . import runs
from ..data.cluster import cluster_corpus, corpus_decode, default_ks, entropy
from ..data.corpus import load_corpus
from ..device import device_name, pick_device
from ..errors import LabError
from ..training.evaluate import evaluate, macro_perplexity
from ..training.finetune import finetune_config
from ..nn.hypernet import HyperConfig, HyperGPT, RoutedSampler, load_hypernet, param_count_hypernet, routed_evaluator
from ..nn.model import model_config, param_count_formula, train_config
from .store import ResultStore, cached_run, data_hash, stable_hash
from ..training.train import load_model, pretrain as train_pretrain, read_meta, save_model
from .common import checkpoint_rows, domain_data, generic_streams, pick_checkpoint

SHAPES = {"tiny": (4, 4, 4), "default": (16, 8, 8), "paper": (32, 16, 16)}
"""(k experts, code size m, bank size h) per scale. The paper's main results use k = 32;
k must be one of the scale's cached k-means sizes to avoid re-clustering."""
ABLATION_EXPERTS = {"tiny": (4, 16), "default": (4, 8, 16, 64), "paper": (4, 16, 32, 64, 256)}
"""Expert counts of the number-of-experts ablation (the paper's Figure 7), at the scale's bank size."""
INSTANTIATIONS = ("top", "histogram")
INSTANCE_METHOD = "slm-hn-instance"
"""Method name of the fine-tuning rows of instantiated SLMs; the study reads the "slm-hn" rows."""


def hyper_config(scale: str, experts: int | None = None) -> HyperConfig:
    """The scale's SLM shape with the hyper-network's k, m, h (`experts` replaces k)."""
    k, m, h = SHAPES.get(scale, SHAPES["paper"])
    k = k if experts is None else int(experts)
    if k < 1:
        raise LabError(f"experts={k}: the hyper-network needs at least one expert")
    return HyperConfig(**asdict(model_config("slm", scale)), n_experts=k, code_dim=m, bank_size=h)


def clustering(scale: str, k: int):
    """The corpus and its generic k-means clustering with k clusters (cached by `lab.cluster`).
    The scale's usual sizes are asked for too, so that a first call builds the shared cache whole."""
    corpus = load_corpus(scale)
    clusters = cluster_corpus(corpus, ks=sorted(set(default_ks(scale)) | {k}))
    if k not in clusters.ks:
        raise LabError(f"experts={k}: the {scale} generic corpus has too few windows for {k} clusters "
                       f"(usable: {', '.join(map(str, clusters.ks))}); choose fewer experts")
    return corpus, clusters


def _check_options(options: dict) -> None:
    if options:
        raise LabError(f"slm-hn takes the options experts and instantiate, not {', '.join(sorted(options))}")


# -- pretraining -----------------------------------------------------------

def pretrain(method: str, scale: str, *, seed: int = 0, progress: bool = True, experts: int | None = None,
             budget_flops: Sequence[float] | None = None, callbacks=None, **options) -> list[dict]:
    """Train the hyper-network with a checkpoint at each budget (default: the SLM's budgets).

    One row per checkpoint: checkpoint, pretrain_flops (generation included),
    pretrain_tokens, valid_loss (generic validation, routed), seconds, and the
    shapes (experts, code_dim, bank_size)."""
    _check_options(options)
    cfg = hyper_config(scale, experts)
    k = cfg.n_experts
    corpus, clusters = clustering(scale, k)
    tokens, valid = generic_streams(scale)
    ids = clusters.generic_ids[k]
    valid_ids = clusters.assign_tokens(valid, corpus_decode(corpus))[k]
    train_cfg = replace(train_config("slm", scale), seed=seed)
    data = data_hash(tokens, ids)
    root = runs.checkpoint_root("slm-hn", scale, cfg, train_cfg, data)
    paths = train_pretrain(
        cfg, train_cfg, tokens, root, budget_flops=budget_flops, valid=valid, callbacks=callbacks,
        progress=progress, model_factory=lambda: HyperGPT(cfg), evaluate_fn=routed_evaluator(valid_ids),
        sampler_factory=lambda: RoutedSampler(tokens, ids, train_cfg.batch_size, cfg.context, seed=seed))
    store = ResultStore.for_scale(scale)
    shapes = {"experts": k, "code_dim": cfg.code_dim, "bank_size": cfg.bank_size}
    for path in paths:
        meta = read_meta(path)
        key = {"method": "slm-hn", "scale": scale, "domain": "generic", "seed": seed, **shapes,
               "checkpoint": f"{path.parent.name}/{path.name}"}
        cached_run(store, key, lambda: {
            "pretrain_tokens": meta["tokens"], "pretrain_flops": meta["flops"], "specialize_flops": 0.0,
            "inference_flops_per_token": cfg.inference_flops_per_token(), "seconds": meta["seconds"],
            "ppl_before": math.exp(meta["valid_loss"]) if meta["valid_loss"] is not None else None,
            "valid_loss": meta["valid_loss"], "device": meta["device"], "run_flops": meta["run_flops"],
            "run_seconds": meta["run_seconds"], "precision": meta["precision"],
            "generation_flops_per_step": 3 * cfg.generation_flops(cfg.experts_per_step(train_cfg.batch_size)),
            **shapes}, data_hash=data_hash(tokens, ids, valid))
    return [{**row, **shapes} for row in checkpoint_rows(paths)]


# -- instantiation ---------------------------------------------------------

def domain_histogram(scale: str, k: int, train: np.ndarray, name: str) -> np.ndarray:
    """The domain training set's share of windows in each of the k generic clusters."""
    corpus, clusters = clustering(scale, k)
    return clusters.histogram(train, corpus_decode(corpus), k, name=name)


def instantiate_checkpoint(checkpoint: str | Path, histogram: np.ndarray, how: str = "top") -> Path:
    """Write the SLM of a hyper-network checkpoint for a domain histogram as a plain checkpoint
    folder (`lab.train.load_model` reads it); reused when it exists. "top" takes the expert of
    the largest share, "histogram" mixes every expert's code by its share."""
    if how not in INSTANTIATIONS:
        raise LabError(f"unknown instantiation {how!r}: choose one of {', '.join(INSTANTIATIONS)}")
    checkpoint = Path(checkpoint)
    hist = np.asarray(histogram, dtype=np.float64)
    top = int(np.argmax(hist))
    name = f"top{top}" if how == "top" else f"histogram-{stable_hash(np.round(hist, 10).tolist())[:12]}"
    path = checkpoint.parent / "instances" / f"{checkpoint.name}-{name}"
    if (path / "meta.json").exists():
        return path
    meta = read_meta(checkpoint)
    model = load_hypernet(checkpoint)
    slm = model.instantiate(top if how == "top" else hist)
    return save_model(slm, path, tokens=meta["tokens"], flops=meta["flops"], seconds=meta["seconds"],
                         device=meta["device"], hypernet_checkpoint=str(checkpoint), instantiate=how,
                         histogram=hist.tolist(), expert=top if how == "top" else None)


# -- specialization --------------------------------------------------------

def specialize(method: str, domain: str, set_tokens: int, scale: str, *, seed: int = 0,
               pretrain_flops: float | None = None, progress: bool = True, experts: int | None = None,
               instantiate: str = "top", **options) -> dict:
    _check_options(options)
    if instantiate not in INSTANTIATIONS:
        raise LabError(f"unknown instantiation {instantiate!r}: choose one of {', '.join(INSTANTIATIONS)}")
    cfg = hyper_config(scale, experts)
    dom, train = domain_data(domain, set_tokens, scale)
    ckpt = Path(pick_checkpoint(pretrain(method, scale, seed=seed, progress=progress, experts=cfg.n_experts),
                                pretrain_flops)["checkpoint"])
    config = finetune_config("slm", scale, len(train), seed=seed)
    key = {"method": "slm-hn", "scale": scale, "domain": dom.name, "set_tokens": len(train), "seed": seed,
           "experts": cfg.n_experts, "instantiate": instantiate,
           "checkpoint": runs.file_hash(ckpt / "model.safetensors"), "finetune": asdict(config)}

    def run() -> dict:
        hist = domain_histogram(scale, cfg.n_experts, train, dom.name)
        instance = instantiate_checkpoint(ckpt, hist, instantiate)
        row = runs.specialize_run(instance, "slm", scale, dom.name, train, dom.validation, dom.test,
                                  method=INSTANCE_METHOD, seed=seed, config=config, progress=progress)
        meta = read_meta(ckpt)
        record = row["extra"]
        return {
            "pretrain_tokens": meta["tokens"], "pretrain_flops": meta["flops"],
            "specialize_tokens": row["specialize_tokens"], "specialize_flops": row["specialize_flops"],
            "inference_flops_per_token": row["inference_flops_per_token"], "seconds": row["seconds"],
            "ppl_before": row["ppl_before"], "ppl_after": row["ppl_after"], "device": device_name(pick_device()),
            "experts": cfg.n_experts, "code_dim": cfg.code_dim, "bank_size": cfg.bank_size,
            "instantiate": instantiate, "histogram": hist.tolist(), "top_cluster": int(np.argmax(hist)),
            "top_share": float(hist.max()), "histogram_entropy": entropy(hist),
            "initial_valid_loss": record["initial_valid_loss"], "best_valid_loss": record["best_valid_loss"],
            "best_step": record["best_step"],
            "stopped_by": record["stopped_by"], "instance_checkpoint": str(instance),
            "hypernet_checkpoint": str(ckpt),
        }

    return cached_run(ResultStore.for_scale(scale), key, run, data_hash=data_hash(train, dom.validation, dom.test))


# -- what notebook 04 shows ------------------------------------------------

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
    from . import pretrain as method_pretrain

    k = hyper_config(scale, experts).n_experts
    found = {"slm": method_pretrain("slm", scale, seed=seed, progress=progress),
             "llm": method_pretrain("llm", scale, seed=seed, progress=progress),
             f"slm-hn ({k} experts)": pretrain("slm-hn", scale, seed=seed, progress=progress, experts=k)}
    rows = [{"method": name, "pretrain_flops": r["pretrain_flops"], "pretrain_tokens": r["pretrain_tokens"],
             "valid_loss": r["valid_loss"], "ppl": math.exp(r["valid_loss"])}
            for name, rs in found.items() for r in rs]
    return pd.DataFrame(rows).sort_values(["method", "pretrain_flops"], ignore_index=True)


def parse_list(value: str | Sequence, kind=int) -> list:
    """A list from "a,b,c" (a notebook parameter) or a sequence; empty gives []."""
    if isinstance(value, str):
        try:
            return [kind(x) for x in value.replace(" ", "").split(",") if x]
        except ValueError:
            raise LabError(f"{value!r}: give comma-separated values, e.g. \"4,8,16\"") from None
    return [kind(x) for x in value]


def experts_ablation(scale: str, experts: str | Sequence[int] = "", fraction: float = 0.125,
                     domains: str | Sequence[str] = "", *, seed: int = 0, progress: bool = True) -> pd.DataFrame:
    """SLM-hn against its number of experts at one budget (`fraction` of the SLM's), the SLM at
    the same budget as the one-model reference (the paper's Figure 7).

    Per k: generic validation perplexity (routed) and the domains' macro test
    perplexity before fine-tuning of the top-cluster instantiation (each domain's
    histogram from its `histogram_set` training set)."""
    from . import pretrain as method_pretrain

    if not 0 < fraction <= 1:
        raise LabError(f"fraction={fraction}: give a share of the pretraining budget in (0, 1]")
    corpus = load_corpus(scale)
    domains = parse_list(domains, str) or corpus.domains
    budget = fraction * train_config("slm", scale).pretrain_flops
    slm = pick_checkpoint(method_pretrain("slm", scale, seed=seed, progress=progress, budget_flops=[budget]), budget)
    tests = {d: corpus.tokens(d, "test") for d in domains}
    sets = {d: corpus.train_set(d, histogram_set(scale)) for d in domains}
    device = pick_device()
    slm_model = load_model(slm["checkpoint"], device)
    rows = [{"experts": 1, "method": "slm", "pretrain_flops": slm["pretrain_flops"],
             "pretrain_tokens": slm["pretrain_tokens"], "generic_ppl": math.exp(slm["valid_loss"]),
             "domain_ppl": macro_perplexity({d: evaluate(slm_model, t) for d, t in tests.items()})}]
    for k in parse_list(experts) or ABLATION_EXPERTS.get(scale, ABLATION_EXPERTS["paper"]):
        (r,) = pretrain("slm-hn", scale, seed=seed, progress=progress, experts=k, budget_flops=[budget])
        model = load_hypernet(r["checkpoint"], device)
        top = {d: int(np.argmax(domain_histogram(scale, k, s, d))) for d, s in sets.items()}
        rows.append({"experts": k, "method": "slm-hn", "pretrain_flops": r["pretrain_flops"],
                     "pretrain_tokens": r["pretrain_tokens"], "generic_ppl": math.exp(r["valid_loss"]),
                     "domain_ppl": macro_perplexity({d: evaluate(model.instantiate(top[d]), t)
                                                     for d, t in tests.items()})})
    return pd.DataFrame(rows)


def compare_instantiation(scale: str, set_tokens: int = 0, domains: str | Sequence[str] = "", *,
                          experts: int | None = None, with_slm: bool = True, seed: int = 0,
                          progress: bool = True) -> pd.DataFrame:
    """Top-cluster against histogram instantiation on every domain, before and after fine-tuning,
    with each domain's histogram entropy (and the fine-tuned SLM for reference): one row per
    (domain, method). `set_tokens` 0 means `histogram_set(scale)`."""
    from . import specialize as method_specialize

    corpus = load_corpus(scale)
    set_tokens = set_tokens or histogram_set(scale)
    rows = []
    for domain in parse_list(domains, str) or corpus.domains:
        found = {f"slm-hn ({how})": specialize("slm-hn", domain, set_tokens, scale, seed=seed, progress=progress,
                                               experts=experts, instantiate=how) for how in INSTANTIATIONS}
        x = found["slm-hn (top)"]["extra"]  # the domain's histogram, the same for both
        if with_slm:
            found["slm"] = method_specialize("slm", domain, set_tokens, scale, seed=seed, progress=progress)
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
        "ablation": ablation[["experts", "method", "generic_ppl", "domain_ppl"]].to_dict(orient="records"),
        "domains": domains,
        "macro_ppl_before": {m: macro_perplexity(dict(zip(g["domain"], np.log(g["ppl_before"]))))
                             for m, g in table.groupby("method")},
        "macro_ppl_after": {m: macro_perplexity(dict(zip(g["domain"], np.log(g["ppl_after"]))))
                            for m, g in table.groupby("method")},
        "histogram_gain_after": {"high_entropy": float(gains.loc[high, "gain_after"].mean()),
                                 "low_entropy": float(gains.loc[~high, "gain_after"].mean())},
    }
