"""Notebook 08 (budget explorer): which method to use under given budgets, from the study's cached results.

Four costs decide the choice (the paper's budgets, docs/regime.md): the pretraining budget (shared
by every domain), the specialization budget (paid per domain), the inference
budget (FLOPs per token of the deployed model), and how much domain text there
is. Every candidate is a point the study measured: a method specialized from one
of its checkpoints (or, for SLM-is, at one share of its specialization budget),
at one set size, with its macro perplexity over the domains.

`recommend` picks the lowest perplexity among the points within the budgets:

- pretraining FLOPs <= the pretraining budget;
- N x specialization FLOPs per domain <= the specialization budget, which is
  the total for the N domains (so more domains leave less for each, and the
  methods that pay per domain, SLM-is first, drop out);
- inference FLOPs per token <= the inference budget.

Ties go to the lower total cost (pretraining + N x specialization).

`decision_map` evaluates that rule on a grid of (inference, specialization)
budgets, and `decision_tree` fits a small classification tree to the map, so
the paper's Figure 1 is read off the data rather than drawn by hand.
`lab.ui.explorer.BudgetExplorer` puts sliders on `recommend`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import LabError

SLACK = 1e-6
"""Relative tolerance on budgets: checkpoints of "equal" budgets differ in the last digits."""


def feasible(points: pd.DataFrame, *, pretrain_budget: float, spec_budget: float, inference_budget: float,
             set_tokens: int, n_domains: int = 1) -> pd.DataFrame:
    """The points at `set_tokens` within the three budgets (see the module notes)."""
    if n_domains < 1:
        raise LabError(f"n_domains={n_domains}: give at least one domain")
    p = points[points["set_tokens"] == set_tokens]
    ok = ((p["pretrain_flops"] <= pretrain_budget * (1 + SLACK))
          & (n_domains * p["specialize_flops"] <= spec_budget * (1 + SLACK))
          & (p["inference_flops_per_token"] <= inference_budget * (1 + SLACK)))
    return p[ok]


def recommend(points: pd.DataFrame, *, pretrain_budget: float, spec_budget: float, inference_budget: float,
              set_tokens: int, n_domains: int = 1) -> dict | None:
    """The best measured point within the budgets (see the module notes), or None if none fits.
    `points` are `lab.study.macro_points`; `spec_budget` is the total for `n_domains` domains."""
    ok = feasible(points, pretrain_budget=pretrain_budget, spec_budget=spec_budget,
                   inference_budget=inference_budget, set_tokens=set_tokens, n_domains=n_domains)
    if ok.empty:
        return None
    total = ok["pretrain_flops"] + n_domains * ok["specialize_flops"]
    best = ok.assign(total=total).sort_values(["ppl_after", "total"]).iloc[0]
    return {"method": best["method"], "fraction": float(best["fraction"]), "ppl": float(best["ppl_after"]),
            "pretrain_flops": float(best["pretrain_flops"]), "specialize_flops": float(best["specialize_flops"]),
            "inference_flops_per_token": float(best["inference_flops_per_token"]),
            "total_flops": float(best["total"]), "n_domains": n_domains, "set_tokens": set_tokens}


def budget_ranges(points: pd.DataFrame) -> dict[str, tuple[float, float]]:
    """Slider ranges (log scale) that span every point: a little below the cheapest nonzero cost
    (zero costs always fit) to a little above the dearest; specialization for up to 100 domains."""
    def span(values: pd.Series, top_factor: float = 1.5) -> tuple[float, float]:
        nonzero = values[values > 0]
        if nonzero.empty:
            return 1.0, 10.0
        return float(nonzero.min()) / 2, float(nonzero.max()) * top_factor

    return {"pretrain": span(points["pretrain_flops"]), "spec": span(points["specialize_flops"], 150.0),
            "inference": span(points["inference_flops_per_token"])}


def decision_map(points: pd.DataFrame, *, set_tokens: int, pretrain_budget: float | None = None,
                 n_domains: int = 1, n_grid: int = 24) -> pd.DataFrame:
    """The best method on a grid of (inference budget, specialization budget), log-spaced over the
    points' costs, at a fixed pretraining budget (default: the largest) and number of domains."""
    p = points[points["set_tokens"] == set_tokens]
    if p.empty:
        raise LabError(f"no study results at set size {set_tokens:,}: choose one of "
                       f"{', '.join(f'{n:,}' for n in sorted(points['set_tokens'].unique()))}")
    ranges = budget_ranges(p)
    pretrain_budget = float(p["pretrain_flops"].max()) if pretrain_budget is None else pretrain_budget
    infs = sorted(set(p["inference_flops_per_token"]))
    # One column per inference cost the points have (the map changes only there), and between them.
    inference = sorted(set(infs) | {math.sqrt(a * b) for a, b in zip(infs, infs[1:])} | {infs[0] / 2})
    lo, hi = ranges["spec"][0], float(p["specialize_flops"].max()) * n_domains * 1.5
    spec = np.geomspace(lo, hi, n_grid)
    rows = []
    for inf in inference:
        for s in spec:
            r = recommend(p, pretrain_budget=pretrain_budget, spec_budget=float(s), inference_budget=inf,
                          set_tokens=set_tokens, n_domains=n_domains)
            rows.append({"inference_budget": inf, "spec_budget": float(s), "method": r["method"] if r else "none",
                         "ppl": r["ppl"] if r else np.nan})
    return pd.DataFrame(rows)


@dataclass
class Tree:
    """A classification tree fitted to a decision map: the rule that reproduces it."""
    model: object
    features: list[str]
    classes: list[str]
    text: str
    accuracy: float
    """Share of the map's cells the tree gets right."""


def decision_tree(dmap: pd.DataFrame, max_depth: int = 3) -> Tree:
    """Fit a shallow tree on log10 budgets -> best method, the paper's Figure 1 learned from the map
    (cells where nothing fits are left out: the tree says what to choose, not when to give up)."""
    from sklearn.tree import DecisionTreeClassifier, export_text

    dmap = dmap[dmap["method"] != "none"]
    if dmap.empty:
        raise LabError("no method fits anywhere on the decision map: widen its budgets")
    features = ["log10 inference FLOPs/token", "log10 specialization FLOPs"]
    x = np.log10(dmap[["inference_budget", "spec_budget"]].to_numpy())
    y = dmap["method"].to_numpy()
    tree = DecisionTreeClassifier(max_depth=max_depth, random_state=0).fit(x, y)
    return Tree(tree, features, [str(c) for c in tree.classes_], export_text(tree, feature_names=features,
                                                                               decimals=2),
                float((tree.predict(x) == y).mean()))


def metrics(points: pd.DataFrame, budgets: dict, dmap: pd.DataFrame, tree: Tree) -> dict:
    """Notebook 08's metrics file: the budgets shown (`recommend`'s keyword arguments), the
    recommendation under them, the decision map's regions and the fitted tree."""
    return {
        "budgets": budgets,
        "recommendation": recommend(points, **budgets),
        "feasible_methods": sorted(feasible(points, **budgets)["method"].unique().tolist()),
        "map_share": {m: float(v) for m, v in dmap["method"].value_counts(normalize=True).items()},
        "map_best_by_inference": {f"{inf:.3g}": g.sort_values("spec_budget")["method"].tolist()
                                  for inf, g in dmap.groupby("inference_budget")},
        "tree": tree.text,
        "tree_accuracy": tree.accuracy,
        "methods": sorted(points["method"].unique().tolist()),
    }
