"""Figures of pretraining runs and of the paper's Table 4."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from . import count_axis, flops_axis, method_name, named, perplexity_yaxis


def generic_curves(curves: pd.DataFrame):
    """Generic validation perplexity against pretraining FLOPs, one line per model,
    each checkpoint labelled with its tokens per parameter."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    sns.lineplot(data=named(curves), x="pretrain_flops", y="valid_ppl", hue="method", marker="o", ax=ax)
    for r in curves.itertuples():
        ax.annotate(f"{r.tokens_per_param:.0f}", (r.pretrain_flops, r.valid_ppl), textcoords="offset points",
                    xytext=(4, 4), fontsize=8, color="0.35")
    flops_axis(ax)
    perplexity_yaxis(ax)
    ax.set_xlabel("pretraining cost (FLOPs)")
    ax.set_ylabel("generic validation perplexity")
    ax.set_title("Pretraining at equal FLOPs (labels: tokens per parameter)")
    fig.tight_layout()
    return fig


def table4(table: pd.DataFrame):
    """Table 4 as lines: test perplexity against in-domain set size, fine-tuned from the
    pretrained SLM and trained on the set alone, with the generic-only model as a reference."""
    rows = []
    for domain, r in table.iterrows():
        for col, ppl in r.items():
            if col == "generic only":
                continue
            variant, size = col.rsplit(" ", 1)
            rows.append({"domain": domain, "variant": variant, "set_tokens": int(size.replace(",", "")),
                         "perplexity": ppl})
    df = pd.DataFrame(rows)
    g = sns.relplot(data=df, x="set_tokens", y="perplexity", hue="variant", col="domain",
                    col_wrap=min(5, df["domain"].nunique()),
                    kind="line", marker="o", height=2.4, aspect=1.1, facet_kws={"sharey": False})
    generic = method_name("slm-generic")
    for domain, ax in g.axes_dict.items():
        ax.axhline(table.loc[domain, "generic only"], color="0.5", ls="--", lw=1, label=generic)
        count_axis(ax)
        perplexity_yaxis(ax)
    handles, labels = list(g.legend.legend_handles), [t.get_text() for t in g.legend.texts]
    g.legend.remove()
    g.figure.legend(handles + [g.axes.flat[0].get_lines()[-1]], labels + [generic], loc="center left",
                    bbox_to_anchor=(1.0, 0.5), frameon=False)
    g.set_axis_labels("in-domain set (tokens)", "test perplexity")
    g.set_titles("{col_name}")
    g.figure.suptitle("Fine-tuning helps at every set size; pretraining matters most for the smallest", y=1.02)
    return g.figure
