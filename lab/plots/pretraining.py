"""Figures of pretraining runs and of the paper's Table 4."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from . import Cost, count_axis, named, perplexity_yaxis


def generic_curves(curves: pd.DataFrame, cost: str = "flops"):
    """Generic validation perplexity against pretraining cost, one line per model,
    each checkpoint labelled with its tokens per parameter."""
    cost = Cost.of(cost, curves)
    x = cost.column("pretrain")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    sns.lineplot(data=named(curves), x=x, y="valid_ppl", hue="method", marker="o", ax=ax)
    for r in curves.itertuples():
        ax.annotate(f"{r.tokens_per_param:.0f}", (getattr(r, x), r.valid_ppl), textcoords="offset points",
                    xytext=(4, 4), fontsize=8, color="0.35")
    cost.axis(ax)
    perplexity_yaxis(ax)
    ax.set_xlabel(cost.label("pretraining cost"))
    ax.set_ylabel("generic validation perplexity")
    ax.set_title(f"Pretraining at equal {'FLOPs' if cost.kind == 'flops' else 'FLOPs, placed at their device time'}"
                 " (labels: tokens per parameter)")
    fig.tight_layout()
    cost.note(fig)
    return fig


def table4(table: pd.DataFrame):
    """Table 4 as lines: test perplexity against in-domain set size, fine-tuned from the pretrained SLM
    and LLM and trained on the set alone, with the generic-only models as dashed references."""
    rows = []
    for domain, r in table.iterrows():
        for col, ppl in r.items():
            if col.endswith("generic only"):
                continue
            variant, size = col.rsplit(" ", 1)
            rows.append({"domain": domain, "variant": variant, "set_tokens": int(size.replace(",", "")),
                         "perplexity": ppl})
    df = pd.DataFrame(rows)
    variants = list(dict.fromkeys(df["variant"]))
    colors = dict(zip(variants, sns.color_palette("tab10", len(variants))))
    g = sns.relplot(data=df, x="set_tokens", y="perplexity", hue="variant", palette=colors, col="domain",
                    col_wrap=min(5, df["domain"].nunique()),
                    kind="line", marker="o", height=2.4, aspect=1.1, facet_kws={"sharey": False})
    references = [(col, f"{model} generic-only", colors.get(model, "0.5"))
                  for col, model in (("generic only", "SLM"), ("LLM generic only", "LLM")) if col in table.columns]
    for domain, ax in g.axes_dict.items():
        for col, label, color in references:
            ax.axhline(table.loc[domain, col], color=color, ls="--", lw=1, label=label)
        count_axis(ax)
        perplexity_yaxis(ax)
    handles, labels = list(g.legend.legend_handles), [t.get_text() for t in g.legend.texts]
    g.legend.remove()
    lines = g.axes.flat[0].get_lines()[-len(references):] if references else []
    g.figure.legend(handles + lines, labels + [label for _, label, _ in references], loc="center left",
                    bbox_to_anchor=(1.0, 0.5), frameon=False)
    g.set_axis_labels("in-domain set (tokens)", "test perplexity")
    g.set_titles("{col_name}")
    g.figure.suptitle("Fine-tuning helps at every set size; pretraining matters most for the smallest", y=1.02)
    return g.figure


def lora(summary: pd.DataFrame):
    """The paper's Figure 14: macro test perplexity after fine-tuning against in-domain set size, full
    fine-tuning beside LoRA at each rank (labelled with the weights each trains)."""
    df = named(summary).assign(fine_tuning=[
        "full" if r.lora_rank == 0 else f"LoRA, rank {r.lora_rank}" for r in summary.itertuples()])
    several = df["method"].nunique() > 1  # a style per model only when there is more than one
    fig, ax = plt.subplots(figsize=(7, 4.5))
    sns.lineplot(data=df, x="set_tokens", y="ppl_after", hue="fine_tuning", style="method" if several else None,
                 marker="o", ax=ax)
    ax.legend(title=None if several else f"{df['method'].iloc[0]} fine-tuned")
    for r in df.drop_duplicates(["method", "fine_tuning"], keep="last").itertuples():
        ax.annotate(f"{r.trained_params:,.0f} trained", (r.set_tokens, r.ppl_after), textcoords="offset points",
                    xytext=(4, 4), fontsize=8, color="0.35")
    count_axis(ax)
    perplexity_yaxis(ax)
    ax.set_xlabel("in-domain training set (tokens)")
    ax.set_ylabel("test perplexity after fine-tuning (macro)")
    ax.set_title("LoRA against full fine-tuning (the paper's Figure 14)")
    fig.tight_layout()
    return fig
