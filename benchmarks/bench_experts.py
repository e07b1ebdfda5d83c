"""Training throughput of k batched experts (SLM-mix) against one dense SLM.

    python benchmarks/bench_experts.py [--scale default] [--experts 4 8 16] [--seconds 8] [--threads N]

Both run through `lab.training.train.Trainer` at the scale's SLM shape and batch (each
expert draws the SLM's batch every step), so a row measures the whole step:
sampling, forward, backward, per-expert clipping and AdamW. Mixture tokens/s
are summed over experts; the ratio is against the dense SLM, and the goal is at
least 0.8 at k=4 (training k experts one after the other would give 1.0 at best).
Every figure is the best of four timing windows, which on a shared machine is
the least disturbed one. It prints a table; it is not a test.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np
import torch

from lab.nn import costs
from lab.device import pick_device
from lab.nn.mixture import BatchedGPT
from lab.training.routing import ExpertSampler, expert_starts
from lab.nn.model import GPT, model_config
from lab.training.train import train_config
from lab.data.tokens import BatchSampler, window_starts
from lab.training.train import Trainer, seed_everything


def best_rates(trainers: dict[str, Trainer], seconds: float, windows: int = 4) -> dict[str, float]:
    """Highest tokens per second of each trainer over a few timing windows, taken in turn
    (dense, 4 experts, 8, ..., dense, ...) so that a disturbance hits every row alike; the
    best window is the least disturbed one."""
    for trainer in trainers.values():
        trainer.train_until(3)  # allocator, kernels
    best = dict.fromkeys(trainers, 0.0)
    for _ in range(windows):
        for name, trainer in trainers.items():
            done, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds / windows:
                trainer.train_step()  # its loss.item() waits for the device
                done += trainer.tokens_per_step
            best[name] = max(best[name], done / (time.perf_counter() - t0))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="default", choices=["tiny", "default", "paper"])
    parser.add_argument("--experts", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--seconds", type=float, default=8.0, help="timing per row (best of 4 windows)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device()
    cfg, tc = model_config("slm", args.scale), train_config("slm", args.scale)
    batch = tc.batch_size if device.type == "cuda" or args.scale != "paper" else 1
    tc = replace(tc, batch_size=batch, micro_batch=0)
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, cfg.vocab_size, 2_000_000).astype(np.uint16)
    print(f"device {device}, {torch.get_num_threads()} threads; {args.scale} SLM: {cfg.n_layer} layers, "
          f"d={cfg.d_model}, vocab {cfg.vocab_size}, context {cfg.context}, batch {batch} per expert\n")

    n_windows = len(window_starts(len(tokens), cfg.context))
    seed_everything(0)
    trainers = {1: Trainer(GPT(cfg), tc, BatchSampler(tokens, batch, cfg.context), device=device, progress=False)}
    for k in args.experts:
        starts = expert_starts(tokens, rng.integers(0, k, n_windows), k, cfg.context)
        trainers[k] = Trainer(BatchedGPT(cfg, k), tc, ExpertSampler(tokens, starts, batch, cfg.context),
                              device=device, progress=False)
    rates = best_rates(trainers, args.seconds)
    flops = costs.train_flops_per_token(cfg)
    print(f"{'model':<14}{'tokens/s':>11}{'per expert':>12}{'vs dense':>10}{'GFLOP/s':>9}")
    for k, rate in rates.items():
        name = "dense SLM" if k == 1 else f"{k} experts"
        print(f"{name:<14}{rate:>11,.0f}{rate / k:>12,.0f}{rate / rates[1]:>10.2f}{rate * flops / 1e9:>9.1f}")


if __name__ == "__main__":
    main()
