"""Figures of the corpus: sizes, tokenizer compression, where sources go."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from . import count_axis


def tokens(table: pd.DataFrame):
    """Tokens per domain and split (log scale: generic dwarfs the domains; points, as a bar's length means
    nothing on a log axis)."""
    fig, ax = plt.subplots(figsize=(9, 4))
    sns.pointplot(data=table, x="domain", y="tokens", hue="split", dodge=0.3, linestyle="none", ax=ax)
    count_axis(ax, "y")
    ax.set_ylabel("tokens (log scale)")
    ax.set_xlabel("domain")
    ax.set_title("Corpus size per domain and split")
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    return fig


def chars_per_token(table: pd.DataFrame):
    """How well the generic-trained tokenizer compresses each domain."""
    train = table[table["split"] == "train"].sort_values("chars_per_token")
    fig, ax = plt.subplots(figsize=(8, 3.5))
    sns.barplot(data=train, x="domain", y="chars_per_token", ax=ax, color="tab:blue")
    ax.set_ylabel("characters per token")
    ax.set_xlabel("domain (training split)")
    ax.set_title("Tokenizer compression per domain (BPE trained on generic text)")
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    return fig


def source_mix(manifest: dict):
    """Documents each source gives to each domain (and to the generic corpus)."""
    rows = [{"source": s["source"], "destination": dest, "documents": n}
            for s in manifest["sources"] for dest, n in s.get("domains", {}).items()]
    df = pd.DataFrame(rows).pivot_table(index="source", columns="destination", values="documents", fill_value=0)
    fig, ax = plt.subplots(figsize=(9, 0.35 * len(df) + 1.5))
    sns.heatmap(df, annot=True, fmt=".0f", cmap="Blues", cbar_kws={"label": "documents"}, ax=ax)
    ax.set_title("Where each source's documents go (before the generic share is taken)")
    fig.tight_layout()
    return fig
