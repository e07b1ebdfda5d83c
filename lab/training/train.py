"""Training: the loop, the learning-rate schedule, checkpoints and exact resume.

Schedule: warm-up, stable, decay (WSD; Hu et al. 2024, "MiniCPM"; Hägele et al.
2024, "Scaling Laws and Compute-Optimal Training beyond Fixed Training
Durations"). The learning rate rises linearly for `warmup_steps`, then stays
constant for as long as the run goes. A checkpoint at a budget of S steps is a
*cooldown branch*: it forks from the constant phase at step S - c, with
c = cooldown x S, decays the rate to zero along 1 - sqrt(progress) over those
c steps, writes the checkpoint, and the main run carries on from the fork as if
the branch had not happened. Why this and not the alternatives:

- cosine depends on the final length: its intermediate checkpoints are taken at
  a high learning rate and are poor models, so a curve over pretraining budgets
  would cost one run per budget;
- inverse square root needs no final length either, but its checkpoints are
  never annealed and trail a cosine run of the same length;
- WSD with a 20% cooldown matches cosine at every length (Hägele et al.), and
  each checkpoint is exactly the model a separate run with that budget and seed
  would produce (same batches, same schedule), so its cost is its own S steps.

The branches are extra compute: 20% of every budget but the largest. A
checkpoint records its own cost (`flops`, `seconds`: its lineage) and the run's
(`run_flops`, `run_seconds`: everything computed so far, branches included).

Checkpoints are folders written atomically: `model.safetensors` (weights),
`state.pt` (optimizer and random-number states) and `meta.json` (configs, step,
tokens, FLOPs, seconds, sampler position, losses). A run holds a lock in its
folder while it trains, so two processes asked for it train it once.

Under torchrun the same loop trains with DistributedDataParallel: each rank
its shard of one global batch, rank 0 alone evaluating and writing
(`lab.training.distributed`).
"""
from __future__ import annotations

import contextlib
import copy
import math
import pickle
import random
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import atomic, checks
from . import distributed
from ..data.tokens import BatchSampler
from ..device import autocast, autocast_dtype, device_name, keep_freed_memory, pick_device
from ..errors import LabError
from ..nn import costs
from ..nn.checkpoints import load_weights, read_meta, rebuild_advice, save_weights, verified
from ..nn.model import GPT, GPTConfig, model_config
from ..progress import hidden
from ..scales import Scale, get_scale
from .evaluate import Eval, evaluate

STATE = "state.pt"
LossFn = Callable[..., torch.Tensor]
"""`loss_fn(model, x, y, *route)`: `route` is whatever else the sampler's batch holds (expert ids)."""
EVENTS = ("on_batch_end", "on_eval", "on_checkpoint")
LOCK = ".lock"


@dataclass(frozen=True)
class TrainConfig:
    """Optimizer, schedule and pretraining budget of one model (see `lab.training.train` for the schedule)."""
    batch_size: int = 8
    micro_batch: int = 0
    """Sequences per forward pass when a batch does not fit in memory (gradient accumulation); 0: the whole batch."""
    lr: float = 3e-3
    warmup_steps: int = 200
    cooldown: float = 0.2
    """Share of each checkpoint's budget spent decaying the learning rate to zero."""
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    seed: int = 0
    precision: str = "auto"
    """"auto" (bf16 autocast where it is faster, see `lab.device`), "fp32" or "bf16"."""
    pretrain_flops: float = 4.25e13
    """Largest pretraining budget, in FLOPs so that the SLM and the LLM are compared at equal
    compute (`train_config` states it as tokens of the scale's SLM)."""
    checkpoint_fractions: tuple[float, ...] = (1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0)
    """Budgets, as shares of `pretrain_flops`, at which one run writes a checkpoint."""
    eval_every: int = 500
    eval_tokens: int = 65_536
    """Generic validation tokens scored every `eval_every` steps (the live loss curve)."""
    eval_spread: bool = False
    """Score windows spread over the whole validation stream rather than its first `eval_tokens`
    (`lab.data.tokens.eval_windows`). Fine-tuning's early stopping spreads them: a domain's
    validation split can be a few long documents. Pretraining reads the prefix of the generic
    split, thousands of documents of every source in hashed order, which stored checkpoints were
    scored on."""
    save_every: int = 2_000
    """Steps between saves of the resumable main-run state (0: only at checkpoints)."""

    @property
    def checkpoint_flops(self) -> list[float]:
        return [f * self.pretrain_flops for f in self.checkpoint_fractions]

    def run_flops(self, budget: float | None = None) -> float:
        """FLOPs of one `pretrain` run to `budget` (default: the largest) with a cooldown branch at
        each checkpoint share: the main run up to the largest branch's fork, plus every branch's cooldown."""
        budget = self.pretrain_flops if budget is None else budget
        return budget * (1 - self.cooldown + self.cooldown * sum(self.checkpoint_fractions))

    def run_fields(self) -> dict:
        """The fields that decide the weights at a given step (not where the run stops or what it logs)."""
        skip = ("pretrain_flops", "checkpoint_fractions", "eval_every", "eval_tokens", "eval_spread", "save_every")
        return {k: v for k, v in asdict(self).items() if k not in skip}


def train_config(kind: str, scale: str | Scale) -> TrainConfig:
    """The pretraining recipe of the scale's SLM or LLM (`lab.scales`). The largest budget is
    stated in SLM tokens and converted to FLOPs, so that the LLM gets the SLM's compute."""
    model_config(kind, scale)  # validates both names
    s = get_scale(scale)
    r = s.pretrain
    slm_flops_per_token = costs.train_flops_per_token(model_config("slm", s))
    return TrainConfig(batch_size=r.batch_size, micro_batch=r.micro_batch, lr=r.slm_lr if kind == "slm" else r.llm_lr,
                       warmup_steps=r.warmup_steps, pretrain_flops=r.slm_tokens * slm_flops_per_token,
                       eval_every=r.eval_every, eval_tokens=r.eval_tokens, save_every=r.save_every)


def next_token_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *route: torch.Tensor) -> torch.Tensor:
    return model(x, y, *route)[1]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices only, not on embeddings, norms or biases."""
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    params = {id(p): p for p in model.parameters() if p.requires_grad}.values()
    decay = [p for p in params if p.dim() >= 2 and id(p) not in embeddings]
    no_decay = [p for p in params if p.dim() < 2 or id(p) in embeddings]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2),
                             fused=device.type in ("cuda", "cpu"))


def _rng_state() -> dict:
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


class Trainer:
    """One model, one optimizer, one stream of batches; minGPT's trainer with callbacks.

    `add_callback(event, fn)` registers `fn(trainer)` for "on_batch_end" (read
    `trainer.loss`, `.step`, `.tokens`, `.flops`, `.lr`), "on_eval" (`.valid_loss`)
    or "on_checkpoint" (`.last_checkpoint`). `loss_fn(model, x, y)` replaces the
    next-token loss (distillation adds a teacher term); `extra_flops_per_token`
    is what it costs beyond the model's own training FLOPs (the teacher's forward pass).

    A model that stacks several independent models (a mixture's experts) may define
    `clip_grad_norm_(max_norm)` to clip each one's gradient alone, and its sampler
    `tokens_per_batch` when a batch holds more than `batch_size` windows.

    A sampler whose `next()` returns (x, y, *route) routes each window (a
    hyper-network's expert ids): `route` is split with the batch and passed on to
    `loss_fn`. `evaluate_fn` replaces `lab.training.evaluate.evaluate` for scoring `valid`
    (a routed model needs each validation window's route).

    Under torchrun (`lab.training.distributed`) each rank trains on its shard of every batch
    through DDP; `loss` is the global batch's, and only rank 0 scores `valid`, saves and
    shows a bar. `model` stays the plain module: its state is the same on every rank.
    """

    def __init__(self, model: GPT, config: TrainConfig, sampler: BatchSampler, *,
                 valid: np.ndarray | None = None, loss_fn: LossFn = next_token_loss,
                 extra_flops_per_token: float = 0.0, device: torch.device | str | None = None,
                 progress: bool = True, evaluate_fn: Callable[..., Eval] = evaluate):
        self.device = torch.device(device) if device is not None else pick_device()
        if self.device.type == "cpu":
            keep_freed_memory()
        self.model = model.to(self.device)
        self.config = config
        self.sampler = sampler
        self.valid = valid if distributed.is_main() else None
        self.loss_fn = loss_fn
        self.evaluate_fn = evaluate_fn
        self.progress = progress and distributed.is_main()
        self.dtype = autocast_dtype(self.device, model.config.d_model, config.precision)
        self.optimizer = make_optimizer(model, config, self.device)
        self.tokens_per_step = tokens_per_batch(sampler, config.batch_size)
        if distributed.world() > 1:
            if type(model) is not GPT or self.tokens_per_step != config.batch_size * sampler.context:
                raise LabError("training across processes covers the dense models (pretrain --method slm, llm or "
                               "slm-d); train the mixture and the hyper-network in one process, without torchrun")
            distributed.check_batch(config.batch_size)
        self.net = distributed.wrap(self.model)
        self.flops_per_step = (costs.train_flops(model, self.tokens_per_step, 1)
                               + extra_flops_per_token * self.tokens_per_step)
        self.callbacks: dict[str, list[Callable]] = defaultdict(list)
        # The lineage of the current weights: restored with a snapshot.
        self.step = 0
        self.flops = 0.0
        self.seconds = 0.0
        self.decay: tuple[int, int] | None = None
        # Everything this run computed, cooldown branches included: never rolled back.
        self.run_flops = 0.0
        self.run_seconds = 0.0
        self.eval_flops = 0.0
        self.loss = math.nan
        self.valid_loss = math.nan
        self.last_checkpoint: Path | None = None

    @property
    def tokens(self) -> int:
        return self.step * self.tokens_per_step

    @property
    def precision(self) -> str:
        return "fp32" if self.dtype is None else "bf16"

    def add_callback(self, event: str, fn: Callable[["Trainer"], None]) -> None:
        if event not in EVENTS:
            raise LabError(f"unknown trainer event {event!r}: choose one of {', '.join(EVENTS)}")
        self.callbacks[event].append(fn)

    def _fire(self, event: str) -> None:
        for fn in self.callbacks[event]:
            fn(self)

    # -- schedule ----------------------------------------------------------

    def learning_rate(self, step: int) -> float:
        """Rate for the step that takes the weights from `step` to `step + 1`."""
        cfg = self.config
        warm = lambda s: cfg.lr * min(1.0, (s + 1) / max(cfg.warmup_steps, 1))  # noqa: E731
        if self.decay is None or step < self.decay[0]:
            return warm(step)
        start, end = self.decay
        return warm(start) * (1.0 - math.sqrt((step - start) / (end - start)))

    @property
    def lr(self) -> float:
        return self.learning_rate(max(self.step - 1, 0))

    # -- training ----------------------------------------------------------

    def train_step(self) -> float:
        t0 = time.perf_counter()
        self.model.train()
        lr = self.learning_rate(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        x, y, *route = (distributed.shard(t).to(self.device) for t in self.sampler.next())
        micro = self.config.micro_batch or len(x)
        self.optimizer.zero_grad(set_to_none=True)
        loss = torch.zeros((), device=self.device)
        parts = list(zip(x.split(micro), y.split(micro), *(r.split(micro) for r in route)))
        for i, (xs, ys, *rs) in enumerate(parts):
            # Under DDP the gradients are averaged across ranks once, after the last micro-batch.
            last = i == len(parts) - 1 or self.net is self.model
            with contextlib.nullcontext() if last else self.net.no_sync():
                with autocast(self.device, self.dtype):
                    part = self.loss_fn(self.net, xs, ys, *rs) * (len(xs) / len(x))
                part.backward()
            loss += part.detach()
        if self.config.grad_clip:
            clip = getattr(self.model, "clip_grad_norm_", None)
            if callable(clip):
                clip(self.config.grad_clip)
            else:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        self.step += 1
        self.loss = distributed.mean(loss)
        elapsed = time.perf_counter() - t0
        self.flops += self.flops_per_step
        self.run_flops += self.flops_per_step
        self.seconds += elapsed
        self.run_seconds += elapsed
        self._fire("on_batch_end")
        # The live curve follows the main run; a cooldown branch is scored once, at its checkpoint.
        if (self.valid is not None and self.decay is None and self.config.eval_every
                and self.step % self.config.eval_every == 0):
            self.evaluate()
        return self.loss

    def train_until(self, step: int, desc: str = "train") -> None:
        if step <= self.step:
            return
        with tqdm(total=step - self.step, desc=desc, disable=hidden(self.progress), leave=False) as bar:
            while self.step < step:
                self.train_step()
                bar.update(1)
                bar.set_postfix(loss=f"{self.loss:.3f}", refresh=False)

    def evaluate(self) -> float:
        """Loss on `eval_tokens` of `valid` (`TrainConfig.eval_spread` says which); fires "on_eval"."""
        result = self.evaluate_fn(self.model, self.valid, batch_size=self.config.micro_batch or self.config.batch_size,
                                  max_tokens=self.config.eval_tokens, spread=self.config.eval_spread,
                                  precision=self.config.precision)
        self.eval_flops += result.tokens * costs.inference_flops_per_token(self.model)
        self.valid_loss = result.loss
        self._fire("on_eval")
        return self.valid_loss

    # -- state -------------------------------------------------------------

    def state_dict(self) -> dict:
        """Everything that decides the next steps: weights, optimizer, data position, schedule, RNG."""
        return {
            "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "sampler": self.sampler.state_dict(),
            "rng": _rng_state(),
            "progress": {"step": self.step, "flops": self.flops, "seconds": self.seconds,
                         "decay": list(self.decay) if self.decay else None},
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.sampler.load_state_dict(state["sampler"])
        _set_rng_state(state["rng"])
        p = state["progress"]
        self.step, self.flops, self.seconds = p["step"], p["flops"], p["seconds"]
        self.decay = tuple(p["decay"]) if p["decay"] else None

    def save(self, path: str | Path, **meta) -> Path:
        """Write a checkpoint folder atomically (rank 0 alone under torchrun); extra keyword
        arguments go into meta.json."""
        path = Path(path)
        self.last_checkpoint = path
        if not distributed.is_main():
            return path
        with atomic.atomic_dir(path) as tmp:
            files = save_weights(self.model, tmp)
            torch.save({"optimizer": self.optimizer.state_dict(), "rng": _rng_state()}, tmp / STATE)
            files[STATE] = checks.file_record(tmp / STATE)
            atomic.write_json(tmp / "meta.json", {
                "model_config": asdict(self.model.config),
                "train_config": asdict(self.config),
                "step": self.step, "tokens": self.tokens, "flops": self.flops, "seconds": self.seconds,
                "decay": self.decay, "run_flops": self.run_flops, "run_seconds": self.run_seconds,
                "sampler": self.sampler.state_dict(), "loss": _finite_or_none(self.loss),
                "valid_loss": _finite_or_none(self.valid_loss), "device": device_name(self.device),
                "precision": self.precision, "files": files,
                **meta,
            })
        return path

    def load(self, path: str | Path) -> dict:
        """Restore a checkpoint written by `save` so that training continues exactly; returns its meta."""
        path = Path(path)
        meta = read_meta(path)
        load_weights(self.model, path, meta, self.device)
        # RNG states must stay CPU byte tensors; the optimizer moves its own state to the parameters.
        try:
            state = torch.load(verified(path, STATE, meta), map_location="cpu", weights_only=True)
        except (RuntimeError, EOFError, KeyError, OSError, pickle.UnpicklingError) as e:
            # What torch.load raises on a damaged file that no record caught (a folder written before them).
            raise LabError(f"{path / STATE} is not readable ({type(e).__name__}: {e}); "
                           f"{rebuild_advice(path)}") from None
        self.optimizer.load_state_dict(state["optimizer"])
        _set_rng_state(state["rng"])
        self.sampler.load_state_dict(meta["sampler"])
        self.step, self.flops, self.seconds = meta["step"], meta["flops"], meta["seconds"]
        self.decay = tuple(meta["decay"]) if meta["decay"] else None
        self.run_flops, self.run_seconds = meta["run_flops"], meta["run_seconds"]
        self.loss, self.valid_loss = (math.nan if v is None else v for v in (meta["loss"], meta["valid_loss"]))
        return meta


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None  # JSON has no NaN


def tokens_per_batch(sampler, batch_size: int) -> int:
    """Tokens in one batch of `sampler`: `batch_size` windows, unless it says otherwise."""
    return getattr(sampler, "tokens_per_batch", batch_size * sampler.context)


def budget_steps(model_config: GPTConfig, config: TrainConfig, *,
                 flops: Sequence[float] = (), tokens: Sequence[int] = (),
                 tokens_per_step: int | None = None) -> list[int]:
    """Optimizer steps that reach each FLOP or token budget (rounded to the nearest step).
    `tokens_per_step` defaults to one batch of `batch_size` windows."""
    tokens_per_step = tokens_per_step or config.batch_size * model_config.context
    per_step = costs.train_flops(model_config, tokens_per_step, 1)
    steps = {max(1, round(f / per_step)) for f in flops} | {max(1, round(t / tokens_per_step)) for t in tokens}
    return sorted(steps)


def checkpoint_name(step: int) -> str:
    return f"step{step:08d}"


def pretrain(model_config: GPTConfig, train_config: TrainConfig, tokens: np.ndarray, out_dir: str | Path, *,
             budget_flops: Sequence[float] | None = None, budget_tokens: Sequence[int] = (),
             valid: np.ndarray | None = None, callbacks: dict[str, Sequence[Callable]] | None = None,
             device: torch.device | str | None = None, progress: bool = True,
             sampler_factory: Callable[[], BatchSampler] | None = None,
             model_factory: Callable[[], torch.nn.Module] | None = None,
             evaluate_fn: Callable[..., Eval] = evaluate) -> list[Path]:
    """Train one model from scratch, writing a checkpoint at every budget, in one run.

    Budgets are FLOPs (default: `train_config.checkpoint_flops`) and/or tokens.
    Returns the checkpoint folders in budget order. Checkpoints already in
    `out_dir` are kept, and the run resumes from `out_dir/main` (the constant-rate
    state, saved every `save_every` steps and after each branch), so an
    interrupted run, or a request for larger budgets, continues the same run. `valid` (generic validation tokens) gives
    the live loss curve every `eval_every` steps and each checkpoint's `valid_loss`.
    `sampler_factory()` replaces the uniform sampler over `tokens` with a fresh one of
    its own for each run from scratch (importance sampling draws weighted windows);
    `out_dir` must then be named by what decides its batches too.
    `model_factory()` likewise replaces `GPT(model_config)` (called after seeding; a
    mixture stacks its experts); `model_config` is then the shape of one of them.
    `evaluate_fn` scores `valid` in place of `lab.training.evaluate.evaluate` (see `Trainer`).

    The run holds `out_dir/.lock` while it trains: a second process asking for it waits, then
    finds the checkpoints written. Under torchrun every rank calls this; rank 0 decides what
    is left to train and writes it, and all return once it is on disk.
    """
    out_dir = Path(out_dir)
    if budget_flops is None and not budget_tokens:
        budget_flops = train_config.checkpoint_flops

    def fresh_trainer() -> Trainer:
        seed_everything(train_config.seed)
        model = model_factory() if model_factory is not None else GPT(model_config)
        sampler = (sampler_factory() if sampler_factory is not None else
                   BatchSampler(tokens, train_config.batch_size, model_config.context, seed=train_config.seed))
        trainer = Trainer(model, train_config, sampler, valid=valid, device=device, progress=progress,
                          evaluate_fn=evaluate_fn)
        for event, fns in (callbacks or {}).items():
            for fn in fns:
                trainer.add_callback(event, fn)
        return trainer

    main = out_dir / "main"
    if (main / "meta.json").exists():
        saved = read_meta(main)
        if (saved["model_config"] != asdict(model_config)
                or {k: saved["train_config"][k] for k in train_config.run_fields()} != train_config.run_fields()):
            raise LabError(f"{out_dir} holds a run with another model or training config; "
                           "use another folder or delete this one")
    per_step = tokens_per_batch(sampler_factory(), train_config.batch_size) if sampler_factory else None
    plan = budget_steps(model_config, train_config, flops=budget_flops or (), tokens=budget_tokens,
                        tokens_per_step=per_step)
    paths = [out_dir / checkpoint_name(step) for step in plan]
    with distributed.exclusive(out_dir / LOCK):
        pending = distributed.agree([step for step, path in zip(plan, paths) if not (path / "meta.json").exists()])
        if pending:
            _train_pending(pending, main, out_dir, train_config, fresh_trainer)
    distributed.barrier()
    return paths


def _train_pending(pending: list[int], main: Path, out_dir: Path, train_config: TrainConfig,
                   fresh_trainer: Callable[[], Trainer]) -> None:
    """The checkpoints at `pending` steps, continuing the main run saved in `main`."""
    trainer = fresh_trainer()
    if (main / "meta.json").exists():
        trainer.load(main)

    def save_main(t: Trainer) -> None:  # so that a crash loses at most `save_every` steps
        if t.decay is None and t.step % train_config.save_every == 0:
            t.save(main)

    if train_config.save_every:
        trainer.add_callback("on_batch_end", save_main)
    for step in pending:
        path = out_dir / checkpoint_name(step)
        fork = step - round(train_config.cooldown * step)
        # A budget whose fork the saved main run has passed needs its own run from scratch.
        lineage = trainer if fork >= trainer.step else fresh_trainer()
        lineage.train_until(fork, desc=f"pretrain to step {fork}")
        snapshot = lineage.state_dict()
        lineage.decay = (fork, step)
        lineage.train_until(step, desc=f"cooldown to step {step}")
        if lineage.valid is not None:
            lineage.evaluate()
        lineage.save(path)
        lineage._fire("on_checkpoint")
        lineage.load_state_dict(snapshot)
        if lineage is trainer:
            trainer.save(main)
