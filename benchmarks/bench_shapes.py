"""The measurements behind the default scale's shapes: for each candidate (vocabulary, SLM width,
LLM width) the parameters, the training FLOPs per token, the pretraining budget the regime needs, the
measured training tokens/s, and the time the study's four pretraining runs would take.

    python benchmarks/bench_shapes.py [--seconds 3] [--threads N]

The paper's findings need a capacity-limited SLM and a well-trained LLM (docs/regime.md, section 5):
at the largest pretraining budget the SLM past 300 tokens per parameter and the LLM, trained at the
SLM's FLOPs, past 45 (the distillation teacher the paper needs). The LLM's tokens per parameter at
equal FLOPs is the SLM's divided by (LLM/SLM parameters) x (LLM/SLM FLOPs per token), so the budget
grows with the square of the LLM's size; a smaller vocabulary shrinks both models. The minutes
column prices SLM, LLM, SLM-mix and SLM-hn at that budget (SLM-mix at the SLM's rate, SLM-hn at
1.6x its time per FLOP, `benchmarks/bench_hypernet.py`). It prints a table; it is not a test.
"""
from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np
import torch

from bench_train import best_rate  # this folder is on the path when a benchmark runs as a script
from lab.data.tokens import BatchSampler
from lab.device import autocast_dtype, pick_device
from lab.nn import costs
from lab.nn.model import GPT, GPTConfig, param_count_formula
from lab.training.train import Trainer, train_config

SLM_TOKENS_PER_PARAM = 300
LLM_TOKENS_PER_PARAM = 45
HYPERNET_TIME_PER_FLOP = 1.6

CANDIDATES = [  # (vocabulary, SLM width, LLM width); every model 2 layers, 4 heads, context 128
    (4096, 64, 176),
    (2048, 64, 144),
    (1024, 64, 144),
    (1024, 64, 128),
    (1024, 48, 112),
    (1024, 48, 128),
]


def tokens_per_second(cfg: GPTConfig, seconds: float, device: torch.device) -> float:
    """Best of three windows of the lab's training step (model, loss, AdamW), at batch 8 x context."""
    tokens = np.random.default_rng(0).integers(0, cfg.vocab_size, 200_000).astype(np.uint16)
    torch.manual_seed(0)
    trainer = Trainer(GPT(cfg), replace(train_config("slm", "default"), batch_size=8, micro_batch=0),
                      BatchSampler(tokens, 8, cfg.context), device=device, progress=False)
    trainer.train_until(3)

    def step() -> float:
        trainer.train_step()
        return trainer.tokens_per_step

    return best_rate(step, seconds, windows=3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="timing per model")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device()
    print(f"device {device}, {torch.get_num_threads()} threads; SLM >= {SLM_TOKENS_PER_PARAM} and LLM >= "
          f"{LLM_TOKENS_PER_PARAM} tokens per parameter at the largest budget\n")
    print(f"{'vocab':>6}{'widths':>9}{'SLM params':>12}{'LLM params':>12}{'LLM/SLM FLOPs':>15}{'SLM tokens':>12}"
          f"{'SLM tok/par':>13}{'SLM tok/s':>11}{'LLM tok/s':>11}{'prec':>10}{'4 runs, min':>13}")
    for vocab, sw, lw in CANDIDATES:
        slm = GPTConfig(vocab_size=vocab, context=128, n_layer=2, n_head=4, d_model=sw)
        llm = GPTConfig(vocab_size=vocab, context=128, n_layer=2, n_head=4, d_model=lw)
        ns, nl = param_count_formula(slm), param_count_formula(llm)
        fs, fl = costs.train_flops_per_token(slm), costs.train_flops_per_token(llm)
        budget = max(SLM_TOKENS_PER_PARAM * ns, LLM_TOKENS_PER_PARAM * nl * fl / fs)
        rs, rl = tokens_per_second(slm, args.seconds, device), tokens_per_second(llm, args.seconds, device)
        slm_seconds = budget / rs
        minutes = (slm_seconds * (2 + HYPERNET_TIME_PER_FLOP) + budget * fs / fl / rl) / 60
        prec = "/".join("bf16" if autocast_dtype(device, w) else "fp32" for w in (sw, lw))
        print(f"{vocab:>6}{f'{sw}/{lw}':>9}{ns:>12,}{nl:>12,}{fl / fs:>14.2f}x{budget / 1e6:>11.0f}M"
              f"{budget / ns:>13.0f}{rs:>11,.0f}{rl:>11,.0f}{prec:>10}{minutes:>13.0f}", flush=True)


if __name__ == "__main__":
    main()
