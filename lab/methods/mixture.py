"""SLM-mix: pretrain one SLM per generic cluster, then specialize the expert a domain picks.

Pretraining (`pretrain`) clusters the generic windows with k-means (`lab.cluster`,
k = the number of experts) and trains the k experts together, each on its own
cluster, at the SLM's FLOPs: each sees 1/k of the SLM's tokens (`lab.mixture`).
One run writes a checkpoint at each of the SLM's budget fractions. Its generic
validation loss routes each validation window to its cluster's expert.

Specialization (`specialize`) picks one expert for the domain, saves it as a
plain SLM checkpoint and fine-tunes it like the SLM (`lab.runs.specialize_run`).
Three rules pick it (the paper's Table 5):

- "top": the domain's most frequent cluster on its training set (free);
- "loss": the expert with the lowest loss on the domain's training set
  (k forward passes over the set: k x 2N FLOPs per token, counted);
- "all": fine-tune every expert and keep the best on the domain's validation
  set (k fine-tunings, all counted).

The deployed model is one SLM: inference costs one expert. Pretraining costs the
whole mixture. The result row's extra fields carry the routing statistics: the
domain's cluster histogram, the chosen expert and what each rule scored.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from ..nn import costs
from . import runs
from ..data.cluster import cluster_corpus, corpus_decode, default_ks, entropy
from ..data.corpus import load_corpus
from ..device import device_name, pick_device
from ..errors import LabError
from ..training.evaluate import evaluate
from ..training.finetune import finetune_config
from ..nn.mixture import BatchedGPT, extract, load_mixture, pretrain_mixture, routed_evaluate
from ..nn.model import model_config, train_config
from .store import ResultStore, cached_run, data_hash
from ..training.train import read_meta
from .common import domain_data, generic_streams, pick_checkpoint

DEFAULT_EXPERTS = {"tiny": 4, "default": 4, "paper": 16}
"""Experts per scale. The paper's main results use 16; at `default` the SLM is small and
its budget short, so 4 experts each get enough compute (DESIGN section 5)."""
ABLATION_EXPERTS = {"tiny": (4, 16), "default": (4, 8, 16), "paper": (4, 16, 64)}
"""Expert counts of the ablation (the paper's Figure 11: 4 to 64), among each scale's cached k-means sizes."""
SELECTIONS = ("top", "loss", "all")
EXPERT_METHOD = "slm-mix-expert"
"""Method name of the fine-tuning rows of single experts; the study reads the "slm-mix" rows."""


def n_experts(scale: str, experts: int | None = None) -> int:
    k = DEFAULT_EXPERTS.get(scale, 16) if experts is None else int(experts)
    if k < 2:
        raise LabError(f"a mixture needs at least 2 experts, got experts={k}")
    return k


def clustering(scale: str, k: int):
    """The corpus and its generic k-means clustering with k clusters (cached by `lab.cluster`).
    The scale's usual sizes are asked for too, so that a first call builds the shared cache whole."""
    corpus = load_corpus(scale)
    return corpus, cluster_corpus(corpus, ks=sorted(set(default_ks(scale)) | {k}))


def _check_options(options: dict) -> None:
    if options:
        raise LabError(f"slm-mix takes the options experts and selection, not {', '.join(sorted(options))}")


# -- pretraining -----------------------------------------------------------

def pretrain(method: str, scale: str, *, seed: int = 0, progress: bool = True, experts: int | None = None,
             budget_flops: Sequence[float] | None = None, callbacks=None, **options) -> list[dict]:
    """Train the mixture with a checkpoint at each budget (default: the SLM's budgets).

    One row per checkpoint: checkpoint, pretrain_flops and pretrain_tokens (the
    whole mixture's), valid_loss (generic validation, routed), seconds, and the
    routing statistics: experts, expert_windows (generic training windows per
    cluster), expert_tokens (tokens each expert trained on), expert_epochs,
    expert_valid_loss and expert_valid_tokens.
    """
    _check_options(options)
    k = n_experts(scale, experts)
    corpus, clusters = clustering(scale, k)
    tokens, valid = generic_streams(scale)
    ids = clusters.generic_ids[k]
    model_cfg = model_config("slm", scale)
    train_cfg = replace(train_config("slm", scale), seed=seed)
    root = runs.checkpoint_root(f"slm-mix{k}", scale, model_cfg, train_cfg, data_hash(tokens, ids))
    paths = pretrain_mixture(model_cfg, train_cfg, tokens, ids, k, root, budget_flops=budget_flops,
                             callbacks=callbacks, progress=progress)
    valid_ids = clusters.assign_tokens(valid, corpus_decode(corpus))[k]
    windows = np.bincount(ids, minlength=k)
    store = ResultStore.for_scale(scale)
    data = data_hash(tokens, ids, valid)
    rows = []
    for path in paths:
        key = {"method": "slm-mix", "scale": scale, "domain": "generic", "seed": seed, "experts": k,
               "checkpoint": f"{path.parent.name}/{path.name}"}
        row = cached_run(store, key, lambda: _evaluate_checkpoint(path, valid, valid_ids, windows, train_cfg),
                         data_hash=data)
        extra = row["extra"]
        rows.append({"checkpoint": str(path), "pretrain_flops": row["pretrain_flops"],
                     "pretrain_tokens": row["pretrain_tokens"], "valid_loss": extra["valid_loss"],
                     "seconds": row["seconds"], "experts": k,
                     **{name: extra[name] for name in ("expert_windows", "expert_tokens", "expert_epochs",
                                                       "expert_valid_loss", "expert_valid_tokens")}})
    return rows


def _evaluate_checkpoint(path: Path, valid: np.ndarray, valid_ids: np.ndarray, windows: np.ndarray,
                         train_cfg) -> dict:
    """The pretraining row of one checkpoint: costs, routed generic validation, routing statistics."""
    meta = read_meta(path)
    device = pick_device()
    model = load_mixture(path, device)
    routed = routed_evaluate(model, valid, valid_ids, max_tokens=train_cfg.eval_tokens)
    k = model.n_experts
    per_expert = meta["tokens"] // k
    context = model.config.context
    return {"pretrain_tokens": meta["tokens"], "pretrain_flops": meta["flops"], "specialize_flops": 0.0,
            "inference_flops_per_token": costs.inference_flops_per_token(model), "seconds": meta["seconds"],
            "ppl_before": routed.ppl, "valid_loss": routed.loss, "device": meta["device"],
            "run_flops": meta["run_flops"], "run_seconds": meta["run_seconds"], "precision": meta["precision"],
            "experts": k, "expert_windows": windows.tolist(), "expert_tokens": [per_expert] * k,
            "expert_epochs": [per_expert / (w * context) for w in windows.tolist()],
            "expert_valid_loss": routed.expert_loss, "expert_valid_tokens": routed.expert_tokens}


# -- expert selection ------------------------------------------------------

@dataclass
class Selection:
    """Which expert a rule picked and what picking it cost beyond that expert's own fine-tuning."""
    rule: str
    expert: int
    scores: list[float]
    """Per expert: histogram share ("top", higher is better), training-set loss ("loss") or best
    validation loss after fine-tuning ("all"); lower is better for the last two."""
    flops: float = 0.0
    tokens: int = 0
    seconds: float = 0.0
    finetuned: dict[int, dict] = field(default_factory=dict)
    """"all": every expert's fine-tuning row, by expert."""


def select_expert(rule: str, model: BatchedGPT, histogram: np.ndarray, train: np.ndarray,
                  finetune_expert: Callable[[int], dict] | None = None) -> Selection:
    """Pick the expert for a domain by `rule` ("top", "loss" or "all"), counting its cost.

    `histogram` is the domain training set's cluster histogram; `finetune_expert(e)`
    fine-tunes expert e and returns its result row (needed by "all" only).
    """
    if rule not in SELECTIONS:
        raise LabError(f"unknown expert selection {rule!r}: choose one of {', '.join(SELECTIONS)}")
    k = model.n_experts
    if len(histogram) != k:
        raise LabError(f"a histogram over {len(histogram)} clusters cannot pick one of {k} experts")
    t0 = time.perf_counter()
    if rule == "top":
        return Selection(rule, int(np.argmax(histogram)), [float(h) for h in histogram])
    if rule == "loss":
        evals = [evaluate(model.expert(e), train) for e in range(k)]
        losses = [ev.loss for ev in evals]
        flops = sum(ev.tokens for ev in evals) * costs.inference_flops_per_token(model)
        return Selection(rule, int(np.argmin(losses)), losses, flops=flops, seconds=time.perf_counter() - t0)
    if finetune_expert is None:
        raise LabError('selection "all" fine-tunes every expert: give finetune_expert')
    rows = {e: finetune_expert(e) for e in range(k)}
    best = [rows[e]["extra"]["best_valid_loss"] for e in range(k)]
    chosen = int(np.argmin(best))
    others = [rows[e] for e in range(k) if e != chosen]
    return Selection(rule, chosen, best, flops=sum(r["specialize_flops"] for r in others),
                     tokens=sum(r["specialize_tokens"] for r in others),
                     seconds=sum(r["seconds"] for r in others), finetuned=rows)


# -- specialization --------------------------------------------------------

def specialize(method: str, domain: str, set_tokens: int, scale: str, *, seed: int = 0,
               pretrain_flops: float | None = None, progress: bool = True, experts: int | None = None,
               selection: str = "top", **options) -> dict:
    _check_options(options)
    if selection not in SELECTIONS:
        raise LabError(f"unknown expert selection {selection!r}: choose one of {', '.join(SELECTIONS)}")
    k = n_experts(scale, experts)
    dom, train = domain_data(domain, set_tokens, scale)
    ckpt = pick_checkpoint(pretrain(method, scale, seed=seed, progress=progress, experts=k), pretrain_flops)
    mixture_ckpt = Path(ckpt["checkpoint"])
    config = finetune_config("slm", scale, len(train), seed=seed)
    key = {"method": "slm-mix", "scale": scale, "domain": dom.name, "set_tokens": len(train), "seed": seed,
           "experts": k, "selection": selection,
           "checkpoint": runs.file_hash(mixture_ckpt / "model.safetensors"), "finetune": asdict(config)}

    def finetune_expert(e: int) -> dict:
        return runs.specialize_run(extract(mixture_ckpt, e), "slm", scale, dom.name, train, dom.validation,
                                   dom.test, method=EXPERT_METHOD, seed=seed, config=config, progress=progress)

    def run() -> dict:
        corpus, clusters = clustering(scale, k)
        decode = corpus_decode(corpus)
        hist = clusters.histogram(train, decode, k, name=dom.name)
        model = load_mixture(mixture_ckpt, pick_device())
        chosen = select_expert(selection, model, hist, train, finetune_expert)
        row = chosen.finetuned.get(chosen.expert) or finetune_expert(chosen.expert)
        routed = routed_evaluate(model, dom.test, clusters.assign_tokens(dom.test, decode)[k])
        meta = read_meta(mixture_ckpt)
        record = row["extra"]
        return {
            "pretrain_tokens": meta["tokens"], "pretrain_flops": meta["flops"],
            "specialize_tokens": row["specialize_tokens"] + chosen.tokens,
            "specialize_flops": row["specialize_flops"] + chosen.flops,
            "inference_flops_per_token": row["inference_flops_per_token"],
            "seconds": row["seconds"] + chosen.seconds, "ppl_before": row["ppl_before"],
            "ppl_after": row["ppl_after"], "device": device_name(pick_device()),
            "experts": k, "selection": selection, "expert": chosen.expert, "selection_scores": chosen.scores,
            "selection_flops": chosen.flops, "selection_seconds": chosen.seconds,
            "histogram": hist.tolist(), "top_cluster": int(np.argmax(hist)), "top_share": float(hist.max()),
            "histogram_entropy": entropy(hist), "ppl_before_routed": routed.ppl,
            "finetune_flops": row["specialize_flops"], "best_valid_loss": record["best_valid_loss"],
            "best_step": record["best_step"], "stopped_by": record["stopped_by"],
            "expert_checkpoint": record["checkpoint_path"], "mixture_checkpoint": str(mixture_ckpt),
        }

    return cached_run(ResultStore.for_scale(scale), key, run, data_hash=data_hash(train, dom.validation, dom.test))


# -- what notebook 05 shows ------------------------------------------------

def generic_curves(scale: str, *, experts: int | None = None, with_llm: bool = True, seed: int = 0,
                   progress: bool = True) -> pd.DataFrame:
    """Generic validation perplexity against pretraining FLOPs: SLM, SLM-mix (routed) and,
    if asked, the LLM, all on the same validation windows. Trains what is not cached."""
    from . import pretrain as method_pretrain

    k = n_experts(scale, experts)
    runs_ = {"slm": method_pretrain("slm", scale, seed=seed, progress=progress),
             f"slm-mix ({k} experts)": pretrain("slm-mix", scale, seed=seed, progress=progress, experts=k)}
    if with_llm:
        runs_["llm"] = method_pretrain("llm", scale, seed=seed, progress=progress)
    rows = [{"method": name, "pretrain_flops": r["pretrain_flops"], "pretrain_tokens": r["pretrain_tokens"],
             "valid_loss": r["valid_loss"], "ppl": math.exp(r["valid_loss"])}
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
    if isinstance(experts, str):
        try:
            experts = [int(x) for x in experts.replace(" ", "").split(",") if x]
        except ValueError:
            raise LabError(f"experts={experts!r}: give comma-separated integers, e.g. \"4,8,16\"") from None
    return list(experts) or list(ABLATION_EXPERTS.get(scale, ABLATION_EXPERTS["paper"]))


def expert_ablation(scale: str, experts: str | Sequence[int] = "", fraction: float = 0.25, *, seed: int = 0,
                    progress: bool = True) -> pd.DataFrame:
    """Generic perplexity against the number of experts at one budget (`fraction` of the SLM's),
    with the SLM at the same budget as the 1-expert reference (the paper's Figure 11)."""
    from . import pretrain as method_pretrain

    if not 0 < fraction <= 1:
        raise LabError(f"fraction={fraction}: give a share of the pretraining budget in (0, 1]")
    budget = fraction * train_config("slm", scale).pretrain_flops
    slm = pick_checkpoint(method_pretrain("slm", scale, seed=seed, progress=progress), budget)
    rows = [{"experts": 1, "method": "slm", "pretrain_flops": slm["pretrain_flops"],
             "tokens_per_expert": slm["pretrain_tokens"], "ppl": math.exp(slm["valid_loss"])}]
    for k in parse_experts(experts, scale):
        (r,) = pretrain("slm-mix", scale, seed=seed, progress=progress, experts=k, budget_flops=[budget])
        rows.append({"experts": k, "method": "slm-mix", "pretrain_flops": r["pretrain_flops"],
                     "tokens_per_expert": r["expert_tokens"][0], "ppl": math.exp(r["valid_loss"])})
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
    """The three selection rules on every domain (the paper's Table 5), and the fine-tuned SLM
    for reference: one row per (domain, rule). `set_tokens` 0 means the scale's smallest set."""
    from . import specialize as method_specialize

    corpus = load_corpus(scale)
    set_tokens = set_tokens or min(corpus.scale.set_tokens)
    if isinstance(domains, str):
        domains = [d for d in domains.replace(" ", "").split(",") if d]
    rows = []
    for domain in domains or corpus.domains:
        for rule in SELECTIONS:
            r = specialize("slm-mix", domain, set_tokens, scale, seed=seed, progress=progress, experts=experts,
                           selection=rule)
            x = r["extra"]
            rows.append({"domain": domain, "method": f"slm-mix ({rule})", "selection": rule, "expert": x["expert"],
                         "top_cluster": x["top_cluster"], "top_share": x["top_share"], "histogram": x["histogram"],
                         "ppl_before": r["ppl_before"], "ppl_after": r["ppl_after"],
                         "ppl_before_routed": x["ppl_before_routed"], "specialize_flops": r["specialize_flops"],
                         "selection_flops": x["selection_flops"], "cached": r["cached"]})
        if with_slm:
            r = method_specialize("slm", domain, set_tokens, scale, seed=seed, progress=progress)
            rows.append({"domain": domain, "method": "slm", "selection": None, "expert": None, "top_cluster": None,
                         "top_share": None, "histogram": None, "ppl_before": r["ppl_before"],
                         "ppl_after": r["ppl_after"], "ppl_before_routed": None, "specialize_flops": r["specialize_flops"],
                         "selection_flops": 0.0, "cached": r["cached"]})
    return pd.DataFrame(rows).astype({"expert": "Int64", "top_cluster": "Int64"})


def _macro(ppl: pd.Series) -> float:
    """The paper's average over domains: exp of the mean log perplexity."""
    return float(np.exp(np.log(ppl.astype(float)).mean()))


def selection_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per method (SLM and each rule): macro test perplexity before and after fine-tuning over
    the domains, mean specialization FLOPs, and how often the rule picked the "top" expert."""
    top = table[table["selection"] == "top"].set_index("domain")["expert"]
    rows = []
    for method, g in table.groupby("method", sort=False):
        same = [top.get(d) == e for d, e in zip(g["domain"], g["expert"])] if g["selection"].notna().all() else []
        rows.append({"method": method, "domains": len(g), "macro_ppl_before": _macro(g["ppl_before"]),
                     "macro_ppl_after": _macro(g["ppl_after"]), "mean_specialize_flops": g["specialize_flops"].mean(),
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
        "selection": {m: {"macro_ppl_before": s.macro_ppl_before, "macro_ppl_after": s.macro_ppl_after,
                          "mean_specialize_flops": s.mean_specialize_flops} for m, s in summary.iterrows()},
        "domains": per_domain,
    }
