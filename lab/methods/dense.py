"""SLM and LLM: pretrain on the generic corpus, then fine-tune on the domain.

Two variants frame them: `slm-generic` is the pretrained SLM with no
fine-tuning (the paper's "generic only"), and `slm-nopt` is an SLM trained on
the domain's set alone, from scratch, with the same early stopping.
"""
from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

from ..nn import costs
from . import runs
from ..device import device_name, pick_device
from ..training.evaluate import evaluate
from ..training.finetune import finetune, finetune_config
from ..nn.model import GPT, model_config, train_config
from .store import ResultStore, cached_run, data_hash
from ..training.train import load_model, read_meta, seed_everything
from .common import checkpoint_rows, domain_data, generic_streams, pick_checkpoint


def _kind(method: str) -> str:
    return "llm" if method == "llm" else "slm"


def pretrain(method: str, scale: str, *, seed: int = 0, progress: bool = True,
             budget_flops=None, callbacks=None) -> list[dict]:
    tokens, valid = generic_streams(scale)
    paths = runs.pretrain_run(_kind(method), scale, tokens, valid=valid, budget_flops=budget_flops, seed=seed,
                              callbacks=callbacks, progress=progress)
    return checkpoint_rows(paths)


def specialize(method: str, domain: str, set_tokens: int, scale: str, *, seed: int = 0,
               pretrain_flops: float | None = None, progress: bool = True) -> dict:
    dom, train = domain_data(domain, set_tokens, scale)
    if method == "slm-nopt":
        return _from_scratch(dom, train, scale, seed, progress)
    ckpt = pick_checkpoint(pretrain(method, scale, seed=seed, progress=progress), pretrain_flops)
    if method == "slm-generic":
        return _generic_only(ckpt, dom, set_tokens, scale, seed)
    return runs.specialize_run(ckpt["checkpoint"], _kind(method), scale, dom.name, train, dom.validation,
                               dom.test, method=method, seed=seed, progress=progress)


def _generic_only(ckpt: dict, dom, set_tokens: int, scale: str, seed: int) -> dict:
    key = {"method": "slm-generic", "scale": scale, "domain": dom.name, "set_tokens": set_tokens, "seed": seed,
           "checkpoint": runs.file_hash(Path(ckpt["checkpoint"]) / "model.safetensors")}

    def run() -> dict:
        meta = read_meta(ckpt["checkpoint"])
        device = pick_device()
        model = load_model(ckpt["checkpoint"], device)
        ppl = evaluate(model, dom.test).ppl
        return {"pretrain_tokens": meta["tokens"], "pretrain_flops": meta["flops"], "specialize_flops": 0.0,
                "specialize_tokens": 0, "inference_flops_per_token": costs.inference_flops_per_token(model),
                "seconds": 0.0, "ppl_before": ppl, "ppl_after": ppl, "device": device_name(device),
                "checkpoint_path": ckpt["checkpoint"]}

    return cached_run(ResultStore.for_scale(scale), key, run, data_hash=data_hash(dom.test))


def _from_scratch(dom, train, scale: str, seed: int, progress: bool) -> dict:
    """SLM-nopt: a fresh SLM trained on the domain set alone. It starts from random
    weights, so it takes the pretraining learning rate and twice the fine-tuning cap."""
    cfg = model_config("slm", scale)
    base = finetune_config("slm", scale, len(train), seed=seed)
    ft = replace(base, lr=train_config("slm", scale).lr, warmup_steps=50, max_steps=2 * base.max_steps)
    key = {"method": "slm-nopt", "scale": scale, "domain": dom.name, "set_tokens": len(train), "seed": seed,
           "model": asdict(cfg), "finetune": asdict(ft)}

    def run() -> dict:
        device = pick_device()
        seed_everything(seed)
        model = GPT(cfg).to(device)
        before = evaluate(model, dom.test)
        model, record = finetune(model, train, dom.validation, ft, device=device, progress=progress)
        after = evaluate(model, dom.test)
        return {"pretrain_tokens": 0, "pretrain_flops": 0.0, "specialize_tokens": record.tokens_to_best,
                "specialize_flops": record.flops_to_best,
                "inference_flops_per_token": costs.inference_flops_per_token(model), "seconds": record.seconds,
                "ppl_before": before.ppl, "ppl_after": after.ppl, "device": device_name(device),
                **record.to_dict()}

    return cached_run(ResultStore.for_scale(scale), key, run, data_hash=data_hash(train, dom.validation, dom.test))
