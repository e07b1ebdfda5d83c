"""SLM-hn: pretrain a hyper-network on clustered generic text, instantiate an SLM for a domain, fine-tune it.

Pretraining (`pretrain`) clusters the generic windows with k-means (`lab.data.cluster`,
k = the number of experts) and trains `lab.nn.hypernet.HyperGPT` with each window
routed through its cluster's generated MLPs, on the SLM's optimizer, schedule
and FLOP budgets (`lab.training.train.pretrain`). The FLOPs count the weight generation,
so at equal FLOPs it sees a little fewer tokens than the SLM. Its generic
validation loss routes each validation window to its cluster.

Specialization (`specialize`) writes the domain's SLM out of the hyper-network
in closed form and fine-tunes it like the SLM (`lab.methods.runs.specialize_run`):

- instantiate="top" (the paper's): the expert of the domain's most frequent
  cluster on its training set;
- instantiate="histogram": the experts' codes mixed by the domain's whole
  cluster histogram, so the model is the histogram-weighted sum of the
  experts' MLP matrices; meant for domains spread over several clusters, where
  the paper found the top cluster does not help (finding 7).

Inference costs exactly one SLM either way. The "slm-hn" result row carries the
instantiation, the domain's histogram, its entropy and top-cluster share; the
fine-tuning itself is stored as an "slm-hn-instance" row, as `specialize_run` writes it.
The instance is a plain SLM, so `lora_rank` fine-tunes LoRA adapters on it like on the SLM.

Shapes (`Scale.hypernet` in `lab.scales`). At `default`: k = 32 clusters (the paper's count) sharing
banks of h = 8 matrices through codes of m = 8, so the experts' MLPs span 8 SLMs' worth (m and h bound
the rank: more of either than the other adds nothing). A short measurement at the first default's
1/16 budget (1.1M tokens; generic validation perplexity, the SLM 178.1) gave k = 4: 166.6, k = 16:
166.9, k = 64: 173.9 (h = 8), and k = 16 with h = 16: 166.2. A step costs 1.02x an SLM step in FLOPs
and 1.27x in time on the 2-core reference machine (`benchmarks/bench_hypernet.py`, each window of the
batch from a random cluster; the paper measured 1.64x in GPU-hours). `paper`: the paper's k = 32,
with m = h = 16 (1.0B pretraining parameters, 8x the SLM; not measured here).
"""
from __future__ import annotations

import math
from dataclasses import asdict, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from ..data.cluster import cluster_corpus, corpus_decode, default_ks, entropy
from ..data.corpus import load_corpus
from ..device import device_name, pick_device
from ..errors import LabError
from ..nn.checkpoints import read_meta, save_model
from ..nn.hypernet import HyperConfig, HyperGPT, load_hypernet
from ..nn.model import model_config
from ..scales import Scale, get_scale
from ..training.finetune import finetune_config
from ..training.routing import RoutedSampler, routed_evaluator
from ..training.train import pretrain as train_pretrain
from ..training.train import train_config
from . import runs
from .base import LORA_RANK, LR_SCALE, Layout, Method, Option, Step, at_least, finetune_flops, lora_rank
from .common import checkpoint_rows, domain_data, generic_streams, pick_checkpoint
from .store import ResultRow, ResultStore, cached_run, data_hash, stable_hash

INSTANTIATIONS = ("top", "histogram")
INSTANCE_METHOD = "slm-hn-instance"
"""Method name of the fine-tuning rows of instantiated SLMs; the study reads the "slm-hn" rows."""


def hyper_config(scale: str, experts: int | None = None) -> HyperConfig:
    """The scale's SLM shape with the hyper-network's k, m, h (`experts` replaces k)."""
    k, m, h = get_scale(scale).hypernet
    k = k if experts is None else int(experts)
    if k < 1:
        raise LabError(f"experts={k}: the hyper-network needs at least one expert")
    return HyperConfig(**asdict(model_config("slm", scale)), n_experts=k, code_dim=m, bank_size=h)


def clustering(scale: str, k: int):
    """The corpus and its generic k-means clustering with k clusters (cached by `lab.data.cluster`).
    The scale's usual sizes are asked for too, so that a first call builds the shared cache whole."""
    corpus = load_corpus(scale)
    clusters = cluster_corpus(corpus, ks=sorted(set(default_ks(scale)) | {k}))
    if k not in clusters.ks:
        raise LabError(f"experts={k}: the {scale} generic corpus has too few windows for {k} clusters "
                       f"(usable: {', '.join(map(str, clusters.ks))}); choose fewer experts")
    return corpus, clusters


# -- pretraining -----------------------------------------------------------

def pretrain(method: str, scale: str, *, seed: int = 0, progress: bool = True, experts: int | None = None,
             budget_flops: Sequence[float] | None = None, callbacks=None) -> list[dict]:
    """Train the hyper-network with a checkpoint at each budget (default: the SLM's budgets).

    One row per checkpoint: checkpoint, pretrain_flops (generation included),
    pretrain_tokens, valid_loss (generic validation, routed), seconds, and the
    shapes (experts, code_dim, bank_size)."""
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
    folder (`lab.nn.checkpoints.load_model` reads it); reused when it exists. "top" takes the expert of
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
               instantiate: str = "top", lora_rank: int = 0, lr_scale: float = 1.0,
               budget_flops: Sequence[float] | None = None) -> ResultRow:
    """SLM-hn on a domain: the SLM the hyper-network generates for the domain's histogram, fine-tuned on its
    set, from the checkpoint nearest `pretrain_flops` of the run with checkpoints at `budget_flops` (default:
    the study's run; the ablations pass a shorter run of their own)."""
    if instantiate not in INSTANTIATIONS:
        raise LabError(f"unknown instantiation {instantiate!r}: choose one of {', '.join(INSTANTIATIONS)}")
    cfg = hyper_config(scale, experts)
    dom, train = domain_data(domain, set_tokens, scale)
    ckpt = Path(pick_checkpoint(pretrain(method, scale, seed=seed, progress=progress, experts=cfg.n_experts,
                                         budget_flops=budget_flops), pretrain_flops)["checkpoint"])
    config = finetune_config("slm", scale, len(train), seed=seed, lora_rank=lora_rank, lr_scale=lr_scale)
    key = {"method": "slm-hn", "scale": scale, "domain": dom.name, "set_tokens": len(train), "seed": seed,
           "experts": cfg.n_experts, "instantiate": instantiate,
           "checkpoint": runs.file_hash(ckpt / "model.safetensors"), "finetune": config.key()}

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


class HyperNetwork(Method):
    name, title, needs = "slm-hn", "SLM-hn", ("slm-hn",)
    options = (
        Option("experts", int, "number of experts (clusters of the generic corpus)", pretrain=True, check=at_least(1)),
        Option("instantiate", str, "from the domain's top cluster or its whole cluster histogram",
               choices=INSTANTIATIONS),
        LORA_RANK,
        LR_SCALE,
    )
    seconds_per_flop = 2.2e-11
    """A step takes 1.27x the SLM's time for 1.02x its FLOPs (`benchmarks/bench_hypernet.py`)."""

    def pretrain(self, scale: str | Scale, *, seed: int = 0, progress: bool = True, budget_flops=None,
                 callbacks=None, **options) -> list[dict]:
        return pretrain(self.name, scale, seed=seed, progress=progress, budget_flops=budget_flops,
                        callbacks=callbacks, **options)

    def specialize(self, domain: str, set_tokens: int, scale: str | Scale, *, seed: int = 0,
                   pretrain_flops: float | None = None, progress: bool = True, **options) -> ResultRow:
        return specialize(self.name, domain, set_tokens, scale, seed=seed, pretrain_flops=pretrain_flops,
                          progress=progress, **options)

    def price(self, step: Step, layout: Layout) -> float:
        """The instantiated SLM's fine-tuning (instantiation is closed-form)."""
        return finetune_flops("slm", layout.scale, step.set_tokens, lora_rank=lora_rank(step))
