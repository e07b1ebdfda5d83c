"""Fine-tuning on a domain's training set, with early stopping on its validation loss.

Every method ends here. The recipe follows the paper (a smaller learning rate
for the smallest set, a step cap that grows with the set) and the lab's lesson
on small validation sets (docs/regime.md, section 7): evaluate every few steps on at least ~32k
validation tokens, patience 4, so that even the smallest set trains for a
hundred-odd steps instead of stopping on noise at step 0.

`lora_rank` > 0 trains LoRA adapters of that rank instead of every weight
(`lab.training.lora`, through `peft`) and merges them back at the end, so what
comes out is a plain model either way.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.tokens import BatchSampler
from ..errors import LabError
from ..nn.model import GPT
from ..progress import hidden
from ..scales import Scale, get_scale
from .lora import LoraGPT, trained_params
from .train import LossFn, TrainConfig, Trainer, next_token_loss, train_config


@dataclass(frozen=True)
class FinetuneConfig:
    lr: float
    """Constant after warm-up: early stopping, not a decay, ends the run."""
    batch_size: int = 8
    micro_batch: int = 0
    warmup_steps: int = 10
    max_steps: int = 200
    eval_every: int = 10
    patience: int = 4
    """Evaluations without a new best before stopping."""
    eval_tokens: int = 32_768
    """Validation tokens early stopping scores, in windows spread over the whole split."""
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0
    precision: str = "auto"
    lora_rank: int = 0
    """Rank of LoRA adapters trained instead of every weight; 0: full fine-tuning."""

    def key(self) -> dict:
        """The fields for a cache key, and how early stopping picks its validation windows: rows
        stored when it read the first `eval_tokens` are not reused. A full fine-tune's key has no
        `lora_rank`, as before LoRA existed; a LoRA run's names its rank."""
        fields = {**asdict(self), "eval_windows": "spread"}
        if not self.lora_rank:
            del fields["lora_rank"]
        return fields


EPOCHS = 4
MAX_LR_SHARE = 0.3
LORA_LR_SCALE = 10.0
"""LoRA's rate over full fine-tuning's: its update starts at zero and lives in a few directions, so the
full recipe's rate barely moves it. Measured at tiny (medicine, SLM, rank 4; test perplexity after
fine-tuning on the 2k / 16k sets): x1 101.7 / 86.8 (both stopped by the step cap), x10 94.5 / 78.6,
x30 97.1 on 2k; rank 16 at x10 95.6 / 74.7. Full fine-tuning gave 84.0 / 58.7."""


def finetune_config(kind: str, scale: str | Scale, set_tokens: int, seed: int = 0,
                    lora_rank: int = 0, lr_scale: float = 1.0) -> FinetuneConfig:
    """The recipe for a domain set of `set_tokens` tokens.

    Learning rate: the scale's share of the pretraining rate on the smallest set,
    growing with the square root of the set's size, at most 0.3x the pretraining
    rate (the paper: a third of the base rate on its smallest set, the base rate on
    the others). `benchmarks/bench_finetune_lr.py` measures it: the default SLM
    (macro test perplexity, legal / science / drama) did best at 0.01-0.03x on 8k
    tokens, 0.1x on 64k and 0.1-0.3x on 512k, which 0.03x growing with the square
    root of the size follows (0.03, 0.085, 0.24); so did the LLM, SLM-mix's expert,
    SLM-hn's generated SLM and SLM-is's model (SLM-d's student does best at 0.3x on
    64k, 2-9% better). The tiny scale's 0.1 is what its
    tests were measured with; paper's is untested.
    Cap: 4 epochs, and never fewer than 100-200 steps (by scale).
    Evaluation every half epoch, between 10 and 100 steps.
    LoRA (`lora_rank` > 0): the same recipe at `LORA_LR_SCALE` times the rate.
    `lr_scale` multiplies the rate (the benchmark's sweep; 1: the recipe).
    """
    if not (lr_scale > 0 and np.isfinite(lr_scale)):
        raise LabError(f"lr_scale={lr_scale!r}: give a positive multiple of the recipe's learning rate (1: the recipe)")
    data = get_scale(scale)
    pre = train_config(kind, data)
    batch_size, eval_tokens, min_steps, share = (data.finetune.batch_size, data.finetune.eval_tokens,
                                                 data.finetune.min_steps, data.finetune.lr_share)
    steps_per_epoch = set_tokens / (batch_size * data.context)
    share = min(MAX_LR_SHARE, share * (max(set_tokens, 1) / min(data.set_tokens)) ** 0.5)
    return FinetuneConfig(
        lr=pre.lr * share * (LORA_LR_SCALE if lora_rank else 1.0) * lr_scale,
        batch_size=batch_size,
        micro_batch=min(pre.micro_batch, batch_size),
        max_steps=max(min_steps, round(EPOCHS * steps_per_epoch)),
        eval_every=int(min(100, max(10, steps_per_epoch // 2))),
        eval_tokens=min(eval_tokens, data.valid_tokens),
        seed=seed,
        precision=pre.precision,
        lora_rank=int(lora_rank),
    )


@dataclass
class FinetuneRecord:
    initial_valid_loss: float
    best_valid_loss: float
    best_step: int
    steps: int
    """Steps run, including those after the best one that early stopping needed to see."""
    tokens_to_best: int
    flops_to_best: float
    """The specialization cost: training FLOPs up to the kept weights."""
    seconds_to_best: float
    flops: float
    seconds: float
    eval_flops: float
    stopped_by: str
    """"patience" or "max_steps"."""
    history: list[tuple[int, float]] = field(default_factory=list)
    """(step, validation loss) at every evaluation."""
    lora_rank: int = 0
    trained_params: int = 0
    """Weights the optimizer updated: every one, or the LoRA adapters only."""

    def to_dict(self) -> dict:
        return asdict(self)


def finetune_train_config(config: FinetuneConfig) -> TrainConfig:
    """The trainer's settings for a fine-tune: warm-up then a constant rate, no scheduled evaluations
    (the fine-tuning loop scores the validation set itself, for early stopping)."""
    return TrainConfig(batch_size=config.batch_size, micro_batch=config.micro_batch, lr=config.lr,
                       warmup_steps=config.warmup_steps, cooldown=0.0, weight_decay=config.weight_decay,
                       grad_clip=config.grad_clip, seed=config.seed, precision=config.precision,
                       eval_every=0, eval_tokens=config.eval_tokens, eval_spread=True)


def finetune(model: GPT, train_tokens: np.ndarray, valid_tokens: np.ndarray, config: FinetuneConfig, *,
             loss_fn: LossFn = next_token_loss, extra_flops_per_token: float = 0.0,
             callbacks: dict | None = None, device: torch.device | str | None = None,
             progress: bool = True) -> tuple[GPT, FinetuneRecord]:
    """Fine-tune `model` in place and return it holding its best weights, with a record.

    `loss_fn` and `extra_flops_per_token` are as for `Trainer` (distillation adds a
    teacher term there); early stopping always watches the plain validation loss.
    With `config.lora_rank` the adapters train and are merged into the returned model.
    """
    if config.lora_rank:
        model = LoraGPT(model, config.lora_rank)
    train_cfg = finetune_train_config(config)
    sampler = BatchSampler(train_tokens, config.batch_size, model.config.context, seed=config.seed)
    trainer = Trainer(model, train_cfg, sampler, valid=valid_tokens, loss_fn=loss_fn,
                      extra_flops_per_token=extra_flops_per_token, device=device, progress=False)
    for event, fns in (callbacks or {}).items():
        for fn in fns:
            trainer.add_callback(event, fn)

    best_loss = initial = trainer.evaluate()
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    best_step, best_flops, best_seconds = 0, 0.0, 0.0
    history = [(0, initial)]
    bad = 0
    with tqdm(total=config.max_steps, desc="fine-tune", disable=hidden(progress), leave=False) as bar:
        while trainer.step < config.max_steps and bad < config.patience:
            trainer.train_until(min(trainer.step + config.eval_every, config.max_steps))
            loss = trainer.evaluate()
            history.append((trainer.step, loss))
            bar.update(trainer.step - bar.n)
            bar.set_postfix(valid=f"{loss:.3f}", best=f"{min(best_loss, loss):.3f}", refresh=False)
            if loss < best_loss:
                best_loss, best_step, bad = loss, trainer.step, 0
                best_flops, best_seconds = trainer.flops, trainer.seconds
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                bad += 1
    model.load_state_dict(best_state)
    trained = trained_params(model)
    if config.lora_rank:
        model = model.merged()
    record = FinetuneRecord(
        initial_valid_loss=initial, best_valid_loss=best_loss, best_step=best_step, steps=trainer.step,
        tokens_to_best=best_step * trainer.tokens_per_step, flops_to_best=best_flops,
        seconds_to_best=best_seconds, flops=trainer.flops, seconds=trainer.seconds,
        eval_flops=trainer.eval_flops, stopped_by="patience" if bad >= config.patience else "max_steps",
        history=history, lora_rank=config.lora_rank, trained_params=trained,
    )
    return model, record
