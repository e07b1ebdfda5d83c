"""SLM-mix: pretrain one SLM per generic cluster, then specialize the expert a domain picks.

Pretraining (`pretrain`) clusters the generic windows with k-means (`lab.data.cluster`,
k = the number of experts) and trains the k experts together, each on its own
cluster, at the SLM's FLOPs: each sees 1/k of the SLM's tokens (`lab.nn.mixture`).
One run writes a checkpoint at each of the SLM's budget fractions. Its generic
validation loss routes each validation window to its cluster's expert.

Specialization (`specialize`) picks one expert for the domain, saves it as a
plain SLM checkpoint and fine-tunes it like the SLM (`lab.methods.runs.specialize_run`;
with `lora_rank`, LoRA adapters on that plain SLM). Three rules pick it (the paper's Table 5):

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

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..data.cluster import cluster_corpus, corpus_decode, default_ks, entropy
from ..data.corpus import load_corpus
from ..device import device_name, pick_device
from ..errors import LabError
from ..nn import costs
from ..nn.checkpoints import read_meta
from ..nn.mixture import BatchedGPT, extract, load_mixture
from ..nn.model import model_config
from ..scales import Scale, get_scale
from ..training.evaluate import evaluate
from ..training.finetune import finetune_config
from ..training.routing import pretrain_mixture, routed_evaluate
from ..training.train import train_config
from . import runs
from .base import LORA_RANK, LR_SCALE, Layout, Method, Option, Step, at_least, finetune_flops, lora_rank
from .common import domain_data, generic_streams, pick_checkpoint
from .store import ResultRow, ResultStore, cached_run, data_hash

SELECTIONS = ("top", "loss", "all")
EXPERT_METHOD = "slm-mix-expert"
"""Method name of the fine-tuning rows of single experts; the study reads the "slm-mix" rows."""


def n_experts(scale: str, experts: int | None = None) -> int:
    k = get_scale(scale).mixture_experts if experts is None else int(experts)
    if k < 2:
        raise LabError(f"a mixture needs at least 2 experts, got experts={k}")
    return k


def clustering(scale: str, k: int):
    """The corpus and its generic k-means clustering with k clusters (cached by `lab.data.cluster`).
    The scale's usual sizes are asked for too, so that a first call builds the shared cache whole."""
    corpus = load_corpus(scale)
    return corpus, cluster_corpus(corpus, ks=sorted(set(default_ks(scale)) | {k}))


# -- pretraining -----------------------------------------------------------

def pretrain(method: str, scale: str, *, seed: int = 0, progress: bool = True, experts: int | None = None,
             budget_flops: Sequence[float] | None = None, callbacks=None) -> list[dict]:
    """Train the mixture with a checkpoint at each budget (default: the SLM's budgets).

    One row per checkpoint: checkpoint, pretrain_flops and pretrain_tokens (the
    whole mixture's), valid_loss (generic validation, routed), seconds, and the
    routing statistics: experts, expert_windows (generic training windows per
    cluster), expert_tokens (tokens each expert trained on), expert_epochs,
    expert_valid_loss and expert_valid_tokens.
    """
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
                     "seconds": row["seconds"], "device": row["device"], "experts": k,
                     "steps": read_meta(path).get("step"),
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
               selection: str = "top", lora_rank: int = 0, lr_scale: float = 1.0,
               budget_flops: Sequence[float] | None = None) -> ResultRow:
    """SLM-mix on a domain: the expert `selection` picks, fine-tuned on the domain's set, from the mixture
    checkpoint nearest `pretrain_flops` of the run with checkpoints at `budget_flops` (default: the
    study's run; the ablations pass a shorter run of their own)."""
    if selection not in SELECTIONS:
        raise LabError(f"unknown expert selection {selection!r}: choose one of {', '.join(SELECTIONS)}")
    k = n_experts(scale, experts)
    dom, train = domain_data(domain, set_tokens, scale)
    ckpt = pick_checkpoint(pretrain(method, scale, seed=seed, progress=progress, experts=k, budget_flops=budget_flops),
                           pretrain_flops)
    mixture_ckpt = Path(ckpt["checkpoint"])
    config = finetune_config("slm", scale, len(train), seed=seed, lora_rank=lora_rank, lr_scale=lr_scale)
    key = {"method": "slm-mix", "scale": scale, "domain": dom.name, "set_tokens": len(train), "seed": seed,
           "experts": k, "selection": selection,
           "checkpoint": runs.file_hash(mixture_ckpt / "model.safetensors"), "finetune": config.key()}

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


class Mixture(Method):
    name, title, needs = "slm-mix", "SLM-mix", ("slm-mix",)
    options = (
        Option("experts", int, "number of experts (clusters of the generic corpus)", pretrain=True, check=at_least(2)),
        Option("selection", str, "expert for the domain: most frequent cluster, lowest loss, or fine-tune all",
               choices=SELECTIONS),
        LORA_RANK,
        LR_SCALE,
    )

    def pretrain(self, scale: str | Scale, *, seed: int = 0, progress: bool = True, budget_flops=None,
                 callbacks=None, **options) -> list[dict]:
        return pretrain(self.name, scale, seed=seed, progress=progress, budget_flops=budget_flops,
                        callbacks=callbacks, **options)

    def specialize(self, domain: str, set_tokens: int, scale: str | Scale, *, seed: int = 0,
                   pretrain_flops: float | None = None, progress: bool = True, **options) -> ResultRow:
        return specialize(self.name, domain, set_tokens, scale, seed=seed, pretrain_flops=pretrain_flops,
                          progress=progress, **options)

    def price(self, step: Step, layout: Layout) -> float:
        """The chosen expert's fine-tuning, plus what the rule pays to choose it (`select_expert`)."""
        options = dict(step.options)
        base = finetune_flops("slm", layout.scale, step.set_tokens, lora_rank=lora_rank(step))
        k = n_experts(layout.scale, options.get("experts"))
        selection = options.get("selection", "top")
        if selection == "all":
            return k * base
        if selection == "loss":
            return base + k * step.set_tokens * costs.forward_flops_per_token(model_config("slm", layout.scale))
        return base
