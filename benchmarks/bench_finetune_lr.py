"""The fine-tuning learning rate against perplexity at each in-domain set size, for every method
that fine-tunes: the measurement behind `lab.training.finetune.finetune_config`'s recipe (the paper:
a third of the base rate on its 1M-token set, the base rate on 8M and 64M, early stopping on domain
validation loss).

    python benchmarks/bench_finetune_lr.py [--scale default] [--methods slm llm slm-mix slm-hn slm-is slm-d]
                                          [--domains legal science drama] [--shares 0.003 0.01 0.03 0.1 0.3]
                                          [--per-domain]

Each method specializes to each domain and set size at each rate (`lr_scale`, the method's own
specialization: SLM-mix's chosen expert, SLM-hn's generated SLM, SLM-is's model trained on the
resampled stream, SLM-d's student with its fine-tuned teacher), the rate given as a share of the
pretraining rate of the model it fine-tunes; what each method needs is trained first if the cache
lacks it. It prints the macro test perplexity (exp of the mean log-perplexity over the domains); `*`
marks the recipe's own rate; `--per-domain` adds each domain's perplexities below. SLM-is runs on
the scale's SLM-is sets only (`Scale.importance_sets`): each of its domains and sets trains a model of
its own. Runs are cached rows of the results store
(the study reads its rows by its manifest's keys, so these stay out of it), so a second call prints at
once. It prints a table; it is not a test.
"""
from __future__ import annotations

import argparse

from lab import methods
from lab.methods import METHODS
from lab.scales import get_scale
from lab.study.plan import make_plan
from lab.training.evaluate import macro_perplexity
from lab.training.finetune import finetune_config
from lab.training.train import train_config

FINETUNED = ("slm", "llm", "slm-mix", "slm-hn", "slm-is", "slm-d")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="default")
    parser.add_argument("--methods", nargs="+", default=list(FINETUNED), choices=FINETUNED)
    parser.add_argument("--domains", nargs="+", default=["legal", "science", "drama"])
    parser.add_argument("--shares", nargs="+", type=float, default=[0.003, 0.01, 0.03, 0.1, 0.3],
                        help="learning rates as shares of the pretraining rate")
    parser.add_argument("--per-domain", action="store_true", help="each domain's perplexities below the macro")
    args = parser.parse_args()
    scale = get_scale(args.scale)
    # The study's set sizes, and among them those it trains SLM-is on (one rule, `make_plan`'s).
    plan = make_plan(scale, domains=args.domains)
    print(f"scale {scale.name}; macro test perplexity over {', '.join(args.domains)} after fine-tuning at each "
          f"rate (share of the pretraining rate); * the recipe's rate; in brackets the mean best step\n")
    for name in args.methods:
        kind = "llm" if name == "llm" else "slm"
        base_lr = train_config(kind, scale).lr
        sets = plan.is_sets if name == "slm-is" else plan.set_sizes
        print(f"{METHODS[name].title} (rates as shares of the {kind.upper()}'s pretraining rate, {base_lr:.1e})")
        print(f"{'set tokens':>11}" + "".join(f"{s:>16g}" for s in args.shares) + f"{'recipe':>10}{'before':>9}")
        for set_tokens in sets:
            recipe = finetune_config(kind, scale, set_tokens)
            cells, by_domain = [], {domain: [] for domain in args.domains}
            for share in args.shares:
                lr_scale = base_lr * share / recipe.lr
                mark = "*" if abs(lr_scale - 1.0) <= 1e-3 else " "
                rows = [methods.specialize(name, domain, set_tokens, scale.name, progress=False, lr_scale=lr_scale)
                        for domain in args.domains]
                ppl = macro_perplexity([r["ppl_after"] for r in rows])
                # Before fine-tuning: SLM-is's model differs by set, the others' only by domain.
                before = macro_perplexity([r["ppl_before"] for r in rows])
                steps = sum(r.extra["best_step"] for r in rows) / len(rows)
                cells.append(f"{ppl:>8.2f}{mark}({steps:>4.0f})")
                for domain, r in zip(args.domains, rows):
                    by_domain[domain].append((f"{r['ppl_after']:>8.2f}{mark}({r.extra['best_step']:>4})",
                                              r["ppl_before"]))
            print(f"{set_tokens:>11,}" + "".join(f"{c:>16}" for c in cells) + f"{recipe.lr / base_lr:>10.3g}"
                  f"{before:>9.2f}", flush=True)
            if args.per_domain:
                for domain, domain_cells in by_domain.items():
                    print(f"{domain:>11}" + "".join(f"{c:>16}" for c, _ in domain_cells) + f"{'':>10}"
                          f"{domain_cells[-1][1]:>9.2f}")
        print()


if __name__ == "__main__":
    main()
