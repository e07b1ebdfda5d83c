"""Many fine-tunes of one shape at once: the models stacked into one `BatchedGPT`, each with its own data.

A study fine-tunes the same shape again and again (every domain from one checkpoint,
every checkpoint of a curve), and a small model leaves most of a device idle: on a
GPU a step of the default SLM is launch-bound, on a CPU its matrices are thin. Stacked,
k fine-tunes take one step of k-wide matrices instead of k steps.

Each member trains exactly as `lab.training.finetune.finetune` would train it alone:

- its batches come from its own `BatchSampler`, seeded as the lone run's;
- the stacked model's loss has the gradient of the members' sum, its gradient is
  clipped member by member, and AdamW is elementwise, so a member's update is the one it
  would get alone (the k-wide matrix products round differently: floating-point
  tolerance, not bit for bit);
- it is scored on its own validation set, by the same `evaluate`, keeps its best weights
  and stops on its own patience. A member that stops leaves the stack: the rest go on
  as a smaller stack, their optimizer state carried over.

Its record is the lone run's: the same steps, FLOPs and evaluations; `seconds` is its
share of the stack's wall time (each step's time split among the members it trained).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from ..data.tokens import BatchSampler
from ..errors import LabError
from ..nn import costs
from ..nn.mixture import BatchedGPT
from ..nn.model import GPT
from .evaluate import evaluate
from .finetune import FinetuneConfig, FinetuneRecord, finetune_train_config
from .lora import trained_params
from .train import Trainer


class StackedSampler:
    """Independent samplers drawn together: x, y [B, k, T], member e's windows those its sampler gives alone."""

    def __init__(self, samplers: Sequence[BatchSampler]):
        self.samplers = list(samplers)
        self.batch_size = self.samplers[0].batch_size
        self.context = self.samplers[0].context
        self.tokens_per_batch = len(self.samplers) * self.batch_size * self.context

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = zip(*(s.next() for s in self.samplers))
        return torch.stack(xs, 1), torch.stack(ys, 1)


@dataclass
class _Member:
    """One fine-tune of the stack: its data and what the lone run's loop would hold."""
    train: np.ndarray
    valid: np.ndarray
    sampler: BatchSampler
    best_state: dict
    initial: float
    best_loss: float
    best_step: int = 0
    bad: int = 0
    seconds: float = 0.0
    best_seconds: float = 0.0
    eval_flops: float = 0.0
    history: list[tuple[int, float]] = field(default_factory=list)


def finetune_many(models: Sequence[GPT], trains: Sequence[np.ndarray], valids: Sequence[np.ndarray],
                  config: FinetuneConfig, *, device: torch.device | str | None = None) -> list[tuple[GPT, FinetuneRecord]]:
    """Fine-tune every model (one shape) on its own set with one recipe, all at once; returns, in
    order, each model holding its best weights (a new `GPT`) and its record, as `finetune` would."""
    if not (len(models) == len(trains) == len(valids)) or not models:
        raise LabError(f"finetune_many needs one training and one validation set per model: got {len(models)} "
                       f"models, {len(trains)} training and {len(valids)} validation sets")
    cfg = models[0].config
    if any(m.config != cfg for m in models):
        raise LabError("finetune_many stacks models of one shape: fine-tune the others in a stack of their own")
    if config.lora_rank:
        raise LabError("finetune_many fine-tunes every weight: run LoRA fine-tunes one by one (lab.training.finetune)")
    train_cfg = finetune_train_config(config)
    lone_flops_per_step = costs.train_flops(models[0], config.batch_size * cfg.context, 1)
    members = []
    for model, train, valid in zip(models, trains, valids):
        members.append(_Member(train=train, valid=valid,
                               sampler=BatchSampler(train, config.batch_size, cfg.context, seed=config.seed),
                               best_state={}, initial=0.0, best_loss=0.0))
    stack = _stack(models)
    trainer = Trainer(stack, train_cfg, StackedSampler([m.sampler for m in members]), device=device, progress=False)
    # The lone run's loop: train while under the step cap and within patience.
    active = list(range(len(members))) if config.max_steps > 0 and config.patience > 0 else []
    for e, m in enumerate(members):
        m.initial = m.best_loss = _score(trainer, e, m)
        m.history.append((0, m.initial))
        m.best_state = _weights(trainer.model, e)
    while active:
        t0 = time.perf_counter()
        trainer.train_until(min(trainer.step + config.eval_every, config.max_steps))
        share = (time.perf_counter() - t0) / len(active)
        stopped = []
        for slot, i in enumerate(active):
            m = members[i]
            m.seconds += share
            loss = _score(trainer, slot, m)
            m.history.append((trainer.step, loss))
            if loss < m.best_loss:
                m.best_loss, m.best_step, m.bad, m.best_seconds = loss, trainer.step, 0, m.seconds
                m.best_state = _weights(trainer.model, slot)
            else:
                m.bad += 1
            if m.bad >= config.patience or trainer.step >= config.max_steps:
                stopped.append(slot)
        if stopped:
            keep = [slot for slot in range(len(active)) if slot not in stopped]
            active = [active[slot] for slot in keep]
            if active:
                trainer = _shrink(trainer, keep, StackedSampler([members[i].sampler for i in active]), train_cfg)
    out = []
    for m in members:
        model = GPT(cfg)
        model.load_state_dict(m.best_state)
        steps = m.history[-1][0]
        out.append((model, FinetuneRecord(
            initial_valid_loss=m.initial, best_valid_loss=m.best_loss, best_step=m.best_step, steps=steps,
            tokens_to_best=m.best_step * config.batch_size * cfg.context,
            flops_to_best=m.best_step * lone_flops_per_step, seconds_to_best=m.best_seconds,
            flops=steps * lone_flops_per_step, seconds=m.seconds, eval_flops=m.eval_flops,
            stopped_by="patience" if m.bad >= config.patience else "max_steps", history=m.history,
            trained_params=trained_params(model))))
    return out


def _stack(models: Sequence[GPT]) -> BatchedGPT:
    stack = BatchedGPT(models[0].config, len(models), init=False)
    for e, model in enumerate(models):
        stack.set_expert(e, model)
    return stack


def _weights(stack: BatchedGPT, slot: int) -> dict:
    return {k: v.cpu() for k, v in stack.expert(slot).state_dict().items()}


def _score(trainer: Trainer, slot: int, m: _Member) -> float:
    """The member's validation loss, as the lone run's `Trainer.evaluate` computes it."""
    model, cfg = trainer.model.expert(slot), trainer.config
    result = evaluate(model, m.valid, batch_size=cfg.micro_batch or cfg.batch_size, max_tokens=cfg.eval_tokens,
                      spread=cfg.eval_spread, precision=cfg.precision)
    m.eval_flops += result.tokens * costs.inference_flops_per_token(model)
    return result.loss


@torch.no_grad()
def _shrink(trainer: Trainer, keep: list[int], sampler: StackedSampler, train_cfg) -> Trainer:
    """A trainer for the members at stack slots `keep`: their weights and AdamW moments, its step and schedule."""
    old = trainer.model
    stack = BatchedGPT(old.config, len(keep), init=False).to(trainer.device)
    new = Trainer(stack, train_cfg, sampler, device=trainer.device, progress=False)
    index = torch.tensor(keep, device=trainer.device)
    old_slices, new_slices = old._slices(), stack._slices()
    for name, (p_old, view_old) in old_slices.items():
        p_new, view_new = new_slices[name]
        view_new(p_new.data).copy_(view_old(p_old.data).index_select(0, index))
        state = trainer.optimizer.state.get(p_old)
        if state:
            new.optimizer.state[p_new] = {
                key: value.clone() if key == "step" else
                view_old(value).index_select(0, index).reshape(p_new.shape).clone()
                for key, value in state.items()}
    new.step = trainer.step
    return new
