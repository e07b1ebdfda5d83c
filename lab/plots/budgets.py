"""Figures of the budget study (notebook 07) and of the budget explorer (notebook 08).

Costs are on log axes, in FLOPs or in measured device-hours (`Cost`; every function takes
`cost="flops"` or `"hours"`). Methods with no pretraining (SLM-is, whose cost is
all specialization, and SLM-nopt) cannot sit on a log pretraining axis: they
are drawn as flat dashed lines across it, as in the paper.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch

from . import Cost, count_axis, flops_axis, flops_label, method_name, named, perplexity_yaxis

# Paper names (`method_name`): the frames are renamed before drawing, so legends read as the paper does.
METHOD_ORDER = tuple(map(method_name, ("slm", "slm-generic", "slm-nopt", "llm", "slm-d", "slm-is", "slm-mix",
                                       "slm-hn")))
NOPT = method_name("slm-nopt")
SET = "in-domain set (tokens)"


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


def _log_axes(ax, cost: Cost) -> None:
    cost.axis(ax)
    perplexity_yaxis(ax)


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def generic_curves(pretrain: pd.DataFrame, cost: str = "flops"):
    """Generic validation perplexity against pretraining cost, one line per pretrained model."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    if pretrain.empty:
        _empty(ax, "no pretraining results: run the study")
        return fig
    cost = Cost.of(cost, pretrain)
    pretrain = named(pretrain)
    colors = palette(pretrain["method"].unique())
    sns.lineplot(data=pretrain, x=cost.column("pretrain"), y="generic_ppl", hue="method",
                 hue_order=_order(pretrain["method"]), palette=colors, marker="o", ax=ax)
    _log_axes(ax, cost)
    ax.set_xlabel(cost.label("pretraining cost"))
    ax.set_ylabel("generic validation perplexity")
    ax.set_title("Generic perplexity at equal pretraining " + ("FLOPs" if cost.kind == "flops" else "device time"))
    fig.tight_layout()
    cost.note(fig)
    return fig


def domain_curves(points: pd.DataFrame, cost: str = "flops"):
    """Macro domain perplexity against pretraining cost: before fine-tuning, then after it for each set
    size (one panel each). Methods measured at one budget only show as single points, on an axis of their
    own; the after panels share their perplexity axis, so the sets compare at a glance."""
    sizes = sorted(points["set_tokens"].unique()) if len(points) else []
    fig, axes = plt.subplots(1, len(sizes) + 1, figsize=(4.2 * (len(sizes) + 1), 4.2), squeeze=False)
    axes = axes[0]
    if not sizes:
        _empty(axes[0], "no specialization results: run the study")
        return fig
    cost = Cost.of(cost, points)
    x = cost.column("pretrain")
    points = named(points)
    colors = palette(points["method"].unique())
    panels = [("ppl_before", sizes[0], f"before fine-tuning (set {sizes[0]:,} tokens)")] + \
             [("ppl_after", n, f"after fine-tuning on {n:,} tokens") for n in sizes]
    drawn = []
    for ax, (y, n, title) in zip(axes, panels):
        p = points[points["set_tokens"] == n]
        if y == "ppl_before":
            p = p[p["method"] != NOPT]  # a random initialisation
        shared, flat = p[p["pretrain_flops"] > 0], p[p["pretrain_flops"] == 0]
        sns.lineplot(data=shared, x=x, y=y, hue="method", hue_order=_order(shared["method"]),
                     palette=colors, marker="o", ax=ax)
        _flat_lines(ax, flat, y, colors)
        _log_axes(ax, cost)
        ax.set_xlabel(cost.label("pretraining cost"))
        ax.set_ylabel("macro test perplexity" if ax is axes[0] else "")
        ax.set_title(title)
        # SLM-nopt, trained on the set alone, sits far above the rest: it would squash every curve.
        drawn.append((ax, pd.concat([shared[y], flat.loc[flat["method"] != NOPT, y]]), flat[[y, "method"]]))
        # Single points otherwise sit on the panel's edge.
        ax.set_xlim(shared[x].min() / 1.3, shared[x].max() * 1.3)
    _focus(drawn[:1])
    _focus(drawn[1:])
    _figure_legend(fig, axes)
    fig.tight_layout()
    cost.note(fig)
    return fig


def _focus(drawn) -> None:
    """One perplexity range for the (axes, values kept in view, flat lines) of `drawn`, padded; a flat
    line above it is named at the panel's top."""
    values = pd.concat([v for _, v, _ in drawn])
    lo, hi = values.min() / 1.08, values.max() * 1.08
    for ax, _, flat in drawn:
        ax.set_ylim(lo, hi)
        y = flat.columns[0]
        for i, (method, g) in enumerate(flat[flat[y] > hi].groupby("method")):
            ax.annotate(f"{method}: {g[y].min():.0f} (above the axis)", (0.98, 0.98 - 0.07 * i),
                        xycoords="axes fraction", ha="right", va="top", fontsize=9, color=palette([method])[method])


def _figure_legend(fig, axes, handles=(), labels=()) -> None:
    """One legend for the figure, right of the panels: `handles` then every label once, whichever panel
    drew it."""
    handles, labels = list(handles), list(labels)
    for ax in axes:
        for h, l in zip(*ax.get_legend_handles_labels()):
            if l not in labels:
                handles.append(h)
                labels.append(l)
        if ax.get_legend():
            ax.get_legend().remove()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)


def total_cost(points: pd.DataFrame, set_tokens: int, counts=(1, 7, 50),
               methods=("slm-hn", "slm-is", "slm-mix", "slm"), cost: str = "flops"):
    """Macro perplexity after fine-tuning against the total cost of serving N domains
    (pretraining + N x specialization), one panel per N."""
    fig, axes = plt.subplots(1, len(counts), figsize=(4.3 * len(counts), 4.0), sharey=True, squeeze=False)
    axes = axes[0]
    p = named(points[(points["set_tokens"] == set_tokens) & points["method"].isin(methods)])
    cost = Cost.of(cost, p)
    colors = palette(p["method"].unique())
    for ax, n in zip(axes, counts):
        if p.empty:
            _empty(ax, "not measured")
            continue
        q = p.assign(total=p[cost.column("pretrain")] + n * p[cost.column("specialize")]).sort_values("total")
        sns.lineplot(data=q, x="total", y="ppl_after", hue="method", hue_order=_order(q["method"]), palette=colors,
                     marker="o", sort=False, ax=ax, legend=ax is axes[-1])
        _log_axes(ax, cost)
        ax.set_xlabel(cost.label(f"total cost for {n} domain{'s' if n > 1 else ''}"))
        ax.set_ylabel("macro test perplexity")
        ax.set_title(f"N = {n}")
    fig.suptitle(f"Pretraining is shared, specialization is paid per domain (set {set_tokens:,} tokens)", y=1.02)
    fig.tight_layout()
    cost.note(fig)
    return fig


def finetune_cost(points: pd.DataFrame, cost: str = "flops"):
    """Specialization cost per domain against pretraining cost, per method and set size. In FLOPs,
    fine-tuning counts up to its best step; in device-hours, the whole measured step (its evaluations and
    the steps early stopping waits past the best). SLM-is's resampled training is included in both."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    p = named(points[(points["specialize_flops"] > 0)])
    if p.empty:
        _empty(ax, "no specialization results")
        return fig
    cost = Cost.of(cost, p)
    x, y = cost.column("pretrain"), cost.column("specialize")
    colors = palette(p["method"].unique())
    sets = {n: f"{n:,}" for n in sorted(p["set_tokens"].unique())}
    shared = p[p["pretrain_flops"] > 0].assign(**{SET: lambda d: d["set_tokens"].map(sets)})
    sns.lineplot(data=shared, x=x, y=y, hue="method", hue_order=_order(shared["method"]),
                 style=SET, style_order=list(sets.values()), palette=colors, marker="o", ax=ax)
    for method, g in p[p["pretrain_flops"] == 0].groupby("method"):
        ax.plot([], [], color=colors[method], ls="--", lw=1, label=f"{method} (no pretraining), each set")
        per_set = g.groupby("set_tokens")[y].max()
        for value, sets_at in per_set.groupby(per_set):  # sets of one cost share a line and a label
            ax.axhline(value, color=colors[method], ls="--", lw=1)
            ax.annotate(", ".join(f"{n:,}" for n in sets_at.index), (1.01, value), xycoords=("axes fraction", "data"), va="center", fontsize=7,
                        color=colors[method])
    cost.axis(ax, "x")
    cost.axis(ax, "y")
    ax.set_xlabel(cost.label("pretraining cost"))
    ax.set_ylabel(cost.label("specialization cost per domain"))
    ax.set_title("Fine-tuning cost against pretraining cost")
    ax.legend(loc="center left", bbox_to_anchor=(1.08, 0.5), frameon=False, fontsize=8)
    fig.tight_layout()
    cost.note(fig)
    return fig


def domain_grid(results: pd.DataFrame, set_tokens: int, y: str = "ppl_after", cost: str = "flops"):
    """One panel per domain: test perplexity after fine-tuning on `set_tokens` tokens (`y="ppl_before"`: before
    it, the paper's Figure 13) against pretraining cost."""
    r = results[(results["set_tokens"] == set_tokens) & (results["method"] != "slm-generic")]
    if y == "ppl_before":
        r = r[r["method"] != "slm-nopt"]  # a random initialisation
    if r.empty:
        fig, ax = plt.subplots()
        _empty(ax, f"no results at {set_tokens:,} tokens")
        return fig
    cost = Cost.of(cost, r)
    x = cost.column("pretrain")
    r = named(r)
    colors = palette(r["method"].unique())
    shared = r[r["pretrain_flops"] > 0]
    g = sns.relplot(data=shared, x=x, y=y, hue="method", hue_order=_order(shared["method"]),
                    palette=colors, col="domain", col_wrap=min(4, r["domain"].nunique()), kind="line", marker="o",
                    height=2.6, aspect=1.15,
                    facet_kws={"sharey": False})
    for domain, ax in g.axes_dict.items():
        flat = r[(r["domain"] == domain) & (r["pretrain_flops"] == 0)]
        _flat_lines(ax, flat, y, colors)
        _log_axes(ax, cost)
        kept = pd.concat([shared.loc[shared["domain"] == domain, y], flat.loc[flat["method"] != NOPT, y]])
        _focus([(ax, kept, flat[[y, "method"]])])
    handles, labels = list(g.legend.legend_handles), [t.get_text() for t in g.legend.texts]
    g.legend.remove()
    _figure_legend(g.figure, g.axes.flat, handles, labels)
    g.set_axis_labels(cost.label("pretraining cost"), "test perplexity")
    g.set_titles("{col_name}")
    when = f"after fine-tuning on {set_tokens:,} tokens" if y == "ppl_after" else "before fine-tuning"
    g.figure.suptitle(f"Per domain, {when}", y=1.02)
    cost.note(g.figure)
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
    r = named(r)
    colors = palette(r["method"].unique())
    g = sns.relplot(data=r, x="set_tokens", y="ppl_after", hue="method", hue_order=_order(r["method"]),
                    palette=colors, col="domain", col_wrap=min(4, r["domain"].nunique()), kind="line", marker="o",
                    height=2.6, aspect=1.15,
                    facet_kws={"sharey": False})
    for ax in g.axes.flat:
        count_axis(ax)
        perplexity_yaxis(ax)
    g.set_axis_labels("in-domain set (tokens)", "test perplexity")
    g.set_titles("{col_name}")
    g.figure.suptitle("Per domain, at each method's largest budget", y=1.02)
    return g.figure


def explorer_view(points: pd.DataFrame, budgets: dict, recommendation: dict | None, feasible: pd.DataFrame,
                  cheapest: dict | None = None, cost: str = "flops"):
    """Macro perplexity against total cost for the explorer's N domains and set size: every measured
    point, those within the budgets in full colour, the recommended one starred; with `cheapest`
    (`lab.analysis.decisions.cheapest`), its perplexity bound dotted and its point ringed. The budgets
    are FLOPs; with `cost="hours"` the same points are placed at their measured device-hours."""
    n, size = budgets["n_domains"], budgets["set_tokens"]
    p = points[points["set_tokens"] == size]
    cost = Cost.of(cost, p)
    p = named(p.assign(total=p[cost.column("pretrain")] + n * p[cost.column("specialize")]))
    at = {(method_name(m), f): t for m, f, t in zip(p["method"], p["fraction"], p["total"])}
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    colors = palette(p["method"].unique())
    keys = set(zip(feasible["method"].map(method_name), feasible["fraction"]))
    for method in _order(p["method"]):
        g = p[p["method"] == method].sort_values("total")
        ok = np.array([(method, f) in keys for f in g["fraction"]])
        ax.plot(g["total"], g["ppl_after"], color=colors[method], alpha=0.25, lw=1)
        ax.scatter(g["total"][~ok], g["ppl_after"][~ok], color=colors[method], alpha=0.25, s=25)
        ax.scatter(g["total"][ok], g["ppl_after"][ok], color=colors[method], s=40, label=method)
    ax.scatter([], [], color="0.5", alpha=0.25, s=25, label="outside the budgets (faint)")
    if recommendation:
        ax.scatter([at[method_name(recommendation["method"]), recommendation["fraction"]]], [recommendation["ppl"]],
                   marker="*", s=350, color="gold",
                   edgecolor="black", zorder=5, label=f"lowest perplexity: {method_name(recommendation['method'])}")
    if cheapest:
        ax.axhline(cheapest["ppl_limit"], color="0.4", ls=":", lw=1,
                   label=f"within {100 * cheapest['tolerance']:g}% of the lowest")
        ax.scatter([at[method_name(cheapest["method"]), cheapest["fraction"]]], [cheapest["ppl"]], marker="o", s=220,
                   facecolor="none",
                   edgecolor="black", lw=1.5, zorder=6, label=f"cheapest within it: {method_name(cheapest['method'])}")
    _log_axes(ax, cost)
    ax.set_xlabel(cost.label(f"total cost for {n} domain{'s' if n > 1 else ''}: pretraining + {n} x specialization"))
    ax.set_ylabel("macro test perplexity")
    ax.set_title(f"Within the budgets (full colour), set {size:,} tokens")
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, fontsize=8)
    fig.tight_layout()
    cost.note(fig)
    return fig


def decision_map(dmap: pd.DataFrame, tree=None):
    """The best method on the (inference budget, specialization budget) grid, as a region map; with a
    fitted `lab.analysis.decisions.Tree`, its rules beside it, thresholds in FLOPs (the paper's Figure 1,
    from the data)."""
    fig, axes = plt.subplots(1, 2 if tree is not None else 1, figsize=(15 if tree is not None else 7, 5.2),
                             squeeze=False, gridspec_kw={"width_ratios": [1, 1.5] if tree is not None else [1]})
    ax = axes[0][0]
    dmap = named(dmap)
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
    flops_axis(ax, "x")
    flops_axis(ax, "y")
    ax.grid(False)
    ax.set_xlabel("inference budget (FLOPs per token)")
    ax.set_ylabel("specialization budget (FLOPs)")
    ax.set_title("Best method under the budgets")
    ax.legend(handles=[Patch(color=colors[m], label="nothing fits" if m == "none" else m) for m in methods],
              loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, frameon=False)
    if tree is not None:
        _draw_tree(axes[0][1], tree, colors)
    fig.tight_layout()
    return fig


def _draw_tree(ax, tree, colors: dict) -> None:
    """`tree` (fitted on log10 budgets) as boxes: each split a question in FLOPs, yes to the left, each
    leaf the method it picks and the share of the map's cells that reach it."""
    t = tree.model.tree_
    questions = {0: "inference budget", 1: "specialization budget"}
    units = {0: "FLOPs per token", 1: "FLOPs"}
    total = t.n_node_samples[0]
    leaves = []

    def place(node: int, depth: int) -> tuple[float, int]:
        """x of `node` (leaves one unit apart, parents centred over children) and its subtree's depth."""
        if t.children_left[node] < 0:
            leaves.append(node)
            pos[node] = (len(leaves) - 1, depth)
            return pos[node][0], depth
        xl, dl = place(t.children_left[node], depth + 1)
        xr, dr = place(t.children_right[node], depth + 1)
        pos[node] = ((xl + xr) / 2, depth)
        return pos[node][0], max(dl, dr)

    pos: dict[int, tuple[float, int]] = {}
    _, depth = place(0, 0)
    box = {"boxstyle": "round,pad=0.4", "lw": 1}
    for node, (x, d) in pos.items():
        for child, answer in ((t.children_left[node], "yes"), (t.children_right[node], "no")):
            if child >= 0:
                cx, cd = pos[child]
                ax.annotate("", (cx, -cd + 0.22), (x, -d - 0.22),
                            arrowprops={"arrowstyle": "-|>", "color": "0.4", "lw": 1})
                ax.text((x + cx) / 2, -(d + cd) / 2, answer, ha="center", va="center", fontsize=9, color="0.3",
                        bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none"})
        if t.children_left[node] < 0:
            method = method_name(tree.classes[int(np.argmax(t.value[node]))])
            ax.text(x, -d, f"{method}\n{t.n_node_samples[node] / total:.0%} of the map", ha="center", va="center",
                    fontsize=10, bbox={**box, "fc": colors.get(method, "white"), "ec": "0.3"})
        else:
            f = int(t.feature[node])
            ax.text(x, -d, f"{questions[f]}\n\u2264 {flops_label(10 ** t.threshold[node])} {units[f]}?", ha="center",
                    va="center", fontsize=10, bbox={**box, "fc": "white", "ec": "0.3"})
    ax.set_xlim(-0.6, len(leaves) - 0.4)
    ax.set_ylim(-depth - 0.5, 0.5)
    ax.axis("off")
    ax.set_title(f"Decision tree fitted to the map (right on {tree.accuracy:.0%} of its cells)")


def _edges(centers: list[float]) -> np.ndarray:
    """Cell edges (geometric midpoints) around log-spaced centres."""
    c = np.log(np.asarray(centers, dtype=float))
    if len(c) == 1:
        return np.exp(np.array([c[0] - 0.5, c[0] + 0.5]))
    mid = (c[1:] + c[:-1]) / 2
    return np.exp(np.concatenate([[c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]]))
