"""What a hyper-network (SLM-hn) training step costs next to an SLM step.

    python benchmarks/bench_hypernet.py [--scale default] [--seconds 8] [--threads N]
                                        [--banks 8,16,32,64] [--experts 8]

For each bank size h it times training steps of the scale's SLM and of SLM-hn
(k experts, each window of a batch drawn from a uniformly random cluster: the
most experts per step, the dearest case), and prints the time ratio and the
analytic FLOP ratio (`HyperConfig.train_flops`, which counts the weight
generation). The paper measured 1.6x; the lab's choice of h
(`lab.methods.hypernet.hyper_config`) keeps it under 1.7x. Every figure is
the best of four timing windows, the least disturbed one on a shared machine,
and the models take their windows in turn so that a slow spell hits them alike.
It prints a table; it is not a test.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np
import torch

from lab.nn import costs
from lab.device import pick_device
from lab.nn.hypernet import HyperGPT, param_count_hypernet
from lab.training.routing import RoutedSampler
from lab.methods.hypernet import hyper_config
from lab.nn.model import GPT, model_config, param_count_formula
from lab.training.train import train_config
from lab.data.tokens import BatchSampler, window_starts
from lab.training.train import Trainer


def make_trainer(model, sampler, scale: str, device: torch.device) -> Trainer:
    trainer = Trainer(model, train_config("slm", scale), sampler, device=device, progress=False)
    trainer.train_until(3)  # allocator, kernels
    return trainer


def interleaved_rates(trainers: list[Trainer], seconds: float, windows: int = 4) -> list[float]:
    """Steps per second of each trainer, best of `windows` timing windows taken in turn, so that
    a slow spell of a shared machine hits every model alike."""
    best = [0.0] * len(trainers)
    for _ in range(windows):
        for i, trainer in enumerate(trainers):
            done, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds / windows:
                trainer.train_step()  # its loss.item() waits for the device
                done += 1
            best[i] = max(best[i], done / (time.perf_counter() - t0))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="default")
    parser.add_argument("--seconds", type=float, default=8.0, help="timing per model (best of 4 windows)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    parser.add_argument("--banks", default="", help="bank sizes h to time (default: the scale's choice)")
    parser.add_argument("--experts", type=int, default=0, help="experts k (default: the scale's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device()
    chosen = hyper_config(args.scale, args.experts or None)
    banks = [int(h) for h in args.banks.split(",")] if args.banks else [chosen.bank_size]
    slm = model_config("slm", args.scale)
    batch = train_config("slm", args.scale).batch_size
    tokens = np.random.default_rng(0).integers(0, slm.vocab_size, 400_000).astype(np.uint16)
    windows = len(window_starts(len(tokens), slm.context))
    ids = np.random.default_rng(1).integers(0, chosen.n_experts, windows)
    tokens_per_step = batch * slm.context
    slm_flops = costs.train_flops(slm, tokens_per_step, 1)

    torch.manual_seed(0)
    trainers = [make_trainer(GPT(slm), BatchSampler(tokens, batch, slm.context), args.scale, device)]
    configs = [replace(chosen, bank_size=h) for h in banks]
    for cfg in configs:
        torch.manual_seed(0)
        trainers.append(make_trainer(HyperGPT(cfg), RoutedSampler(tokens, ids, batch, slm.context), args.scale,
                                     device))
    slm_rate, *rates = interleaved_rates(trainers, args.seconds)
    print(f"device {device}, {torch.get_num_threads()} threads; scale {args.scale}, batch {batch} x {slm.context}")
    print(f"SLM: {param_count_formula(slm) / 1e6:.2f}M parameters, {slm_rate:.1f} steps/s, "
          f"{slm_flops / 1e9:.2f} GFLOP/step\n")
    print(f"{'k':>4}{'m':>4}{'h':>5}{'params':>9}{'steps/s':>9}{'time ratio':>12}{'FLOP ratio':>12}"
          f"{'generation share':>18}")
    for cfg, rate in zip(configs, rates):
        flops = cfg.train_flops(tokens_per_step, 1)
        print(f"{cfg.n_experts:>4}{cfg.code_dim:>4}{cfg.bank_size:>5}{param_count_hypernet(cfg) / 1e6:>8.2f}M"
              f"{rate:>9.1f}{slm_rate / rate:>11.2f}x{flops / slm_flops:>11.2f}x"
              f"{(flops - slm_flops) / flops:>18.1%}")


if __name__ == "__main__":
    main()
