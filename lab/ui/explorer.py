"""The budget explorer of notebook 08: sliders on `lab.analysis.decisions.recommend` and
`cheapest` (ipywidgets), in JupyterLab or as a web app (`python -m lab explore`, Voilà).

Its callbacks only filter the study's cached points, so they answer at once, and
without a live front-end (papermill) the notebook shows its initial state as a
static figure.
"""
from __future__ import annotations

import html
import io
import math

import pandas as pd

from ..analysis import decisions
from ..errors import LabError


# One description width for every slider, so that their tracks line up.
STYLE = {"description_width": "300px"}
WIDTH = "720px"


class BudgetExplorer:
    """Sliders for the five budgets and the perplexity tolerance; the plot and the recommendation
    follow them.

    `sliders` holds the ipywidgets ("pretrain", "spec", "inference", "set_tokens",
    "n_domains", "tolerance" in percent, and "cost", the plot's cost axis: "flops" or
    "hours", measured device-hours); setting a slider's `value` updates
    `recommendation`, `cheapest` and `summary` at once (tests do exactly that).
    `widget()` is the interactive view, `figure()` the static one.
    """

    def __init__(self, points: pd.DataFrame, *, pretrain_budget: float | None = None,
                 spec_budget: float | None = None, inference_budget: float | None = None,
                 set_tokens: int | None = None, n_domains: int = 1, tolerance: float = decisions.TOLERANCE,
                 cost: str = "flops"):
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
                                    style=STYLE, layout=w.Layout(width=WIDTH))

        tolerance = decisions.check_tolerance(tolerance)
        if cost not in ("flops", "hours"):
            raise LabError(f"cost={cost!r}: the plot's cost axis is 'flops' or 'hours' (measured device-hours)")
        self.sliders = {
            "pretrain": log_slider("pretrain", "pretrain", pretrain_budget, "pretraining budget (FLOPs)"),
            "spec": log_slider("spec", "spec", spec_budget, "specialization budget, all domains (FLOPs)"),
            "inference": log_slider("inference", "inference", inference_budget, "inference budget (FLOPs/token)"),
            "set_tokens": w.SelectionSlider(options=[(f"{n:,}", n) for n in sizes],
                                            value=set_tokens if set_tokens in sizes else sizes[0],
                                            description="in-domain text per domain (tokens)",
                                            style=STYLE, layout=w.Layout(width=WIDTH)),
            "n_domains": w.IntSlider(value=n_domains, min=1, max=100, description="domains",
                                     style=STYLE, layout=w.Layout(width=WIDTH)),
            "tolerance": w.FloatSlider(value=100 * tolerance, min=0, max=max(20.0, 100 * tolerance), step=0.5,
                                       description="perplexity tolerance (%)",
                                       readout_format=".1f", style=STYLE, layout=w.Layout(width=WIDTH)),
            # The budgets stay in FLOPs; device-hours place the same points at their measured cost.
            "cost": w.ToggleButtons(options=[("FLOPs", "flops"), ("device-hours (measured)", "hours")], value=cost,
                                    description="plot's cost axis", style=STYLE),
        }
        self.output = w.Output()
        self.label = w.HTML()
        self.recommendation: dict | None = None
        self.cheapest: dict | None = None
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

    @property
    def tolerance(self) -> float:
        """The tolerance slider as a share (0.02 for 2%)."""
        return self.sliders["tolerance"].value / 100

    def update(self) -> None:
        """Recompute the recommendation from the cached points and redraw (no training)."""
        self.recommendation = decisions.recommend(self.points, **self.budgets)
        self.cheapest = decisions.cheapest(self.points, tolerance=self.tolerance, **self.budgets)
        self.label.value = "".join(f"<p>{html.escape(line)}</p>" for line in self.lines)
        if self._shown:
            import matplotlib.pyplot as plt
            from IPython.display import Image, display

            fig = self.figure()
            # A PNG of its own, so the view draws whatever matplotlib backend the kernel has.
            png = io.BytesIO()
            fig.savefig(png, format="png", bbox_inches="tight")
            plt.close(fig)
            self.output.clear_output(wait=True)
            with self.output:
                display(Image(data=png.getvalue()))

    @property
    def lines(self) -> list[str]:
        """The recommendation in words (`lab.analysis.decisions.explain`)."""
        return decisions.explain(self.recommendation, self.cheapest, tolerance=self.tolerance)

    @property
    def summary(self) -> str:
        return "\n".join(self.lines)

    def feasible(self) -> pd.DataFrame:
        return decisions.feasible(self.points, **self.budgets)

    def figure(self):
        from ..plots.budgets import explorer_view

        return explorer_view(self.points, self.budgets, self.recommendation, self.feasible(), self.cheapest,
                             cost=self.sliders["cost"].value)

    def widget(self):
        """The interactive view: sliders, the recommendation, the plot."""
        import ipywidgets as w

        self._shown = True
        self.update()
        return w.VBox([*self.sliders.values(), self.label, self.output])
