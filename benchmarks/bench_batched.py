"""Fine-tunes per hour, one by one against stacked (`lab.training.batched.finetune_many`).

    python benchmarks/bench_batched.py [--scale default] [--kinds slm llm] [--stacks 2 4 8] [--steps 60]
                                       [--threads N] [--rounds 2]

Each run fine-tunes a fresh model of the scale's SLM (or LLM) shape with the scale's recipe for its
middle set, for a fixed number of steps (no early stopping, so both ways do the same work),
evaluating every 20 steps on its own validation stream. "one by one" runs k such fine-tunes with
`lab.training.finetune.finetune`; "stacked" runs the same k at once. The two alternate, `--rounds`
times, and each figure is the best round, so the ratio holds on a machine that is not quiet. It
prints a table; it is not a test.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np
import torch

from lab.device import pick_device
from lab.nn.model import GPT, model_config
from lab.scales import get_scale
from lab.training.batched import finetune_many
from lab.training.finetune import finetune, finetune_config


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", default="default")
    ap.add_argument("--kinds", nargs="+", default=["slm", "llm"])
    ap.add_argument("--stacks", nargs="+", type=int, default=[2, 4, 8])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device()
    scale = get_scale(args.scale)
    print(f"device {device}, {torch.get_num_threads()} threads, scale {scale.name}, {args.steps} steps a run")
    print(f"{'model':<6} {'k':>3} {'one by one (runs/h)':>20} {'stacked (runs/h)':>17} {'ratio':>6}")
    rng = np.random.default_rng(0)
    for kind in args.kinds:
        cfg = model_config(kind, scale)
        n = scale.set_tokens[1]
        config = replace(finetune_config(kind, scale, n), max_steps=args.steps, eval_every=20,
                         patience=args.steps, eval_tokens=min(8_192, scale.valid_tokens))
        for k in args.stacks:
            trains = [rng.integers(0, cfg.vocab_size, n) for _ in range(k)]
            valids = [rng.integers(0, cfg.vocab_size, config.eval_tokens + cfg.context + 1) for _ in range(k)]
            models = [GPT(cfg) for _ in range(k)]
            best = {"one by one": 0.0, "stacked": 0.0}
            for _ in range(args.rounds):
                for way in best:
                    sync(device)
                    t0 = time.perf_counter()
                    if way == "stacked":
                        finetune_many(models, trains, valids, config, device=device)
                    else:
                        for m, t, v in zip(models, trains, valids):  # fine-tuning changes its model: a copy each
                            finetune(_copy(m, cfg), t, v, config, device=device, progress=False)
                    sync(device)
                    best[way] = max(best[way], k * 3600 / (time.perf_counter() - t0))
            print(f"{kind:<6} {k:>3} {best['one by one']:>20.0f} {best['stacked']:>17.0f} "
                  f"{best['stacked'] / best['one by one']:>5.2f}x")


def _copy(model: GPT, cfg) -> GPT:
    fresh = GPT(cfg)
    fresh.load_state_dict(model.state_dict())
    return fresh


if __name__ == "__main__":
    main()
