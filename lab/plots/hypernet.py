"""Figures of the hyper-network (SLM-hn): pretraining at equal FLOPs, the number-of-experts
ablation, and top-cluster against histogram instantiation per domain."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from . import Cost, named, perplexity_yaxis


def generic_curves(curves: pd.DataFrame, cost: str = "flops"):
    """Generic validation perplexity against pretraining cost (FLOPs, weight generation included, or
    measured device-hours), one line per model."""
    cost = Cost.of(cost, curves)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    sns.lineplot(data=named(curves), x=cost.column("pretrain"), y="ppl", hue="method", marker="o", ax=ax)
    cost.axis(ax)
    perplexity_yaxis(ax)
    ax.set_xlabel(cost.label("pretraining cost"))
    ax.set_ylabel("generic validation perplexity")
    ax.set_title("SLM-hn against SLM and LLM at equal pretraining FLOPs")
    fig.tight_layout()
    cost.note(fig)
    return fig


def experts_ablation(ablation: pd.DataFrame):
    """Generic perplexity, and domain perplexity before and after fine-tuning, against the number of experts
    at one budget (the paper's Figure 7); the SLM (one model, no experts) as dashed lines."""
    hn = ablation[ablation["method"] == "slm-hn"]
    slm = ablation[ablation["method"] == "slm"].iloc[0]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    panels = (("generic_ppl", "generic validation perplexity", "generic corpus (each window routed)"),
              ("domain_ppl", "macro domain test perplexity", "before fine-tuning (top-cluster SLM)"),
              ("domain_ppl_after", "macro domain test perplexity",
               f"after fine-tuning on {int(slm['set_tokens']):,} tokens"))
    for ax, (column, label, title) in zip(axes, panels):
        ax.plot(hn["experts"], hn[column], marker="o", label="SLM-hn")
        ax.axhline(slm[column], color="0.4", ls="--", lw=1, label="SLM")
        ax.set_xscale("log", base=2)
        ax.set_xticks(hn["experts"], [str(k) for k in hn["experts"]])
        ax.minorticks_off()
        ax.set_xlabel("experts (clusters)")
        ax.set_ylabel(label)
        ax.set_title(title, fontsize=10)
        ax.legend()
    fig.suptitle(f"Number of experts at {slm['pretrain_flops']:.2g} pretraining FLOPs")
    fig.tight_layout()
    return fig


def instantiation(table: pd.DataFrame):
    """Per domain (ordered by histogram entropy): test perplexity of the top-cluster and the
    histogram instantiation, and the fine-tuned SLM, before and after fine-tuning."""
    order = table.drop_duplicates("domain").sort_values("entropy_nats")
    labels = [f"{d}\n{h:.2f} nats" for d, h in zip(order["domain"], order["entropy_nats"])]
    long = table.melt(id_vars=["domain", "method"], value_vars=["ppl_before", "ppl_after"], var_name="stage",
                      value_name="perplexity")
    long["stage"] = long["stage"].map({"ppl_before": "before fine-tuning", "ppl_after": "after fine-tuning"})
    # Points, not bars: a bar's length means nothing on the log perplexity axis.
    g = sns.catplot(data=named(long), x="domain", y="perplexity", hue="method", col="stage", kind="point",
                    order=list(order["domain"]), col_order=["before fine-tuning", "after fine-tuning"],
                    dodge=0.4, linestyle="none", height=4, aspect=1.6, sharey=False)
    for ax in g.axes.flat:
        perplexity_yaxis(ax)
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
    g.set_axis_labels("domain (histogram entropy)", "test perplexity")
    g.set_titles("{col_name}")
    g.figure.suptitle("Top-cluster against histogram instantiation, domains by increasing entropy", y=1.03)
    return g.figure


def histogram_gain(gains: pd.DataFrame):
    """What the histogram instantiation gains over the top cluster (perplexity points) against the
    domain's histogram entropy, before and after fine-tuning."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for column, label, marker in (("gain_before", "before fine-tuning", "o"),
                                  ("gain_after", "after fine-tuning", "s")):
        ax.scatter(gains["entropy_nats"], gains[column], label=label, marker=marker)
    for r in gains.itertuples():
        ax.annotate(r.domain, (r.entropy_nats, r.gain_after), textcoords="offset points", xytext=(4, 3),
                    fontsize=8, color="0.35")
    ax.axhline(0, color="0.4", lw=1)
    ax.set_xlabel("domain histogram entropy (nats)")
    ax.set_ylabel("perplexity, top minus histogram\n(> 0: the histogram is better)")
    ax.set_title("Does mixing the experts help spread-out domains?")
    ax.legend()
    ax.set_xlim(left=min(0.0, float(np.min(gains["entropy_nats"]))) - 0.05)
    fig.tight_layout()
    return fig
