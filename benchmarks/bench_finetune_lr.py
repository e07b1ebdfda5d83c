"""The fine-tuning learning rate against perplexity at each in-domain set size: the measurement
behind `lab.training.finetune.finetune_config`'s recipe (the paper: a third of the base rate on its
1M-token set, the base rate on 8M and 64M, early stopping on domain validation loss).

    python benchmarks/bench_finetune_lr.py [--scale default] [--kinds slm llm] [--domains legal science drama]
                                          [--shares 0.003 0.01 0.03 0.1 0.3]

Fine-tunes the fully pretrained SLM and LLM of the scale (pretrained first if the cache lacks them)
on each domain and set size at each rate, given as a share of the model's pretraining rate, and
prints the macro test perplexity (exp of the mean log-perplexity over the domains); `*` marks the
recipe's own rate. Runs are cached rows of the results store (method `lr-sweep-<kind>`, outside the
study's manifest), so a second call prints at once. It prints a table; it is not a test.
"""
from __future__ import annotations

import argparse
from dataclasses import replace

from lab.methods import METHODS
from lab.methods.common import domain_data, pick_checkpoint
from lab.methods.runs import specialize_run
from lab.scales import get_scale
from lab.training.evaluate import macro_perplexity
from lab.training.finetune import finetune_config
from lab.training.train import train_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="default")
    parser.add_argument("--kinds", nargs="+", default=["slm", "llm"], choices=["slm", "llm"])
    parser.add_argument("--domains", nargs="+", default=["legal", "science", "drama"])
    parser.add_argument("--shares", nargs="+", type=float, default=[0.003, 0.01, 0.03, 0.1, 0.3],
                        help="learning rates as shares of the pretraining rate")
    args = parser.parse_args()
    scale = get_scale(args.scale)
    print(f"scale {scale.name}; macro test perplexity over {', '.join(args.domains)} after fine-tuning at each "
          f"rate (share of the pretraining rate); * the recipe's rate; in brackets the mean best step\n")
    for kind in args.kinds:
        ckpt = pick_checkpoint(METHODS[kind].pretrain(scale, progress=False), None)["checkpoint"]
        base_lr = train_config(kind, scale).lr
        before = None
        print(f"{kind.upper()} (pretraining rate {base_lr:g})")
        print(f"{'set tokens':>11}" + "".join(f"{s:>16g}" for s in args.shares) + f"{'recipe':>10}")
        for set_tokens in scale.set_tokens:
            recipe = finetune_config(kind, scale, set_tokens)
            cells = []
            for share in args.shares:
                rows = []
                for domain in args.domains:
                    dom, train = domain_data(domain, set_tokens, scale)
                    rows.append(specialize_run(ckpt, kind, scale.name, dom.name, train, dom.validation, dom.test,
                                               method=f"lr-sweep-{kind}",
                                               config=replace(recipe, lr=base_lr * share), progress=False))
                ppl = macro_perplexity([r["ppl_after"] for r in rows])
                if before is None:  # the pretrained model on the test sets: one value per kind
                    before = macro_perplexity([r["ppl_before"] for r in rows])
                steps = sum(r.extra["best_step"] for r in rows) / len(rows)
                mark = "*" if abs(recipe.lr - base_lr * share) <= 1e-3 * recipe.lr else " "
                cells.append(f"{ppl:>8.2f}{mark}({steps:>4.0f})")
            print(f"{set_tokens:>11,}" + "".join(f"{c:>16}" for c in cells) + f"{recipe.lr / base_lr:>10.3g}",
                  flush=True)
        print(f"before fine-tuning: {before:.2f}\n")


if __name__ == "__main__":
    main()
