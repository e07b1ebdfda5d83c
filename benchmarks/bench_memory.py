"""Peak resident memory of each kind of study step at a scale, each in a fresh process.

    python benchmarks/bench_memory.py [--scale default] [--steps 30]

A step's memory reaches its plateau within its first optimizer steps (weights, AdamW moments,
activations of one batch, the token streams it reads), so each kind is run for `--steps` steps of
its own recipe on the scale's shapes, on random token streams of the sizes the study reads (the
generic training stream, about the default corpus's unless told, the largest domain set, the
validation set), and reports the process's peak resident set (`ru_maxrss`): Python, torch and the
lab's imports included. It prints a table; it is not a test.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys

KINDS = ("slm", "llm", "slm-mix", "slm-hn", "finetune-llm")


def run_kind(kind: str, scale_name: str, steps: int, generic_tokens: int) -> dict:
    import numpy as np
    import torch

    from lab.data.tokens import BatchSampler, window_starts
    from lab.nn.hypernet import HyperGPT
    from lab.nn.mixture import BatchedGPT
    from lab.nn.model import GPT, model_config
    from lab.methods.hypernet import hyper_config
    from lab.scales import get_scale
    from lab.training.finetune import finetune, finetune_config
    from lab.training.routing import ExpertSampler, RoutedSampler
    from lab.training.train import Trainer, train_config

    scale = get_scale(scale_name)
    rng = np.random.default_rng(0)
    vocab = scale.vocab_size
    generic = rng.integers(0, vocab, generic_tokens, dtype=np.uint16)
    valid = rng.integers(0, vocab, scale.valid_tokens, dtype=np.uint16)
    cfg = model_config("llm" if kind in ("llm", "finetune-llm") else "slm", scale)
    if kind == "finetune-llm":  # the largest set, at the LLM's shape: the longest fine-tunes
        train = rng.integers(0, vocab, max(scale.set_tokens), dtype=np.uint16)
        config = finetune_config("llm", scale, len(train))
        finetune(GPT(cfg), train, valid, type(config)(**{**config.__dict__, "max_steps": steps}), progress=False)
    else:
        tc = train_config("llm" if kind == "llm" else "slm", scale)
        windows = np.arange(0, len(generic) - cfg.context - 1, cfg.context)
        if kind == "slm-mix":
            k = scale.mixture_experts
            model = BatchedGPT(cfg, k)
            sampler = ExpertSampler(generic, [windows[e::k] for e in range(k)], tc.batch_size, cfg.context)
        elif kind == "slm-hn":
            hcfg = hyper_config(scale_name)
            model = HyperGPT(hcfg)
            ids = rng.integers(0, hcfg.n_experts, len(window_starts(len(generic), cfg.context)))
            sampler = RoutedSampler(generic, ids, tc.batch_size, cfg.context)
        else:
            model = GPT(cfg)
            sampler = BatchSampler(generic, tc.batch_size, cfg.context)
        # The dense models' evaluation is scored here too; the routed models' is a fraction of their step.
        dense = kind in ("slm", "llm")
        trainer = Trainer(model, tc, sampler, valid=valid if dense else None, progress=False)
        trainer.train_until(steps)
        if dense:
            trainer.evaluate()
    return {"kind": kind, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "threads": torch.get_num_threads()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", default="default")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--generic-tokens", type=int, default=40_000_000,
                    help="length of the generic training stream held in memory (default: about the default corpus's)")
    ap.add_argument("--kind", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.kind:
        print(json.dumps(run_kind(args.kind, args.scale, args.steps, args.generic_tokens)))
        return
    print(f"scale {args.scale}, {args.steps} steps each, generic stream {args.generic_tokens:,} tokens")
    print(f"{'step':<14} {'peak resident (MiB)':>20}")
    for kind in KINDS:
        out = subprocess.run([sys.executable, __file__, "--scale", args.scale, "--steps", str(args.steps),
                              "--generic-tokens", str(args.generic_tokens), "--kind", kind],
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{kind:<14} {r['peak_mib']:>20.0f}")


if __name__ == "__main__":
    main()
