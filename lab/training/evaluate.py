"""Held-out loss and perplexity: per stream, per domain, and the paper's macro-average."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from ..data.tokens import eval_batches
from ..device import autocast, autocast_dtype
from ..errors import LabError


@dataclass(frozen=True)
class Eval:
    loss: float
    """Mean next-token cross-entropy, in nats per token."""
    tokens: int

    @property
    def ppl(self) -> float:
        return math.exp(self.loss)


@torch.no_grad()
def evaluate(model: torch.nn.Module, tokens: np.ndarray, *, batch_size: int = 16,
             max_tokens: int | None = None, spread: bool = False, precision: str = "fp32",
             window_experts: np.ndarray | None = None) -> Eval:
    """Score the full-context windows of `tokens`: all of them, or `max_tokens` worth, the first
    ones or, with `spread`, spread over the stream (`lab.data.tokens.eval_windows`).
    A routed model (`lab.nn.hypernet.HyperGPT`) takes window j through expert `window_experts[j]`."""
    device = next(model.parameters()).device
    cfg = model.config
    dtype = autocast_dtype(device, cfg.d_model, precision)
    experts = None if window_experts is None else torch.from_numpy(np.asarray(window_experts, dtype=np.int64))
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for x, y, index in eval_batches(tokens, batch_size, cfg.context, max_tokens, spread):
            x, y = x.to(device), y.to(device)
            routed = () if experts is None else (None, experts[index].to(device))
            with autocast(device, dtype):
                logits, _ = model(x, *routed)
            total += F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="sum").item()
            count += y.numel()
    finally:
        model.train(was_training)
    if count == 0:
        raise LabError(f"cannot evaluate on {len(tokens)} tokens: a window needs {cfg.context + 1}")
    return Eval(loss=total / count, tokens=count)


def evaluate_domains(model: torch.nn.Module, streams: Mapping[str, np.ndarray], **kwargs) -> dict[str, Eval]:
    """`evaluate` on each domain's stream; keyword arguments as for `evaluate`."""
    return {name: evaluate(model, tokens, **kwargs) for name, tokens in streams.items()}


def macro_perplexity(results: Mapping[str, Eval] | Iterable[float]) -> float:
    """The paper's average over domains: exp of the mean per-domain log-perplexity (loss),
    so every domain weighs the same whatever its size.

    `results` is either a mapping domain -> `Eval`, or a sequence (list, array, pandas Series)
    of perplexities. A mapping of plain numbers is refused: perplexities and losses both
    look like floats, and reading one as the other is off by an exponential.
    """
    if isinstance(results, Mapping):
        if not all(isinstance(r, Eval) for r in results.values()):
            raise TypeError("macro_perplexity reads a mapping of Eval results; give perplexities as a list")
        losses = [r.loss for r in results.values()]
    else:
        losses = [math.log(float(p)) for p in results]
    if not losses:
        raise LabError("no domains to average: macro perplexity needs at least one")
    return math.exp(sum(losses) / len(losses))
