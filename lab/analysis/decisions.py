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

The lowest perplexity can cost far more than a point barely worse (SLM-is, paying a
whole pretraining per domain, against a shared SLM), so `cheapest` picks the
point of lowest total cost among those within a tolerance of the best perplexity
(2% unless the reader sets another), and `explain` puts both in words, every
number with its unit.

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
from ..methods import METHODS
from ..methods.base import fraction_label

SLACK = 1e-6
"""Relative tolerance on budgets: checkpoints of "equal" budgets differ in the last digits."""

TOLERANCE = 0.02
"""`cheapest`'s default: a point within 2% of the best perplexity counts as good as the best."""


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
    ok = _priced(points, pretrain_budget=pretrain_budget, spec_budget=spec_budget,
                 inference_budget=inference_budget, set_tokens=set_tokens, n_domains=n_domains)
    if ok.empty:
        return None
    return _choice(ok.sort_values(["ppl_after", "total"]).iloc[0], n_domains, set_tokens)


def cheapest(points: pd.DataFrame, *, pretrain_budget: float, spec_budget: float, inference_budget: float,
             set_tokens: int, n_domains: int = 1, tolerance: float = TOLERANCE) -> dict | None:
    """Among the points within the budgets, the one of lowest total cost whose perplexity is at most
    (1 + `tolerance`) times the best's (ties: the lower perplexity), or None if none fits. Its
    `ppl_limit` is that bound."""
    check_tolerance(tolerance)
    ok = _priced(points, pretrain_budget=pretrain_budget, spec_budget=spec_budget,
                 inference_budget=inference_budget, set_tokens=set_tokens, n_domains=n_domains)
    if ok.empty:
        return None
    limit = float(ok["ppl_after"].min()) * (1 + tolerance)
    near = ok[ok["ppl_after"] <= limit * (1 + SLACK)]
    return {**_choice(near.sort_values(["total", "ppl_after"]).iloc[0], n_domains, set_tokens),
            "tolerance": float(tolerance), "ppl_limit": limit}


def check_tolerance(tolerance: float) -> float:
    if not (isinstance(tolerance, (int, float)) and 0 <= tolerance < math.inf):
        raise LabError(f"tolerance={tolerance!r}: give a share of the best perplexity, 0 or more (0.02 is 2%)")
    return float(tolerance)


def _priced(points: pd.DataFrame, *, n_domains: int, **budgets) -> pd.DataFrame:
    """`feasible`, with each point's total cost for `n_domains` domains."""
    ok = feasible(points, n_domains=n_domains, **budgets)
    return ok.assign(total=ok["pretrain_flops"] + n_domains * ok["specialize_flops"])


def _choice(row: pd.Series, n_domains: int, set_tokens: int) -> dict:
    return {"method": row["method"], "fraction": float(row["fraction"]), "ppl": float(row["ppl_after"]),
            "pretrain_flops": float(row["pretrain_flops"]), "specialize_flops": float(row["specialize_flops"]),
            "inference_flops_per_token": float(row["inference_flops_per_token"]),
            "total_flops": float(row["total"]), "n_domains": n_domains, "set_tokens": set_tokens,
            "study_domains": int(row["n_domains"])}


def _flops(x: float) -> str:
    """3 significant digits, exponents as people write them (1e5, not 1e+05)."""
    mantissa, _, exponent = f"{x:.3g}".partition("e")
    return f"{mantissa}e{int(exponent)}" if exponent else mantissa


def _name(choice: dict) -> str:
    """The method as the paper writes it, and which of its measured points (see `macro_points`)."""
    method = METHODS.get(choice["method"])
    name = method.title if method is not None and method.title else choice["method"]
    if choice["fraction"] >= 1:
        return name
    if method is not None and method.from_scratch:
        return f"{name} trained on {fraction_label(choice['fraction'])} of its specialization budget"
    return f"{name} from its checkpoint at {fraction_label(choice['fraction'])} of its pretraining budget"


def _costs(choice: dict) -> str:
    n = choice["n_domains"]
    return (f"total cost {_flops(choice['total_flops'])} FLOPs for {n} domain{'s' if n > 1 else ''} = pretraining "
            f"{_flops(choice['pretrain_flops'])} FLOPs (paid once) + {n} x {_flops(choice['specialize_flops'])} "
            f"FLOPs of specialization (paid per domain); inference {_flops(choice['inference_flops_per_token'])} "
            "FLOPs per token")


def explain(best: dict | None, cheap: dict | None, *, tolerance: float = TOLERANCE) -> list[str]:
    """`recommend`'s and `cheapest`'s answers in words, one paragraph each, and what their numbers mean."""
    if best is None:
        return ["No measured method fits these budgets: raise one of them, or choose fewer domains."]
    lines = [f"Lowest perplexity within the budgets: {_name(best)}, macro test perplexity {best['ppl']:.2f}; "
             f"{_costs(best)}."]
    within = f"within {100 * tolerance:g}% of that perplexity"
    if cheap is None or (cheap["method"], cheap["fraction"]) == (best["method"], best["fraction"]):
        lines.append(f"It is also the cheapest choice {within} (at most {best['ppl'] * (1 + tolerance):.2f}).")
    else:
        saved = 1 - cheap["total_flops"] / best["total_flops"] if best["total_flops"] else 0.0
        lines.append(f"Cheapest {within} (at most {cheap['ppl_limit']:.2f}): {_name(cheap)}, perplexity "
                     f"{cheap['ppl']:.2f}; {_costs(cheap)}. It saves {saved:.0%} of the total cost for "
                     f"{cheap['ppl'] / best['ppl'] - 1:.1%} more perplexity.")
    lines.append(f"FLOPs: floating-point operations spent training (about 6 per model parameter per token read). "
                 f"FLOPs per token: what the deployed model spends on each token it reads or writes. Macro test "
                 f"perplexity: exp of the mean log-perplexity on the held-out test text of the study's "
                 f"{best['study_domains']} domains, each model specialized on {best['set_tokens']:,} tokens of "
                 f"its domain's text; lower is better.")
    return lines


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


def metrics(points: pd.DataFrame, budgets: dict, dmap: pd.DataFrame, tree: Tree,
            tolerance: float = TOLERANCE) -> dict:
    """Notebook 08's metrics file: the budgets shown (`recommend`'s keyword arguments), the
    recommendation under them and the cheapest point within `tolerance` of it, the decision map's
    regions and the fitted tree."""
    return {
        "budgets": budgets,
        "recommendation": recommend(points, **budgets),
        "tolerance": tolerance,
        "cheapest": cheapest(points, tolerance=tolerance, **budgets),
        "feasible_methods": sorted(feasible(points, **budgets)["method"].unique().tolist()),
        "map_share": {m: float(v) for m, v in dmap["method"].value_counts(normalize=True).items()},
        "map_best_by_inference": {f"{inf:.3g}": g.sort_values("spec_budget")["method"].tolist()
                                  for inf, g in dmap.groupby("inference_budget")},
        "tree": tree.text,
        "tree_accuracy": tree.accuracy,
        "methods": sorted(points["method"].unique().tolist()),
    }
