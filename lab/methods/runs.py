"""One call per experiment step, cached: pretrain a named model, specialize a checkpoint.

`pretrain_run` writes its checkpoints under `<scale dir>/checkpoints/`, in a
folder named by the model, training config and data hashes, so asking again
reuses them and asking for larger budgets continues the same run.
`specialize_run` fine-tunes a checkpoint on one domain and stores the result
row; the same checkpoint, data and recipe return the stored row without training.
Asked to keep the fine-tuned weights (distillation needs its teacher's), it also
writes them under `<scale dir>/checkpoints/finetuned/`, named by the run's cache key.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .. import checks
from ..device import device_name, pick_device
from ..nn import costs
from ..nn.checkpoints import load_model, read_meta, save_model
from ..nn.model import GPTConfig, model_config
from ..paths import scale_dir
from ..training.evaluate import evaluate
from ..training.finetune import FinetuneConfig, finetune, finetune_config
from ..training import distributed
from ..training.train import TrainConfig, pretrain, train_config
from .store import ResultRow, ResultStore, cached_run, data_hash, stable_hash


def checkpoint_root(kind: str, scale: str, model_cfg: GPTConfig, train_cfg: TrainConfig, data: str) -> Path:
    key = stable_hash({"kind": kind, "model": asdict(model_cfg), "train": train_cfg.run_fields()})
    return scale_dir(scale) / "checkpoints" / f"{kind}-{key[:10]}-{data[:8]}"


def pretrain_run(kind: str, scale: str, tokens: np.ndarray, *, valid: np.ndarray | None = None,
                 budget_flops: Sequence[float] | None = None, seed: int = 0, store: ResultStore | None = None,
                 model_cfg: GPTConfig | None = None, train_cfg: TrainConfig | None = None,
                 callbacks: dict[str, Sequence[Callable]] | None = None, progress: bool = True) -> list[Path]:
    """Pretrain the scale's SLM or LLM on generic `tokens` with a checkpoint at each budget
    (default: the scale's); one result row per checkpoint (method = kind, domain "generic",
    ppl_before = generic validation perplexity). `seed` replaces the training config's.
    Returns the checkpoint folders."""
    model_cfg = model_cfg or model_config(kind, scale)
    train_cfg = replace(train_cfg or train_config(kind, scale), seed=seed)
    store = store or ResultStore.for_scale(scale)
    data = data_hash(tokens)
    root = checkpoint_root(kind, scale, model_cfg, train_cfg, data)
    paths = pretrain(model_cfg, train_cfg, tokens, root, budget_flops=budget_flops, valid=valid,
                     callbacks=callbacks, progress=progress)
    if not distributed.is_main():  # under torchrun, rank 0 alone stores the rows
        return paths
    for path in paths:
        meta = read_meta(path)
        key = {"method": kind, "scale": scale, "domain": "generic", "seed": seed,
               "checkpoint": f"{path.parent.name}/{path.name}"}
        cached_run(store, key, lambda: {
            "pretrain_tokens": meta["tokens"], "pretrain_flops": meta["flops"], "specialize_flops": 0.0,
            "inference_flops_per_token": costs.inference_flops_per_token(GPTConfig(**meta["model_config"])),
            "seconds": meta["seconds"], "ppl_before": _ppl(meta["valid_loss"]), "device": meta["device"],
            "run_flops": meta["run_flops"], "run_seconds": meta["run_seconds"], "precision": meta["precision"],
        }, data_hash=data)
    return paths


def specialize_run(checkpoint: str | Path, kind: str, scale: str, domain: str, train: np.ndarray,
                   valid: np.ndarray, test: np.ndarray, *, method: str | None = None, seed: int = 0,
                   config: FinetuneConfig | None = None, store: ResultStore | None = None,
                   progress: bool = True, keep_weights: bool = False) -> ResultRow:
    """Fine-tune a checkpoint on one domain (`train` is its in-domain set, `valid` drives early
    stopping) and score the domain's `test` stream before and after. Returns the result row:
    `seconds` and `specialize_flops` are the fine-tuning's (FLOPs up to the kept weights),
    the full `FinetuneRecord` is in `extra`.

    `keep_weights` also saves the fine-tuned model as a checkpoint folder that
    `lab.nn.checkpoints.load_model` reads, returned as the row's `finetuned_path`. The
    weights are not part of the key: a stored row whose folder is missing (it ran
    without `keep_weights`) fine-tunes again from the same seed to write them,
    and keeps its stored row."""
    checkpoint = Path(checkpoint)
    meta = read_meta(checkpoint)
    config = config or finetune_config(kind, scale, len(train), seed=seed)
    store = store or ResultStore.for_scale(scale)
    key = {"method": method or kind, "scale": scale, "domain": domain, "set_tokens": len(train), "seed": seed,
           "checkpoint": file_hash(checkpoint / "model.safetensors"), "finetune": config.key()}
    hashed = data_hash(train, valid, test)
    cache_key = stable_hash([stable_hash(key), hashed])  # as `cached_run` names the row
    kept = scale_dir(scale) / "checkpoints" / "finetuned" / f"{method or kind}-{cache_key}"

    def run() -> dict:
        device = pick_device()
        model = load_model(checkpoint, device)
        before = evaluate(model, test)
        model, record = finetune(model, train, valid, config, device=device, progress=progress)
        after = evaluate(model, test)
        if keep_weights:
            save_model(model, kept, base_checkpoint=str(checkpoint), domain=domain, seed=seed,
                       set_tokens=len(train), finetune=record.to_dict())
        return {
            "pretrain_tokens": meta["tokens"], "pretrain_flops": meta["flops"],
            "specialize_tokens": record.tokens_to_best, "specialize_flops": record.flops_to_best,
            "inference_flops_per_token": costs.inference_flops_per_token(model),
            "seconds": record.seconds, "ppl_before": before.ppl, "ppl_after": after.ppl,
            "device": device_name(device), "checkpoint_path": str(checkpoint), "pretrain_seconds": meta["seconds"],
            **record.to_dict(),
        }

    if not keep_weights:
        return cached_run(store, key, run, data_hash=hashed)
    if (kept / "meta.json").exists():
        row = cached_run(store, key, run, data_hash=hashed)
    else:
        fresh = run()
        row = cached_run(store, key, lambda: fresh, data_hash=hashed)
    return dataclasses.replace(row, extra={**row.extra, "finetuned_path": str(kept)})


def _ppl(loss: float | None) -> float | None:
    return None if loss is None else math.exp(loss)


def file_hash(path: Path) -> str:
    return checks.sha256(path)[:16]
