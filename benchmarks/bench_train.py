"""Training throughput and model FLOP utilisation (MFU) of the lab's models on this device.

    python benchmarks/bench_train.py [--seconds 3] [--threads N] [--paper]

MFU is the model's analytic training FLOPs per second (`lab.nn.costs`) over this
device's matmul peak, measured in the same run with a large matmul in fp32 and
in bf16; bf16 rows are reported against both peaks. Every figure is the best
of four timing windows, which on a shared machine is the least disturbed one.
It prints a table; it is not a test.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace
from typing import Callable

import numpy as np
import torch

from lab.nn import costs
from lab.device import pick_device
from lab.nn.model import GPT, GPTConfig, model_config, param_count_formula
from lab.training.train import train_config
from lab.data.tokens import BatchSampler
from lab.training.train import Trainer


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


def tokens_per_second(cfg: GPTConfig, batch_size: int, micro_batch: int, precision: str,
                      device: torch.device, seconds: float) -> float:
    tokens = np.random.default_rng(0).integers(0, cfg.vocab_size, 200_000).astype(np.uint16)
    train_cfg = replace(train_config("slm", "default"), batch_size=batch_size, micro_batch=micro_batch,
                        precision=precision)
    trainer = Trainer(GPT(cfg), train_cfg, BatchSampler(tokens, batch_size, cfg.context), device=device,
                      progress=False)
    trainer.train_until(1 if cfg.d_model >= 1024 and device.type != "cuda" else 3)  # allocator, kernels

    def step() -> float:
        trainer.train_step()  # its loss.item() waits for the device
        return trainer.tokens_per_step

    return best_rate(step, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="timing per row (best of 4 windows)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    parser.add_argument("--paper", action="store_true", help="add the paper-scale models (few steps on a CPU)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device()
    peak32 = matmul_peak(device, torch.float32, args.seconds)
    peak16 = matmul_peak(device, torch.bfloat16, args.seconds)
    print(f"device {device}, {torch.get_num_threads()} threads; matmul peak fp32 {peak32 / 1e9:.0f} GFLOP/s,"
          f" bf16 {peak16 / 1e9:.0f} GFLOP/s\n")

    rows = []
    for scale in ("tiny", "default") + (("paper",) if args.paper or device.type == "cuda" else ()):
        for kind in ("slm", "llm"):
            tc = train_config(kind, scale)
            batch, micro = tc.batch_size, tc.micro_batch
            if scale == "paper" and device.type != "cuda":
                batch, micro = 1, 0  # one 1024-token sequence a step: a full batch would take minutes
            rows.append((f"{scale} {kind}", model_config(kind, scale), batch, micro))
    base = model_config("slm", "default")
    rows.append(("2 layers d=128", replace(base, d_model=128, d_mlp=512), 8, 0))
    for d in (256, 352):
        rows.append((f"4 layers d={d}", replace(base, n_layer=4, d_model=d, d_mlp=4 * d), 8, 0))

    print(f"{'model':<18}{'params':>9}{'batch':>7}{'prec':>6}{'tokens/s':>10}{'GFLOP/s':>9}"
          f"{'MFU fp32':>10}{'MFU bf16':>10}")
    for name, cfg, batch, micro in rows:
        for precision in ("fp32", "bf16"):
            tps = tokens_per_second(cfg, batch, micro, precision, device, args.seconds)
            achieved = tps * costs.train_flops_per_token(cfg)
            vs16 = f"{achieved / peak16:>10.0%}" if precision == "bf16" else f"{'':>10}"
            print(f"{name:<18}{param_count_formula(cfg) / 1e6:>8.2f}M{batch:>7}{precision:>6}{tps:>10,.0f}"
                  f"{achieved / 1e9:>9.1f}{achieved / peak32:>10.0%}{vs16}", flush=True)


if __name__ == "__main__":
    main()
