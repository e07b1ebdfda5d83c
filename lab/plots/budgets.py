"""Figures of the budget study (notebook 07) and of the budget explorer (notebook 08).

Costs are FLOPs on log axes. Methods with no pretraining (SLM-is, whose cost is
all specialization, and SLM-nopt) cannot sit on a log pretraining axis: they
are drawn as flat dashed lines across it, as in the paper.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch
from matplotlib.ticker import NullFormatter
import pandas as pd
import seaborn as sns

from . import perplexity_yaxis

METHOD_ORDER = ("slm", "slm-generic", "slm-nopt", "llm", "slm-d", "slm-is", "slm-mix", "slm-hn")


def palette(methods) -> dict:
    colors = sns.color_palette("tab10", len(METHOD_ORDER))
    known = dict(zip(METHOD_ORDER, colors))
    extra = iter(sns.color_palette("Set2", 8))
    return {m: known[m] if m in known else next(extra) for m in methods}


def _order(methods) -> list[str]:
    present = list(dict.fromkeys(methods))
    return [m for m in METHOD_ORDER if m in present] + [m for m in present if m not in METHOD_ORDER]


def _flat_lines(ax, flat: pd.DataFrame, y: str, colors: dict) -> None:
    """Methods without pretraining: a dashed line at their value (the best one if several)."""
    for method, g in flat.groupby("method"):
        ax.axhline(g[y].min(), color=colors[method], ls="--", lw=1.5, label=f"{method} (no pretraining)")


def _log_axes(*axes) -> None:
    """Log-log axes: costs labelled at powers of ten only (minor labels crowd), perplexities in plain numbers."""
    for ax in axes:
        ax.set_xscale("log")
        perplexity_yaxis(ax)
        ax.xaxis.set_minor_formatter(NullFormatter())


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def generic_curves(pretrain: pd.DataFrame):
    """Generic validation perplexity against pretraining FLOPs, one line per pretrained model."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    if pretrain.empty:
        _empty(ax, "no pretraining results: run the study")
        return fig
    colors = palette(pretrain["method"].unique())
    sns.lineplot(data=pretrain, x="pretrain_flops", y="generic_ppl", hue="method", hue_order=_order(pretrain["method"]),
                 palette=colors, marker="o", ax=ax)
    _log_axes(ax)
    ax.set_xlabel("pretraining cost (FLOPs)")
    ax.set_ylabel("generic validation perplexity")
    ax.set_title("Generic perplexity at equal pretraining FLOPs")
    fig.tight_layout()
    return fig


def domain_curves(points: pd.DataFrame):
    """Macro domain perplexity against pretraining FLOPs: before fine-tuning, then after it for each set
    size (one panel each). Methods measured at one budget only show as single points."""
    sizes = sorted(points["set_tokens"].unique()) if len(points) else []
    # Shared x: the larger sets hold only the full-budget points, which alone span less than a decade.
    fig, axes = plt.subplots(1, len(sizes) + 1, figsize=(4.2 * (len(sizes) + 1), 4.2), sharex=True,
                             squeeze=False)
    axes = axes[0]
    if not sizes:
        _empty(axes[0], "no specialization results: run the study")
        return fig
    colors = palette(points["method"].unique())
    panels = [("ppl_before", sizes[0], f"before fine-tuning (set {sizes[0]:,})")] + \
             [("ppl_after", n, f"after fine-tuning on {n:,} tokens") for n in sizes]
    for ax, (y, n, title) in zip(axes, panels):
        p = points[points["set_tokens"] == n]
        if y == "ppl_before":
            p = p[~p["method"].isin(["slm-nopt"])]  # a random initialisation
        shared = p[p["pretrain_flops"] > 0]
        sns.lineplot(data=shared, x="pretrain_flops", y=y, hue="method", hue_order=_order(shared["method"]),
                     palette=colors, marker="o", ax=ax, legend=ax is axes[-1])
        _flat_lines(ax, p[p["pretrain_flops"] == 0], y, colors)
        _log_axes(ax)
        ax.set_xlabel("pretraining cost (FLOPs)")
        ax.set_ylabel("macro test perplexity")
        ax.set_title(title)
    handles, labels = [], []
    for ax in axes:
        for h, l in zip(*ax.get_legend_handles_labels()):
            if l not in labels:
                handles.append(h)
                labels.append(l)
        if ax.get_legend():
            ax.get_legend().remove()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.tight_layout()
    return fig


def total_cost(points: pd.DataFrame, set_tokens: int, counts=(1, 7, 50),
               methods=("slm-hn", "slm-is", "slm-mix", "slm")):
    """Macro perplexity after fine-tuning against the total cost of serving N domains
    (pretraining + N x specialization), one panel per N."""
    fig, axes = plt.subplots(1, len(counts), figsize=(4.3 * len(counts), 4.0), sharey=True, squeeze=False)
    axes = axes[0]
    p = points[(points["set_tokens"] == set_tokens) & points["method"].isin(methods)]
    colors = palette(p["method"].unique())
    for ax, n in zip(axes, counts):
        if p.empty:
            _empty(ax, "not measured")
            continue
        q = p.assign(total=p["pretrain_flops"] + n * p["specialize_flops"]).sort_values("total")
        sns.lineplot(data=q, x="total", y="ppl_after", hue="method", hue_order=_order(q["method"]), palette=colors,
                     marker="o", sort=False, ax=ax, legend=ax is axes[-1])
        _log_axes(ax)
        ax.set_xlabel(f"total cost for {n} domain{'s' if n > 1 else ''} (FLOPs)")
        ax.set_ylabel("macro test perplexity")
        ax.set_title(f"N = {n}")
    fig.suptitle(f"Pretraining is shared, specialization is paid per domain (set {set_tokens:,} tokens)", y=1.02)
    fig.tight_layout()
    return fig


def finetune_cost(points: pd.DataFrame):
    """Specialization FLOPs per domain (fine-tuning up to its best step; SLM-is's resampled training too)
    against pretraining FLOPs, per method and set size."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    p = points[(points["specialize_flops"] > 0)]
    if p.empty:
        _empty(ax, "no specialization results")
        return fig
    colors = palette(p["method"].unique())
    shared = p[p["pretrain_flops"] > 0]
    sns.lineplot(data=shared, x="pretrain_flops", y="specialize_flops", hue="method",
                 hue_order=_order(shared["method"]), style="set_tokens", palette=colors, marker="o", ax=ax)
    for (method, n), g in p[p["pretrain_flops"] == 0].groupby(["method", "set_tokens"]):
        ax.axhline(g["specialize_flops"].max(), color=colors[method], ls="--", lw=1,
                   label=f"{method} {n:,} (no pretraining)")
    _log_axes(ax)
    ax.set_xlabel("pretraining cost (FLOPs)")
    ax.set_ylabel("specialization cost per domain (FLOPs)")
    ax.set_title("Fine-tuning cost against pretraining cost")
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def domain_grid(results: pd.DataFrame, set_tokens: int):
    """One panel per domain: test perplexity after fine-tuning on `set_tokens` tokens against pretraining FLOPs."""
    r = results[(results["set_tokens"] == set_tokens) & (results["method"] != "slm-generic")]
    if r.empty:
        fig, ax = plt.subplots()
        _empty(ax, f"no results at {set_tokens:,} tokens")
        return fig
    colors = palette(r["method"].unique())
    shared = r[r["pretrain_flops"] > 0]
    g = sns.relplot(data=shared, x="pretrain_flops", y="ppl_after", hue="method", hue_order=_order(shared["method"]),
                    palette=colors, col="domain", col_wrap=4, kind="line", marker="o", height=2.6, aspect=1.15,
                    facet_kws={"sharey": False})
    for domain, ax in g.axes_dict.items():
        _flat_lines(ax, r[(r["domain"] == domain) & (r["pretrain_flops"] == 0)], "ppl_after", colors)
        _log_axes(ax)
    g.set_axis_labels("pretraining cost (FLOPs)", "test perplexity")
    g.figure.suptitle(f"Per domain, after fine-tuning on {set_tokens:,} tokens (dashed: no pretraining)", y=1.02)
    return g.figure


def domain_sets_grid(results: pd.DataFrame):
    """One panel per domain: test perplexity after fine-tuning against set size, at each method's largest budget."""
    r = results.copy()
    r["fraction"] = r["fraction"].fillna(1.0)
    r = r[r["fraction"] == r.groupby(["method", "set_tokens"])["fraction"].transform("max")]
    if r.empty:
        fig, ax = plt.subplots()
        _empty(ax, "no results")
        return fig
    colors = palette(r["method"].unique())
    g = sns.relplot(data=r, x="set_tokens", y="ppl_after", hue="method", hue_order=_order(r["method"]),
                    palette=colors, col="domain", col_wrap=4, kind="line", marker="o", height=2.6, aspect=1.15,
                    facet_kws={"sharey": False})
    _log_axes(*g.axes.flat)
    g.set_axis_labels("in-domain set (tokens)", "test perplexity")
    g.figure.suptitle("Per domain, at each method's largest budget", y=1.02)
    return g.figure


def explorer_view(points: pd.DataFrame, budgets: dict, recommendation: dict | None, feasible: pd.DataFrame,
                  cheapest: dict | None = None):
    """Macro perplexity against total cost for the explorer's N domains and set size: every measured
    point, those within the budgets in full colour, the recommended one starred; with `cheapest`
    (`lab.analysis.decisions.cheapest`), its perplexity bound dotted and its point ringed."""
    n, size = budgets["n_domains"], budgets["set_tokens"]
    p = points[points["set_tokens"] == size]
    p = p.assign(total=p["pretrain_flops"] + n * p["specialize_flops"])
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    colors = palette(p["method"].unique())
    keys = set(zip(feasible["method"], feasible["fraction"]))
    for method, g in p.groupby("method"):
        g = g.sort_values("total")
        ok = np.array([(method, f) in keys for f in g["fraction"]])
        ax.plot(g["total"], g["ppl_after"], color=colors[method], alpha=0.25, lw=1)
        ax.scatter(g["total"][~ok], g["ppl_after"][~ok], color=colors[method], alpha=0.25, s=25)
        ax.scatter(g["total"][ok], g["ppl_after"][ok], color=colors[method], s=40, label=method)
    if recommendation:
        ax.scatter([recommendation["total_flops"]], [recommendation["ppl"]], marker="*", s=350, color="gold",
                   edgecolor="black", zorder=5, label=f"lowest perplexity: {recommendation['method']}")
    if cheapest:
        ax.axhline(cheapest["ppl_limit"], color="0.4", ls=":", lw=1,
                   label=f"within {100 * cheapest['tolerance']:g}% of the lowest")
        ax.scatter([cheapest["total_flops"]], [cheapest["ppl"]], marker="o", s=220, facecolor="none",
                   edgecolor="black", lw=1.5, zorder=6, label=f"cheapest within it: {cheapest['method']}")
    _log_axes(ax)
    ax.set_xlabel(f"total cost for {n} domain{'s' if n > 1 else ''}: pretraining + {n} x specialization (FLOPs)")
    ax.set_ylabel("macro test perplexity")
    ax.set_title(f"Within the budgets (full colour), set {size:,} tokens")
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def decision_map(dmap: pd.DataFrame, tree=None):
    """The best method on the (inference budget, specialization budget) grid, as a region map; with a
    fitted `lab.analysis.decisions.Tree`, its rules beside it (the paper's Figure 1, from the data)."""
    from sklearn.tree import plot_tree

    ncols = 2 if tree is not None else 1
    fig, axes = plt.subplots(1, ncols, figsize=(6.5 * ncols, 4.8), squeeze=False)
    ax = axes[0][0]
    methods = _order(dmap["method"].unique())
    colors = palette(methods)
    colors["none"] = (0.9, 0.9, 0.9)
    infs = sorted(dmap["inference_budget"].unique())
    specs = sorted(dmap["spec_budget"].unique())
    codes = {m: i for i, m in enumerate(methods)}
    grid = dmap.pivot(index="spec_budget", columns="inference_budget", values="method").loc[specs, infs]
    img = np.vectorize(codes.get)(grid.to_numpy())
    ax.pcolormesh(_edges(infs), _edges(specs), img, cmap=ListedColormap([colors[m] for m in methods]),
                  vmin=-0.5, vmax=len(methods) - 0.5, shading="flat")
    _log_axes(ax)
    ax.set_xlabel("inference budget (FLOPs per token)")
    ax.set_ylabel("specialization budget (FLOPs)")
    ax.set_title("Best method under the budgets")
    ax.legend(handles=[Patch(color=colors[m], label=m) for m in methods], loc="center left",
              bbox_to_anchor=(1.0, 0.5), frameon=False)
    if tree is not None:
        plot_tree(tree.model, feature_names=tree.features, class_names=tree.classes, filled=False, impurity=False,
                  proportion=True, rounded=True, fontsize=7, ax=axes[0][1])
        axes[0][1].set_title(f"Decision tree fitted to the map ({tree.accuracy:.0%} of cells)")
    fig.tight_layout()
    return fig


def _edges(centers: list[float]) -> np.ndarray:
    """Cell edges (geometric midpoints) around log-spaced centres."""
    c = np.log(np.asarray(centers, dtype=float))
    if len(c) == 1:
        return np.exp(np.array([c[0] - 0.5, c[0] + 0.5]))
    mid = (c[1:] + c[:-1]) / 2
    return np.exp(np.concatenate([[c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]]))
