"""Routed training and evaluation: each generic window goes to the expert of its cluster.

SLM-mix trains k experts together, expert e on cluster e's windows (`ExpertSampler`,
`pretrain_mixture`) and scores a stream window by window with its cluster's expert
(`routed_evaluate`). SLM-hn draws uniform batches whose windows carry their cluster
(`RoutedSampler`) and evaluates the same way through `lab.training.evaluate`.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..data.cluster import check_window_ids, cluster_starts
from ..data.tokens import BatchSampler, eval_windows, window_starts
from ..errors import LabError
from ..nn.hypernet import HyperGPT
from ..nn.mixture import BatchedGPT
from ..nn.model import GPTConfig
from .evaluate import Eval, evaluate
from .train import TrainConfig, pretrain

# -- mixture: data ------------------------------------------------------------------

def expert_seed(seed: int, expert: int) -> int:
    """Seed of expert `expert`'s batch stream in a run seeded `seed`."""
    return seed * 10_000 + expert


class ExpertSampler:
    """One `BatchSampler` per expert over its cluster's windows; a batch is [B, k, T]."""

    def __init__(self, tokens: np.ndarray, starts: Sequence[np.ndarray], batch_size: int, context: int,
                 seed: int = 0):
        for e, s in enumerate(starts):
            if len(s) == 0:
                raise LabError(f"cluster {e} holds no generic windows: use fewer experts")
        self.samplers = [BatchSampler(tokens, batch_size, context, seed=expert_seed(seed, e), starts=s)
                         for e, s in enumerate(starts)]
        self.context = context
        self.batch_size = batch_size

    @property
    def tokens_per_batch(self) -> int:
        return len(self.samplers) * self.batch_size * self.context

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = zip(*(s.next() for s in self.samplers))
        return torch.stack(xs, 1), torch.stack(ys, 1)

    def state_dict(self) -> dict:
        return {"experts": [s.state_dict() for s in self.samplers]}

    def load_state_dict(self, state: dict) -> None:
        for s, st in zip(self.samplers, state["experts"], strict=True):
            s.load_state_dict(st)


def expert_starts(tokens: np.ndarray, window_ids: np.ndarray, n_experts: int, context: int) -> list[np.ndarray]:
    """Offsets of each cluster's generic windows: expert e's training data."""
    check_window_ids(tokens, window_ids, context)
    if int(np.max(window_ids)) >= n_experts:
        raise LabError(f"cluster ids run to {int(np.max(window_ids))} but the mixture has {n_experts} experts: "
                       "the ids come from another k")
    return [cluster_starts(window_ids, e, context) for e in range(n_experts)]


# -- training --------------------------------------------------------------

def pretrain_mixture(model_cfg: GPTConfig, train_cfg: TrainConfig, tokens: np.ndarray, window_ids: np.ndarray,
                     n_experts: int, out_dir: str | Path, *, budget_flops: Sequence[float] | None = None,
                     callbacks: dict | None = None, device: torch.device | str | None = None,
                     progress: bool = True) -> list[Path]:
    """Train k experts of shape `model_cfg`, expert e on the windows whose id is e, with
    a checkpoint at each total FLOP budget (default: `train_cfg.checkpoint_flops`).

    `lab.training.train.pretrain` does the work: its schedule, cooldown branches, resume and
    checkpoint folders, with a `BatchedGPT` and an `ExpertSampler`. A checkpoint's
    `flops` and `tokens` are the whole mixture's; each expert saw tokens / k.
    """
    starts = expert_starts(tokens, window_ids, n_experts, model_cfg.context)
    return pretrain(model_cfg, train_cfg, tokens, out_dir, budget_flops=budget_flops, callbacks=callbacks,
                    device=device, progress=progress,
                    model_factory=lambda: BatchedGPT(model_cfg, n_experts),
                    sampler_factory=lambda: ExpertSampler(tokens, starts, train_cfg.batch_size,
                                                          model_cfg.context, seed=train_cfg.seed))


@dataclass(frozen=True)
class RoutedEval:
    """Loss of a mixture whose windows each went to their cluster's expert."""
    loss: float
    """Mean next-token loss over every routed token, in nats."""
    tokens: int
    expert_loss: list[float | None]
    """Each expert's mean loss on its own windows (None where it got none)."""
    expert_tokens: list[int]

    @property
    def ppl(self) -> float:
        return math.exp(self.loss)

    def to_dict(self) -> dict:
        return {**asdict(self), "ppl": self.ppl}


@torch.no_grad()
def routed_evaluate(model: BatchedGPT, tokens: np.ndarray, window_ids: np.ndarray, *,
                    max_tokens: int | None = None, batch_size: int = 16) -> RoutedEval:
    """Score the consecutive windows of `tokens` (those of `window_starts`, the first
    `max_tokens // context` of them) each with the expert its cluster id names."""
    context = model.config.context
    starts = window_starts(len(tokens), context)
    if len(window_ids) != len(starts):
        raise LabError(f"{len(window_ids)} cluster ids for {len(starts)} windows: assign this stream's windows")
    index = eval_windows(len(tokens), context, max_tokens)
    starts, window_ids = starts[index], np.asarray(window_ids)[index]
    if len(starts) == 0:
        raise LabError(f"cannot evaluate on {len(tokens)} tokens: a window needs {context + 1}")
    device = model.wte.weight.device
    total, count = np.zeros(model.n_experts), np.zeros(model.n_experts, dtype=np.int64)
    for e in np.unique(window_ids).tolist():
        expert = model.expert(e).eval()
        mine = starts[window_ids == e]
        for i in range(0, len(mine), batch_size):
            idx = mine[i:i + batch_size, None] + np.arange(context + 1)[None, :]
            chunk = torch.from_numpy(np.asarray(tokens[idx], dtype=np.int64)).to(device)
            logits, _ = expert(chunk[:, :-1])
            total[e] += F.cross_entropy(logits.float().flatten(0, 1), chunk[:, 1:].flatten(), reduction="sum").item()
            count[e] += chunk[:, 1:].numel()
    return RoutedEval(loss=float(total.sum() / count.sum()), tokens=int(count.sum()),
                      expert_loss=[float(t / c) if c else None for t, c in zip(total, count)],
                      expert_tokens=count.tolist())


# -- hyper-network: data --------------------------------------------------------------------

class RoutedSampler(BatchSampler):
    """Uniform batches of the stream's windows, each with its expert: `next()` gives (x, y, experts).

    Windows are those `lab.data.tokens.window_starts` cuts, the ones the clustering
    assigned; `window_experts[j]` is window j's cluster."""

    def __init__(self, tokens: np.ndarray, window_experts: np.ndarray, batch_size: int, context: int,
                 seed: int = 0):
        starts = window_starts(len(tokens), context)
        if len(window_experts) != len(starts):
            raise LabError(f"{len(window_experts)} expert ids for a stream of {len(starts)} windows of context "
                           f"{context}: the ids belong to another stream or context")
        super().__init__(tokens, batch_size, context, seed, starts=starts)
        self.window_experts = torch.from_numpy(np.asarray(window_experts, dtype=np.int64))

    def next(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # Sorted by expert, so that micro-batches (gradient accumulation) split few experts' groups.
        offsets = self.offsets()
        offsets = offsets[np.argsort(self.window_experts[offsets // self.context].numpy(), kind="stable")]
        idx = offsets[:, None] + np.arange(self.context + 1)[None, :]
        chunk = torch.from_numpy(np.asarray(self.tokens[idx], dtype=np.int64))
        return chunk[:, :-1], chunk[:, 1:], self.window_experts[offsets // self.context]


def evaluate_routed(model: HyperGPT, tokens: np.ndarray, *, window_experts: np.ndarray, **kwargs) -> Eval:
    """`lab.training.evaluate.evaluate` for the routed model: window j of `tokens` goes through
    expert `window_experts[j]` (its cluster)."""
    windows = len(window_starts(len(tokens), model.config.context))
    if len(window_experts) != windows:
        raise LabError(f"{len(window_experts)} expert ids for {windows} windows: assign the clusters of this very stream")
    return evaluate(model, tokens, window_experts=window_experts, **kwargs)


def routed_evaluator(window_experts: np.ndarray):
    """An `evaluate_fn` for `lab.training.train.Trainer` scoring a stream whose window clusters are `window_experts`."""
    return partial(evaluate_routed, window_experts=window_experts)
