"""Figures of distillation (notebook 06): the paper's Figure 5 and the teacher-budget sweep.

Both take `lab.analysis.distillation.macro(...)`: one row per method, set size and budgets,
perplexities averaged over domains.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from . import Cost, perplexity_yaxis

LABELS = {"slm": "SLM", "llm": "LLM (reference: 4x the inference cost)", "slm-d": "SLM-d (teacher: largest LLM)",
          "slm-d-teacher": "SLM-d (student: largest SLM, teacher varies)", "slm-mix": "SLM-mix", "slm-hn": "SLM-hn"}
# One colour per series in every panel, whichever series a panel leaves out.
COLORS = dict(zip(["slm", "slm-d", "slm-d-teacher", "llm", "slm-mix", "slm-hn"], sns.color_palette("tab10")))
DASHED = {"llm"}


def _log_axes(ax, cost: Cost) -> None:
    cost.axis(ax)
    perplexity_yaxis(ax)


def _curves(summary: pd.DataFrame) -> pd.DataFrame:
    """Series to draw: SLM-d appears twice, once per sweep."""
    plain = summary[summary.method != "slm-d"].assign(series=lambda d: d.method)
    students = summary[(summary.method == "slm-d") & summary.student_sweep].assign(series="slm-d")
    teachers = summary[(summary.method == "slm-d") & summary.teacher_sweep].assign(series="slm-d-teacher")
    return pd.concat([plain, students, teachers], ignore_index=True)


def _draw(ax, curves: pd.DataFrame, x: str, cost: Cost) -> None:
    for series, g in curves.groupby("series", sort=False):
        g = g.sort_values(x)
        ax.plot(g[x], g["ppl_after"], marker="o", ls="--" if series in DASHED else "-",
                color=COLORS.get(series), label=LABELS.get(series, series))
    _log_axes(ax, cost)
    ax.set_ylabel("test perplexity after fine-tuning")


def figure5(summary: pd.DataFrame, cost: str = "flops"):
    """Left: against the student's pretraining cost (the teacher is free). Right: against all
    pretraining, the teacher's included. One row of panels per in-domain set size. Costs in FLOPs or
    measured device-hours (`cost`)."""
    cost = Cost.of(cost, summary)
    curves = _curves(summary)
    sizes = sorted(curves["set_tokens"].unique())
    fig, axes = plt.subplots(len(sizes), 2, figsize=(13, 4.5 * len(sizes)), squeeze=False, sharey="row")
    for (left, right), n in zip(axes, sizes):
        at = curves[curves.set_tokens == n]
        _draw(left, at[at.series != "slm-d-teacher"], cost.column("student"), cost)
        left.set_xlabel(cost.label("pretraining of the deployed model, SLM-d's student"))
        left.set_title(f"{n:,}-token domain set: teacher not counted")
        _draw(right, at, cost.column("pretrain"), cost)
        right.set_xlabel(cost.label("all pretraining, SLM-d's teacher and student"))
        right.set_ylabel("")
        right.set_title(f"{n:,}-token domain set: teacher counted")
    handles, labels = axes[0, 1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, bbox_to_anchor=(0.5, -0.02), frameon=False)
    fig.suptitle("Distillation against the SLM (macro-average over domains)")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    cost.note(fig)
    return fig


def teacher_budget(summary: pd.DataFrame, cost: str = "flops"):
    """SLM-d from the largest SLM against its teacher's pretraining cost (FLOPs or measured device-hours),
    with the teacher itself (the fine-tuned LLM) and the SLM it must beat (dashed line)."""
    cost = Cost.of(cost, summary)
    teacher_x, own_x = cost.column("teacher"), cost.column("student")
    sizes = sorted(summary["set_tokens"].unique())
    fig, axes = plt.subplots(1, len(sizes), figsize=(5.5 * len(sizes), 4.2), squeeze=False)
    for ax, n in zip(axes[0], sizes):
        at = summary[summary.set_tokens == n]
        distilled = at[(at.method == "slm-d") & at.teacher_sweep].sort_values(teacher_x)
        teacher = at[at.method == "llm"].sort_values(own_x)
        slm = at[at.method == "slm"].sort_values("student_flops").iloc[-1]
        ax.plot(distilled[teacher_x], distilled["ppl_after"], marker="o", color=COLORS["slm-d-teacher"],
                label="SLM-d (student: largest SLM)")
        ax.plot(teacher[own_x], teacher["ppl_after"], marker="s", ls="--", color=COLORS["llm"],
                label="its teacher: the LLM fine-tuned")
        ax.axhline(slm["ppl_after"], color=COLORS["slm"], ls=":", lw=1.5, label="SLM (largest), fine-tuned")
        _log_axes(ax, cost)
        ax.set_xlabel(cost.label("teacher pretraining"))
        ax.set_ylabel("test perplexity after fine-tuning")
        ax.set_title(f"{n:,}-token domain set")
        ax.legend(fontsize=8)
    fig.suptitle("SLM-d against its teacher's pretraining budget (macro-average over domains)")
    fig.tight_layout()
    cost.note(fig)
    return fig
