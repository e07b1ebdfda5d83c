"""Training throughput and model FLOP utilisation (MFU) of the lab's models on this device,
the plain path beside the fast one.

    python benchmarks/bench_train.py [--seconds 4] [--threads N] [--paper] [--precision auto] [--rounds 3]

"plain" is the step as it was: `F.cross_entropy` over the logits, under glibc's allocator defaults
(`LAB_ALLOCATOR=glibc`). "fast" is the lab's step: the loss's gradient formed in the forward pass
(`lab.nn.model.cross_entropy`), with freed memory kept for the next step
(`lab.device.keep_freed_memory`; on a GPU the allocator setting changes nothing). An allocator
setting holds for a whole process, so each path trains in its own child process, from the same
initial weights; the two alternate, `--rounds` times, and each figure is the best round, so the
ratio holds even on a machine that is not quiet. MFU is the model's analytic training FLOPs per
second (`lab.nn.costs`) over this device's fp32 matmul peak, measured in the same run (bf16 peak
printed too). It prints a table; it is not a test.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import replace
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

import lab.nn.model as model_module
from lab.data.tokens import BatchSampler
from lab.device import autocast_dtype, pick_device
from lab.nn import costs
from lab.nn.model import GPT, model_config, param_count_formula
from lab.training.train import Trainer, train_config


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def best_rate(work: Callable[[], float], seconds: float, windows: int = 4) -> float:
    """Highest rate (units of `work()` per second) over a few timing windows: on a shared
    machine the best window is the one least disturbed by other processes."""
    best = 0.0
    for _ in range(windows):
        done, t0 = 0.0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / windows:
            done += work()
        best = max(best, done / (time.perf_counter() - t0))
    return best


def matmul_peak(device: torch.device, dtype: torch.dtype, seconds: float) -> float:
    n = 4096 if device.type == "cuda" else 2048
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)

    def matmul() -> float:
        a @ b
        sync(device)
        return 2 * n ** 3

    matmul()
    return best_rate(matmul, seconds)


def plain_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float().flatten(0, -2), targets.flatten())


PATHS = {"plain": plain_cross_entropy, "fast": model_module.cross_entropy}
ALLOCATOR = {"plain": "glibc", "fast": "lab"}


def child(scale: str, kind: str, path: str, precision: str, seconds: float, threads: int) -> float:
    """Training tokens/s of one path of one model, in this process (best of a few windows)."""
    if threads:
        torch.set_num_threads(threads)
    device = pick_device()
    cfg, tc = model_config(kind, scale), train_config(kind, scale)
    batch, micro = tc.batch_size, tc.micro_batch
    if scale == "paper" and device.type != "cuda":
        batch, micro = 1, 0  # one 1024-token sequence a step: a full batch would take minutes
    tokens = np.random.default_rng(0).integers(0, cfg.vocab_size, 200_000).astype(np.uint16)
    train_cfg = replace(train_config("slm", "default"), batch_size=batch, micro_batch=micro, precision=precision)
    model_module.cross_entropy = PATHS[path]
    torch.manual_seed(0)
    trainer = Trainer(GPT(cfg), train_cfg, BatchSampler(tokens, batch, cfg.context), device=device, progress=False)
    trainer.train_until(1 if cfg.d_model >= 1024 and device.type != "cuda" else 3)  # allocator, kernels

    def step() -> float:
        trainer.train_step()  # its loss.item() waits for the device
        return trainer.tokens_per_step

    return best_rate(step, seconds, windows=2)


def compare(scale: str, kind: str, precision: str, seconds: float, threads: int, rounds: int) -> dict[str, float]:
    """Training tokens/s of each path, best of `rounds` alternating child processes."""
    best = dict.fromkeys(PATHS, 0.0)
    for _ in range(rounds):
        for path in PATHS:
            env = {**os.environ, "LAB_ALLOCATOR": ALLOCATOR[path], "TQDM_DISABLE": "1"}
            out = subprocess.run([sys.executable, __file__, "--child", scale, kind, path, precision,
                                  str(seconds / rounds), str(threads)],
                                 env=env, capture_output=True, text=True, check=True)
            best[path] = max(best[path], float(out.stdout.split()[-1]))
    return best


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        scale, kind, path, precision, seconds, threads = sys.argv[2:8]
        print(child(scale, kind, path, precision, float(seconds), int(threads)))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="timing per path and row")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    parser.add_argument("--paper", action="store_true", help="add the paper-scale models (few steps on a CPU)")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--rounds", type=int, default=3, help="alternating child processes per path and row")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device()
    peak32 = matmul_peak(device, torch.float32, args.seconds)
    peak16 = matmul_peak(device, torch.bfloat16, args.seconds)
    print(f"device {device}, {torch.get_num_threads()} threads; matmul peak fp32 {peak32 / 1e9:.0f} GFLOP/s,"
          f" bf16 {peak16 / 1e9:.0f} GFLOP/s; precision {args.precision}\n")
    print(f"{'model':<14}{'params':>9}{'batch':>7}{'prec':>6}{'plain tok/s':>13}{'fast tok/s':>12}{'fast/plain':>11}"
          f"{'MFU fp32':>10}")
    for scale in ("tiny", "default") + (("paper",) if args.paper or device.type == "cuda" else ()):
        for kind in ("slm", "llm"):
            cfg, tc = model_config(kind, scale), train_config(kind, scale)
            batch = 1 if scale == "paper" and device.type != "cuda" else tc.batch_size
            rates = compare(scale, kind, args.precision, args.seconds, args.threads, args.rounds)
            prec = "bf16" if autocast_dtype(device, cfg.d_model, args.precision) else "fp32"
            achieved = rates["fast"] * costs.train_flops_per_token(cfg)
            print(f"{scale + ' ' + kind:<14}{param_count_formula(cfg) / 1e6:>8.2f}M{batch:>7}{prec:>6}"
                  f"{rates['plain']:>13,.0f}{rates['fast']:>12,.0f}{rates['fast'] / rates['plain']:>10.2f}x"
                  f"{achieved / peak32:>10.0%}", flush=True)


if __name__ == "__main__":
    main()
