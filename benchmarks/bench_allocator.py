"""Training tokens/s and page faults with glibc's allocator defaults against the lab's setting
(`lab.device.keep_freed_memory`).

    python benchmarks/bench_allocator.py [--scales tiny default] [--kinds slm llm] [--rounds 4]
                                         [--seconds 6] [--threads 2]

An allocator setting holds for a whole process, so each figure comes from a fresh child process
(`LAB_ALLOCATOR=glibc` or the lab's default) that trains the scale's model on random tokens with
the lab's `Trainer` and fast step, after a few warm-up steps. The two settings alternate, `--rounds`
times, and each figure is the best round, so the ratio holds on a machine that is not quiet. Minor
page faults per step and peak resident memory come from the child's `getrusage`. It prints a
table; it is not a test.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

SETTINGS = ("glibc", "lab")


def child(kind: str, scale: str, seconds: float, threads: int) -> dict:
    """One measurement in this process, under the allocator setting it was started with."""
    import numpy as np
    import torch

    from lab.data.tokens import BatchSampler
    from lab.device import keep_freed_memory
    from lab.nn.model import GPT, model_config
    from lab.training.train import Trainer, train_config

    torch.set_num_threads(threads)
    cfg, tc = model_config(kind, scale), train_config(kind, scale)
    tokens = np.random.default_rng(0).integers(0, cfg.vocab_size, 400_000).astype(np.uint16)
    torch.manual_seed(0)
    trainer = Trainer(GPT(cfg), tc, BatchSampler(tokens, tc.batch_size, cfg.context), device="cpu", progress=False)
    trainer.train_until(5)
    faults0, step0, t0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, trainer.step, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        trainer.train_step()
    elapsed, steps = time.perf_counter() - t0, trainer.step - step0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"tokens_per_s": steps * trainer.tokens_per_step / elapsed,
            "faults_per_step": (usage.ru_minflt - faults0) / steps,
            "peak_mib": usage.ru_maxrss / 1024, "kept": keep_freed_memory()}


def measure(setting: str, kind: str, scale: str, seconds: float, threads: int) -> dict:
    env = {**os.environ, "LAB_ALLOCATOR": setting, "OMP_NUM_THREADS": str(threads), "TQDM_DISABLE": "1"}
    out = subprocess.run([sys.executable, __file__, "--child", kind, scale, str(seconds), str(threads)],
                         env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        kind, scale, seconds, threads = sys.argv[2:6]
        print(json.dumps(child(kind, scale, float(seconds), int(threads))))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scales", nargs="+", default=["tiny", "default"])
    ap.add_argument("--kinds", nargs="+", default=["slm", "llm"])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=6.0, help="timed training per child")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    print(f"{args.threads} threads, best of {args.rounds} alternating rounds, {args.seconds:g} s each\n")
    print(f"{'model':<14}{'glibc tok/s':>13}{'lab tok/s':>11}{'lab/glibc':>11}"
          f"{'faults/step glibc':>19}{'lab':>7}{'peak MiB glibc':>16}{'lab':>7}")
    for scale in args.scales:
        for kind in args.kinds:
            runs: dict[str, list[dict]] = {s: [] for s in SETTINGS}
            for _ in range(args.rounds):
                for setting in SETTINGS:
                    runs[setting].append(measure(setting, kind, scale, args.seconds, args.threads))
            if not all(r["kept"] for r in runs["lab"]):
                print(f"{scale} {kind}: the lab's setting was not applied here (no glibc mallopt)")
            best = {s: max(r["tokens_per_s"] for r in runs[s]) for s in SETTINGS}
            faults = {s: min(r["faults_per_step"] for r in runs[s]) for s in SETTINGS}
            peak = {s: max(r["peak_mib"] for r in runs[s]) for s in SETTINGS}
            print(f"{scale + ' ' + kind:<14}{best['glibc']:>13,.0f}{best['lab']:>11,.0f}"
                  f"{best['lab'] / best['glibc']:>10.2f}x{faults['glibc']:>19,.0f}{faults['lab']:>7,.0f}"
                  f"{peak['glibc']:>16,.0f}{peak['lab']:>7,.0f}", flush=True)


if __name__ == "__main__":
    main()
