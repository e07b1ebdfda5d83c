"""The budget explorer: which method to use under given budgets, from the study's cached results.

Four costs decide the choice (DESIGN section 1): the pretraining budget (shared
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
`BudgetExplorer` puts sliders on it (ipywidgets); its callbacks only filter the
cached points, so they answer at once, and without a live front-end (papermill)
the notebook shows its initial state as a static figure.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import LabError

SLACK = 1e-6
"""Relative tolerance on budgets: checkpoints of "equal" budgets differ in the last digits."""


def _feasible(points: pd.DataFrame, *, pretrain_budget: float, spec_budget: float, inference_budget: float,
              set_tokens: int, n_domains: int = 1) -> pd.DataFrame:
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
    ok = _feasible(points, pretrain_budget=pretrain_budget, spec_budget=spec_budget,
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


class BudgetExplorer:
    """Sliders for the five budgets; the plot and the recommendation follow them.

    `sliders` holds the ipywidgets ("pretrain", "spec", "inference", "set_tokens",
    "n_domains"); setting a slider's `value` updates `recommendation` and
    `summary` at once (tests do exactly that). `widget()` is the interactive view,
    `figure()` the static one.
    """

    def __init__(self, points: pd.DataFrame, *, pretrain_budget: float | None = None,
                 spec_budget: float | None = None, inference_budget: float | None = None,
                 set_tokens: int | None = None, n_domains: int = 1):
        import ipywidgets as w

        if points.empty:
            raise LabError("the study has no results yet: run `python -m lab study --scale <scale>` first")
        self.points = points
        r = budget_ranges(points)
        sizes = sorted(int(n) for n in points["set_tokens"].unique())

        def log_slider(name: str, key: str, value: float | None, desc: str) -> w.FloatLogSlider:
            lo, hi = r[key]
            value = hi if value is None else min(max(value, lo), hi)
            return w.FloatLogSlider(value=value, base=10, min=math.log10(lo), max=math.log10(hi), step=0.05,
                                    description=desc, readout_format=".2e", continuous_update=True,
                                    style={"description_width": "initial"}, layout=w.Layout(width="520px"))

        self.sliders = {
            "pretrain": log_slider("pretrain", "pretrain", pretrain_budget, "pretraining budget (FLOPs)"),
            "spec": log_slider("spec", "spec", spec_budget, "specialization budget, all domains (FLOPs)"),
            "inference": log_slider("inference", "inference", inference_budget, "inference budget (FLOPs/token)"),
            "set_tokens": w.SelectionSlider(options=[(f"{n:,}", n) for n in sizes],
                                            value=set_tokens if set_tokens in sizes else sizes[0],
                                            description="in-domain set (tokens)",
                                            style={"description_width": "initial"}),
            "n_domains": w.IntSlider(value=n_domains, min=1, max=100, description="domains",
                                     style={"description_width": "initial"}),
        }
        self.output = w.Output()
        self.label = w.HTML()
        self.recommendation: dict | None = None
        self._shown = False  # redraw into `output` only once the widget is on screen
        for s in self.sliders.values():
            s.observe(lambda change: self.update(), names="value")
        self.update()

    @property
    def budgets(self) -> dict:
        s = self.sliders
        return {"pretrain_budget": s["pretrain"].value, "spec_budget": s["spec"].value,
                "inference_budget": s["inference"].value, "set_tokens": s["set_tokens"].value,
                "n_domains": s["n_domains"].value}

    def update(self) -> None:
        """Recompute the recommendation from the cached points and redraw (no training)."""
        self.recommendation = recommend(self.points, **self.budgets)
        self.label.value = f"<b>{self.summary}</b>"
        if self._shown:
            import matplotlib.pyplot as plt
            from IPython.display import display

            self.output.clear_output(wait=True)
            with self.output:
                fig = self.figure()
                display(fig)
                plt.close(fig)

    @property
    def summary(self) -> str:
        r, b = self.recommendation, self.budgets
        if r is None:
            return (f"No measured method fits these budgets for {b['n_domains']} domain(s) at "
                    f"{b['set_tokens']:,} tokens: raise one of them.")
        return (f"Recommended: {r['method']} (budget share {r['fraction']:g}): expected perplexity {r['ppl']:.2f}, "
                f"total cost {r['total_flops']:.3g} FLOPs for {r['n_domains']} domain(s) "
                f"(pretraining {r['pretrain_flops']:.3g} + {r['n_domains']} x {r['specialize_flops']:.3g}), "
                f"inference {r['inference_flops_per_token']:.3g} FLOPs/token")

    def feasible(self) -> pd.DataFrame:
        return _feasible(self.points, **self.budgets)

    def figure(self):
        from ..plots.budgets import explorer_view

        return explorer_view(self.points, self.budgets, self.recommendation, self.feasible())

    def widget(self):
        """The interactive view: sliders, the recommendation, the plot."""
        import ipywidgets as w

        self._shown = True
        self.update()
        return w.VBox([*self.sliders.values(), self.label, self.output])


def metrics(explorer: BudgetExplorer, dmap: pd.DataFrame, tree: Tree) -> dict:
    """Notebook 08's metrics file: the budgets shown, the recommendation, the decision map's regions
    and the fitted tree."""
    return {
        "budgets": explorer.budgets,
        "recommendation": explorer.recommendation,
        "feasible_methods": sorted(explorer.feasible()["method"].unique().tolist()),
        "map_share": {m: float(v) for m, v in dmap["method"].value_counts(normalize=True).items()},
        "map_best_by_inference": {f"{inf:.3g}": g.sort_values("spec_budget")["method"].tolist()
                                  for inf, g in dmap.groupby("inference_budget")},
        "tree": tree.text,
        "tree_accuracy": tree.accuracy,
        "methods": sorted(explorer.points["method"].unique().tolist()),
    }
