"""SLM and LLM: pretrain on the generic corpus, then fine-tune on the domain.

Two variants frame them: `slm-generic` is the pretrained SLM with no
fine-tuning (the paper's "generic only"), and `slm-nopt` is an SLM trained on
the domain's set alone, from scratch, with the same early stopping.
`lora_rank` fine-tunes LoRA adapters instead of every weight (`lab.training.lora`);
SLM-nopt refuses it, having no pretrained weights to keep frozen.
"""
from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

from ..device import device_name, pick_device
from ..nn import costs
from ..nn.checkpoints import load_model, read_meta
from ..nn.model import GPT, model_config
from ..scales import Scale
from ..training.evaluate import evaluate
from ..training.finetune import finetune, finetune_config
from ..training.train import seed_everything, train_config
from . import runs
from .base import LORA_RANK, LR_SCALE, Layout, Method, Step, finetune_flops, lora_rank, priced, scoring_flops
from .common import checkpoint_rows, domain_data, generic_streams, pick_checkpoint
from .store import ResultRow, ResultStore, cached_run, data_hash


def specialize_checkpoint(checkpoint: str, kind: str, domain: str, set_tokens: int, scale: str | Scale, *,
                          method: str, seed: int = 0, progress: bool = True, lora_rank: int = 0,
                          lr_scale: float = 1.0) -> ResultRow:
    """A dense checkpoint fine-tuned on a domain with the scale's recipe: the SLM's and the LLM's
    specialization, and the one-model reference of the ablations, which pretrain runs of their own."""
    dom, train = domain_data(domain, set_tokens, scale)
    config = finetune_config(kind, scale, len(train), seed=seed, lora_rank=lora_rank, lr_scale=lr_scale)
    return runs.specialize_run(checkpoint, kind, scale, dom.name, train, dom.validation, dom.test, method=method,
                               seed=seed, config=config, progress=progress)


class Dense(Method):
    """A transformer of the scale's SLM or LLM shape, pretrained on the generic corpus and
    fine-tuned on the domain set (`lab.methods.runs.specialize_run`)."""
    options = (LORA_RANK, LR_SCALE)

    def __init__(self, name: str, kind: str, title: str, seconds_per_flop: float):
        self.name, self.kind, self.title, self.seconds_per_flop = name, kind, title, seconds_per_flop
        self.needs = (name,)

    def pretrain(self, scale: str | Scale, *, seed: int = 0, progress: bool = True, budget_flops=None,
                 callbacks=None) -> list[dict]:
        tokens, valid = generic_streams(scale)
        paths = runs.pretrain_run(self.kind, scale, tokens, valid=valid, budget_flops=budget_flops, seed=seed,
                                  callbacks=callbacks, progress=progress)
        return checkpoint_rows(paths)

    def specialize(self, domain: str, set_tokens: int, scale: str | Scale, *, seed: int = 0,
                   pretrain_flops: float | None = None, progress: bool = True, lora_rank: int = 0,
                   lr_scale: float = 1.0) -> ResultRow:
        ckpt = pick_checkpoint(self.pretrain(scale, seed=seed, progress=progress), pretrain_flops)
        return specialize_checkpoint(ckpt["checkpoint"], self.kind, domain, set_tokens, scale, method=self.name,
                                     seed=seed, progress=progress, lora_rank=lora_rank, lr_scale=lr_scale)

    def price(self, step: Step, layout: Layout) -> float:
        # SLM-d fine-tunes its LLM teacher with this very recipe and keeps the row: at the
        # largest budget the LLM's own step then only reads it back (and scores the test set).
        if self.kind == "llm" and step.fraction == 1.0 and "slm-d" in layout.methods:
            return 2 * scoring_flops("llm", layout.scale)
        return finetune_flops(self.kind, layout.scale, step.set_tokens, lora_rank=lora_rank(step))

class GenericOnly(Method):
    """The pretrained SLM, scored on the domain without fine-tuning (the paper's "generic only")."""
    name, title, needs = "slm-generic", "SLM (generic only)", ("slm",)

    def specialize(self, domain: str, set_tokens: int, scale: str | Scale, *, seed: int = 0,
                   pretrain_flops: float | None = None, progress: bool = True) -> ResultRow:
        from . import METHODS

        dom, _ = domain_data(domain, set_tokens, scale)
        ckpt = pick_checkpoint(METHODS["slm"].pretrain(scale, seed=seed, progress=progress), pretrain_flops)
        return _generic_only(ckpt, dom, set_tokens, scale, seed)

    def price(self, step: Step, layout: Layout) -> float:
        return scoring_flops("slm", layout.scale)


class FromScratch(Method):
    """SLM-nopt: an SLM trained on the domain set alone, from random weights."""
    name, title, from_scratch, curve = "slm-nopt", "SLM-nopt", True, False
    refused = {"lora_rank": "it trains every weight from random initialisation, and LoRA adapts a pretrained "
                            "model whose weights it keeps"}

    def specialize(self, domain: str, set_tokens: int, scale: str | Scale, *, seed: int = 0,
                   pretrain_flops: float | None = None, progress: bool = True) -> ResultRow:
        dom, train = domain_data(domain, set_tokens, scale)
        return _from_scratch(dom, train, scale, seed, progress)

    def steps(self, layout: Layout) -> list[Step]:
        # No pretraining, so no budgets to sweep: one step per domain and set.
        opts = tuple(sorted(self.study_options(layout.options).items()))
        steps = [Step(self.name, "specialize", d, n, options=opts) for n in layout.set_sizes for d in layout.domains]
        return [priced(step, self.price(step, layout)) for step in steps]

    def price(self, step: Step, layout: Layout) -> float:
        return finetune_flops("slm", layout.scale, step.set_tokens, from_scratch=True)


def _generic_only(ckpt: dict, dom, set_tokens: int, scale: str | Scale, seed: int) -> ResultRow:
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


def _from_scratch(dom, train, scale: str | Scale, seed: int, progress: bool) -> ResultRow:
    """SLM-nopt: a fresh SLM trained on the domain set alone. It starts from random
    weights, so it takes the pretraining learning rate and twice the fine-tuning cap."""
    cfg = model_config("slm", scale)
    base = finetune_config("slm", scale, len(train), seed=seed)
    ft = replace(base, lr=train_config("slm", scale).lr, warmup_steps=50, max_steps=2 * base.max_steps)
    key = {"method": "slm-nopt", "scale": scale, "domain": dom.name, "set_tokens": len(train), "seed": seed,
           "model": asdict(cfg), "finetune": ft.key()}

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


SLM = Dense("slm", "slm", "SLM", seconds_per_flop=1.8e-11)
LLM = Dense("llm", "llm", "LLM", seconds_per_flop=8.5e-12)
"""The LLM's whole pretraining at `default` ran 41k tokens/s at 2.84 MFLOPs a token on the 2-core CPU."""
