"""The budget explorer of notebook 08: sliders on `lab.analysis.decisions.recommend` (ipywidgets).

Its callbacks only filter the study's cached points, so they answer at once, and
without a live front-end (papermill) the notebook shows its initial state as a
static figure.
"""
from __future__ import annotations

import math

import pandas as pd

from ..analysis import decisions
from ..errors import LabError


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
        r = decisions.budget_ranges(points)
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
        self.recommendation = decisions.recommend(self.points, **self.budgets)
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
        return decisions.feasible(self.points, **self.budgets)

    def figure(self):
        from ..plots.budgets import explorer_view

        return explorer_view(self.points, self.budgets, self.recommendation, self.feasible())

    def widget(self):
        """The interactive view: sliders, the recommendation, the plot."""
        import ipywidgets as w

        self._shown = True
        self.update()
        return w.VBox([*self.sliders.values(), self.label, self.output])
