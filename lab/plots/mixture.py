"""Figures of the hard mixture of experts (SLM-mix): generic perplexity against compute,
the number-of-experts ablation, the expert-selection rules and the routing statistics."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from . import Cost, named, perplexity_yaxis


def generic_ppl(curves: pd.DataFrame, crossover_flops: float | None = None, cost: str = "flops"):
    """Generic validation perplexity against pretraining cost (FLOPs or measured device-hours), one curve
    per method (log-log); the crossover is marked on the FLOPs axis, where it was found."""
    cost = Cost.of(cost, curves)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    sns.lineplot(data=named(curves), x=cost.column("pretrain"), y="ppl", hue="method", style="method", markers=True,
                 dashes=False, ax=ax)
    cost.axis(ax)
    perplexity_yaxis(ax)
    if crossover_flops and cost.kind == "flops":
        ax.axvline(crossover_flops, color="gray", linestyle=":", label=f"crossover {crossover_flops:.2g} FLOPs")
        ax.legend()
    ax.set_xlabel(cost.label("pretraining cost"))
    ax.set_ylabel("generic validation perplexity")
    ax.set_title("Generic perplexity at equal pretraining FLOPs")
    fig.tight_layout()
    cost.note(fig)
    return fig


def expert_ablation(table: pd.DataFrame):
    """Generic perplexity, and domain perplexity after fine-tuning the top-cluster expert, against the number
    of experts at one budget (the paper's Figure 11); the SLM (one expert) as a dashed line."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    mix, slm = table[table["method"] == "slm-mix"], table[table["method"] == "slm"]
    n = int(table["set_tokens"].iloc[0])
    panels = (("ppl", "generic validation perplexity", "generic corpus (each window routed)"),
              ("domain_ppl_after", "macro domain test perplexity", f"after fine-tuning on {n:,} tokens"))
    ks = sorted(mix["experts"].unique())
    for ax, (column, label, title) in zip(axes, panels):
        ax.plot(mix["experts"], mix[column], marker="o", label="SLM-mix")
        if len(slm):
            ax.axhline(float(slm[column].iloc[0]), color="0.4", ls="--", lw=1, label="SLM (1 expert)")
        ax.set_xscale("log", base=2)
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.minorticks_off()
        ax.set_xlabel("experts (k-means clusters)")
        ax.set_ylabel(label)
        ax.set_title(title, fontsize=10)
        ax.legend()
    fig.suptitle(f"Number of experts at {table['pretrain_flops'].median():.2g} pretraining FLOPs")
    fig.tight_layout()
    return fig


def routing(table: pd.DataFrame):
    """Per expert: generic training windows of its cluster, epochs over them, routed validation perplexity."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
    sns.barplot(data=table, x="expert", y="generic_windows", ax=axes[0], color="tab:blue")
    axes[0].set_ylabel("generic training windows")
    axes[0].set_title("Cluster sizes")
    sns.barplot(data=table, x="expert", y="epochs", ax=axes[1], color="tab:orange")
    axes[1].set_ylabel("epochs over its cluster")
    axes[1].set_title(f"Each expert trained on {table['tokens_trained'].iloc[0]:,} tokens")
    sns.barplot(data=table, x="expert", y="valid_ppl", ax=axes[2], color="tab:green")
    axes[2].set_ylabel("routed validation perplexity")
    axes[2].set_title("Generic validation, by expert")
    for ax in axes:
        ax.set_xlabel("expert")
    fig.tight_layout()
    return fig


def selection(table: pd.DataFrame):
    """Domain test perplexity after fine-tuning: SLM and the three expert-selection rules."""
    fig, ax = plt.subplots(figsize=(10, 4))
    # Points, not bars: a bar's length means nothing on a log axis, and the log axis keeps domains of very
    # different perplexities on one readable scale.
    sns.pointplot(data=named(table), x="domain", y="ppl_after", hue="method", dodge=0.4, linestyle="none",
                  markers="o", ax=ax)
    ax.set_xlabel("domain")
    perplexity_yaxis(ax)
    ax.set_ylabel("test perplexity after fine-tuning")
    ax.legend(title=None, fontsize=9)
    ax.set_title("Expert selection rules (the paper's Table 5)")
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    return fig


def domain_histograms(table: pd.DataFrame):
    """Each domain's cluster histogram (training set), the expert "top" picks marked."""
    top = table[table["selection"] == "top"]
    shares = pd.DataFrame(np.array(top["histogram"].tolist()), index=top["domain"])
    fig, ax = plt.subplots(figsize=(3.0 + 0.7 * shares.shape[1], 0.5 * len(shares) + 2.0))
    sns.heatmap(shares, annot=True, fmt=".2f", cmap="Blues", vmin=0, vmax=1,
                cbar_kws={"label": "share of the domain's windows"}, ax=ax)
    ax.set_xlabel("cluster (expert)")
    ax.set_ylabel("domain")
    ax.set_title("Domains over the generic clusters")
    fig.tight_layout()
    return fig
