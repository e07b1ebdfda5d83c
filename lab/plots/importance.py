"""Figures of importance sampling (SLM-is) against the pretrained SLM (notebook 03)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from . import Cost, count_axis, flops_label, perplexity_yaxis


def _grid(frame: pd.DataFrame, width: float = 4.6, height: float = 3.6):
    domains = list(dict.fromkeys(frame["domain"]))
    sizes = sorted(frame["set_tokens"].unique())
    fig, axes = plt.subplots(len(domains), len(sizes), figsize=(width * len(sizes), height * len(domains)),
                             squeeze=False)
    return fig, axes, domains, sizes


def _reference(ax, reference: pd.DataFrame, domain: str, n: int, label: bool, cost: Cost) -> None:
    """The pretrained-then-fine-tuned SLM: a flat line (its pretraining is shared, not paid per domain)
    and, dotted, the pretraining cost it shares."""
    ref = reference[(reference["domain"] == domain) & (reference["set_tokens"] == n)]
    if ref.empty:
        return
    r = ref.iloc[0]
    ax.axhline(r["ppl_after"], color="black", linestyle="--", linewidth=1.2,
               label="SLM, pretrained and fine-tuned" if label else None)
    ax.axvline(r[cost.column("pretrain")], color="grey", linestyle=":", linewidth=1,
               label="SLM pretraining cost (shared)" if label else None)


def budget_curves(curves: pd.DataFrame, reference: pd.DataFrame, cost: str = "flops"):
    """Domain test perplexity of SLM-is against its specialization cost (FLOPs or measured device-hours),
    one panel per domain and set size: after fine-tuning (solid) and before it (faint: the resampled
    model alone, at the cost of its resampled training)."""
    cost = Cost.of(cost, curves, reference)
    fig, axes, domains, sizes = _grid(curves)
    for i, domain in enumerate(domains):
        for j, n in enumerate(sizes):
            ax = axes[i, j]
            c = curves[(curves["domain"] == domain) & (curves["set_tokens"] == n)].sort_values("is_flops")
            first = i == 0 and j == 0
            ax.plot(c[cost.column("specialize")], c["ppl_after"], marker="o", color="tab:red",
                    label="SLM-is, fine-tuned" if first else None)
            ax.plot(c[cost.column("is")], c["ppl_before"], marker=".", color="tab:red", alpha=0.35,
                    label="SLM-is before fine-tuning" if first else None)
            _reference(ax, reference, domain, n, first, cost)
            cost.axis(ax)
            perplexity_yaxis(ax)
            ax.set_title(f"{domain}, {n:,}-token set", fontsize=10)
            ax.set_xlabel(cost.label("specialization cost per domain"))
            ax.set_ylabel("domain test perplexity")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    cost.note(fig)
    return fig


def k_ablation(ablation: pd.DataFrame, reference: pd.DataFrame | None = None):
    """SLM-is after fine-tuning against the number of clusters behind its weights (left), and how
    many distinct generic windows the resampled stream is worth (right)."""
    df = ablation.assign(setting=[f"{d}, {n:,} tokens" for d, n in zip(ablation["domain"], ablation["set_tokens"])])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    sns.lineplot(data=df, x="k", y="ppl_after", hue="setting", marker="o", ax=axes[0])
    if reference is not None:
        palette = dict(zip(df["setting"].unique(), sns.color_palette()))
        for r in reference.itertuples():
            setting = f"{r.domain}, {r.set_tokens:,} tokens"
            if setting in palette:
                axes[0].axhline(r.ppl_after, color=palette[setting], linestyle="--", linewidth=1)
        axes[0].plot([], [], color="grey", linestyle="--", label="SLM, pretrained and fine-tuned")
        axes[0].legend(fontsize=8)
    axes[0].set_ylabel("test perplexity after fine-tuning")
    axes[0].set_title(f"SLM-is at {flops_label(df['is_flops'].max())} FLOPs of resampled training")
    sns.lineplot(data=df, x="k", y="effective_windows", hue="setting", marker="o", ax=axes[1], legend=False)
    read = float((df["effective_epochs"] * df["effective_windows"]).max())  # windows the run draws
    axes[1].axhline(read, color="grey", linestyle=":", linewidth=1, label="windows the run draws")
    axes[1].legend(fontsize=8)
    count_axis(axes[1], "y")
    axes[1].set_ylabel("effective distinct windows (Kish)")
    axes[1].set_title("What the resampled stream is worth")
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(df["k"].unique()), [str(k) for k in sorted(df["k"].unique())])
        ax.minorticks_off()
        ax.set_xlabel("clusters k behind the importance weights")
    fig.tight_layout()
    return fig


def top_vs_histogram(curves: pd.DataFrame, reference: pd.DataFrame, cost: str = "flops"):
    """SLM-is (weights from the whole histogram) against one expert trained on the domain's top
    cluster only, by specialization cost (the paper's Figure 8)."""
    cost = Cost.of(cost, curves, reference)
    fig, axes, domains, sizes = _grid(curves)
    colours = {"histogram": "tab:red", "top": "tab:blue"}
    labels = {"histogram": "SLM-is (domain histogram)", "top": "top cluster only"}
    for i, domain in enumerate(domains):
        for j, n in enumerate(sizes):
            ax = axes[i, j]
            first = i == 0 and j == 0
            for weights, c in curves[(curves["domain"] == domain) & (curves["set_tokens"] == n)].groupby("weights"):
                c = c.sort_values("is_flops")
                ax.plot(c[cost.column("specialize")], c["ppl_after"], marker="o", color=colours.get(weights),
                        label=labels.get(weights, weights) if first else None)
            _reference(ax, reference, domain, n, first, cost)
            cost.axis(ax)
            perplexity_yaxis(ax)
            ax.set_title(f"{domain}, {n:,}-token set", fontsize=10)
            ax.set_xlabel(cost.label("specialization cost per domain"))
            ax.set_ylabel("test perplexity after fine-tuning")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    cost.note(fig)
    return fig


IMPORTANCE_NAMES = {"clusters": "SLM-is (cluster histograms)", "dsir": "SLM-is with DSIR (hashed n-grams)"}


def dsir_vs_clusters(table: pd.DataFrame):
    """Cluster importance sampling against DSIR at one specialization budget, per domain: test perplexity
    after fine-tuning (left), and how much closer to the domain each stream is than as many generic windows
    drawn uniformly, by DSIR's own measure (right: the drop in hashed n-gram KL from the domain)."""
    t = table.assign(importance=table["importance"].map(IMPORTANCE_NAMES),
                     reduction=table["uniform_ngram_kl"] - table["stream_ngram_kl"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 0.5 * t["domain"].nunique() + 2.5))
    sns.barplot(data=t, y="domain", x="ppl_after", hue="importance", ax=left, orient="h")
    left.set_xlabel("test perplexity after fine-tuning")
    left.set_ylabel("domain")
    sns.barplot(data=t, y="domain", x="reduction", hue="importance", ax=right, orient="h")
    right.axvline(0, color="black", linewidth=0.8)
    right.set_xlabel("n-gram KL to the domain, uniform generic windows minus the stream's (nats)")
    right.set_ylabel("")
    handles, labels = left.get_legend_handles_labels()
    for ax in (left, right):
        ax.get_legend().remove()
    fig.suptitle("Cluster histograms against DSIR at one specialization budget")
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    fig.legend(handles, labels, loc="upper center", ncol=2, frameon=False, bbox_to_anchor=(0.5, 0.955))
    return fig
