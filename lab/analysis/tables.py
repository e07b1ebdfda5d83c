"""The paper's tables at the lab's scale, computed from cached method runs."""
from __future__ import annotations

import math
from typing import Sequence

import pandas as pd
from tqdm.auto import tqdm

from .. import methods


def _run(method: str, domains: Sequence[str], set_sizes: Sequence[int], scale: str, seed: int,
         pretrain_flops: float | None) -> list[dict]:
    rows = []
    jobs = [(d, n) for d in domains for n in set_sizes]
    for domain, n in tqdm(jobs, desc=method):
        rows.append(methods.report(methods.specialize(method, domain, n, scale, seed=seed,
                                                      pretrain_flops=pretrain_flops, progress=False)))
    return rows


def table4(scale: str, domains: Sequence[str], set_sizes: Sequence[int], seed: int = 0,
           pretrain_flops: float | None = None) -> pd.DataFrame:
    """Test perplexity of the SLM generic only, fine-tuned on each set size, and
    trained on each set alone (SLM-nopt), per domain, with the macro-average
    (exp of the mean per-domain log-perplexity) as the last row: the paper's Table 4."""
    rows = (_run("slm-generic", domains, set_sizes[:1], scale, seed, pretrain_flops)
            + _run("slm", domains, set_sizes, scale, seed, pretrain_flops)
            + _run("slm-nopt", domains, set_sizes, scale, seed, pretrain_flops))
    df = pd.DataFrame(rows)
    df["column"] = [("generic only" if r.method == "slm-generic" else
                     f"{'SLM' if r.method == 'slm' else 'SLM-nopt'} {r.set_tokens:,}") for r in df.itertuples()]
    table = df.pivot_table(index="domain", columns="column", values="ppl_after", sort=False)
    order = ["generic only"] + [f"SLM {n:,}" for n in set_sizes] + [f"SLM-nopt {n:,}" for n in set_sizes]
    table = table[order]
    table.loc["average"] = table.apply(lambda c: math.exp(sum(map(math.log, c)) / len(c)))
    return table
