"""Figures of the generic clusters and of domains described by them (notebook 02)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns


def projection(windows: pd.DataFrame, k: int):
    """Sampled generic windows in two dimensions, coloured by source (left) and by cluster at k (right)."""
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5), sharex=True, sharey=True)
    sources = sorted(windows["source"].unique())
    sns.scatterplot(data=windows, x="pc1", y="pc2", hue="source", hue_order=sources, s=10, linewidth=0,
                    alpha=0.7, palette=sns.color_palette("husl", len(sources)), ax=axes[0])
    axes[0].legend(fontsize=7, markerscale=1.5, ncol=2, title="source", loc="best")
    axes[0].set_title("Generic windows by source")
    clusters = windows[f"k{k}"].astype(str)
    sns.scatterplot(x=windows["pc1"], y=windows["pc2"], hue=clusters, hue_order=sorted(clusters.unique(), key=int),
                    s=10, linewidth=0, alpha=0.7, palette=sns.color_palette("husl", clusters.nunique()),
                    ax=axes[1], legend=k <= 16)
    if k <= 16:
        axes[1].legend(fontsize=7, markerscale=1.5, ncol=2, title="cluster", loc="best")
    axes[1].set_title(f"The same windows by k-means cluster (k={k})")
    for ax in axes:
        ax.set_xlabel("first principal component of the window embedding")
        ax.set_ylabel("second principal component")
    fig.tight_layout()
    return fig


def source_clusters(shares: pd.DataFrame):
    """Which sources make up each cluster: share of each cluster's windows per source."""
    fig, ax = plt.subplots(figsize=(0.45 * shares.shape[1] + 3, 0.3 * len(shares) + 1.5))
    sns.heatmap(shares, cmap="Blues", vmin=0, vmax=1, annot=shares.shape[1] <= 16, fmt=".2f",
                annot_kws={"fontsize": 7}, cbar_kws={"label": "share of the cluster's windows"}, ax=ax)
    ax.set_xlabel("cluster")
    ax.set_ylabel("source of the window")
    ax.set_title("Sources in each generic cluster")
    fig.tight_layout()
    return fig


def domain_heatmap(hist: pd.DataFrame, k: int, set_tokens: int):
    """Each domain's cluster histogram at k (its set of `set_tokens` tokens), the generic corpus on top."""
    rows = hist[(hist["k"] == k) & ((hist["set_tokens"] == set_tokens) | (hist["domain"] == "generic"))]
    table = rows.pivot_table(index="domain", columns="cluster", values="share", sort=False)
    fig, ax = plt.subplots(figsize=(0.5 * k + 3 if k <= 32 else 14, 0.4 * len(table) + 1.5))
    sns.heatmap(table, cmap="magma_r", vmin=0, vmax=1, annot=k <= 16, fmt=".2f", annot_kws={"fontsize": 7},
                cbar_kws={"label": "share of the domain's windows"}, ax=ax)
    ax.set_xlabel(f"generic cluster (k={k})")
    ax.set_ylabel("")
    ax.set_title(f"Domains over the generic clusters ({set_tokens:,}-token training sets)")
    fig.tight_layout()
    return fig


def entropy_by_k(summary: pd.DataFrame, set_tokens: int):
    """Entropy of each domain's histogram against k, with log2(k) (a uniform histogram) for scale."""
    rows = summary[(summary["set_tokens"] == set_tokens) | (summary["domain"] == "generic")]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    sns.lineplot(data=rows, x="k", y="entropy_bits", hue="domain", marker="o", ax=ax)
    ks = np.array(sorted(rows["k"].unique()))
    ax.plot(ks, np.log2(ks), color="grey", linestyle=":", label="uniform (log2 k)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.minorticks_off()
    ax.set_xlabel("clusters k")
    ax.set_ylabel("histogram entropy (bits)")
    ax.set_title(f"How spread each domain is over the clusters ({set_tokens:,}-token sets)")
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    return fig
