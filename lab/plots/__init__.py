"""Figures the notebooks show, one module per topic, each function returning a
matplotlib figure for the notebook to save with `save`. Axes carry their units (tokens,
characters, FLOPs, perplexity); methods carry the paper's names (`method_name`)."""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import seaborn as sns
from matplotlib.ticker import (
    FuncFormatter,
    Locator,
    LogLocator,
    MaxNLocator,
    NullFormatter,
)

matplotlib.rcParams.setdefault("figure.dpi", 100)
sns.set_theme(style="whitegrid", context="notebook")

DPI = 200

METHOD_NAMES = {"slm": "SLM", "slm-generic": "SLM generic-only", "slm-nopt": "SLM-nopt", "llm": "LLM",
                "slm-d": "SLM-d", "slm-is": "SLM-is", "slm-mix": "SLM-mix", "slm-hn": "SLM-hn"}


def method_name(method: str) -> str:
    """The paper's name for a method id, any qualifier kept: "slm-mix (4 experts)" -> "SLM-mix (4 experts)"."""
    base, space, rest = str(method).partition(" ")
    return METHOD_NAMES.get(base, base) + space + rest


def named(frame, column: str = "method"):
    """`frame` with its method ids replaced by the paper's names, for seaborn's legends."""
    return frame.assign(**{column: frame[column].map(method_name)})


def save(fig, path) -> None:
    """Write `fig` as path.png (200 dpi) and path.pdf (vector, for the paper). The figure stays open, so a
    notebook still shows it under the cell."""
    path = Path(path)
    for suffix in (".png", ".pdf"):
        fig.savefig(path.with_suffix(suffix), dpi=DPI, bbox_inches="tight")


class _LogTicks(Locator):
    """Labelled ticks on a log axis: the densest of powers of ten, 1-3, 1-2-5, 1-2-3-5, 1-2-3-4-5-6-8 and
    every multiple whose labels stay `gap` inches apart, stopping at the first that gives a few labels; else evenly spaced
    values (a span inside one decade, e.g. perplexities 62 to 68). Matplotlib's own minor labels write
    every multiple once the span is short, and they overlap."""
    SETS = ((1,), (1, 3), (1, 2, 5), (1, 2, 3, 5), (1, 2, 3, 4, 5, 6, 8), tuple(range(1, 10)))

    def __init__(self, gap: float):
        self.gap = gap

    def __call__(self):
        return self.tick_values(*self.axis.get_view_interval())

    def tick_values(self, vmin, vmax):
        vmin, vmax = sorted((vmin, vmax))
        if vmin <= 0:
            return LogLocator().tick_values(max(vmin, vmax * 1e-3), vmax)
        decades = math.log10(vmax / vmin)
        box = self.axis.axes.bbox
        inches = (box.width if self.axis.axis_name == "x" else box.height) / self.axis.axes.figure.dpi

        def fits(ticks) -> bool:
            return all(math.log10(b / a) / decades * inches >= self.gap for a, b in itertools.pairwise(ticks))

        wanted = 2 if decades > 2 else 3
        best = []
        for mantissas in self.SETS:
            ticks = [m * 10.0 ** e for e in range(math.floor(math.log10(vmin)), math.ceil(math.log10(vmax)) + 1)
                     for m in mantissas if vmin <= m * 10.0 ** e <= vmax]
            if not fits(ticks):
                break
            best = ticks
            if len(ticks) >= wanted:
                return ticks
        if not best:  # even the powers of ten crowd: every second or third of them
            return LogLocator(numticks=max(2, int(inches / self.gap))).tick_values(vmin, vmax)
        if len(best) >= 2:
            return best
        for bins in (4, 3, 2, 1):
            ticks = [t for t in MaxNLocator(nbins=bins, steps=[1, 2, 2.5, 5, 10]).tick_values(vmin, vmax)
                     if vmin <= t <= vmax]
            if len(ticks) > len(best) and fits(ticks):
                return ticks
        return best


def _plain(x, pos=None) -> str:
    return f"{int(x):,}" if x == int(x) else f"{x:.3g}"


def _count(x, pos=None) -> str:
    """16000 as 16k and 2000000 as 2M: short enough for narrow panels."""
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if x >= size:
            return f"{x / size:.3g}{suffix}"
    return f"{x:.3g}"


def flops_label(x, pos=None) -> str:
    """3e+11 as 3×10¹¹, the way the paper writes FLOPs."""
    if x <= 0:
        return "0"
    exponent = math.floor(math.log10(x) + 1e-9)
    mantissa = round(x / 10 ** exponent, 2)
    text = rf"10^{{{exponent}}}" if mantissa == 1 else rf"{mantissa:g}\times10^{{{exponent}}}"
    return rf"$\mathdefault{{{text}}}$"


def _log_axis(ax, which: str, formatter, width: float) -> None:
    """`width`: the inches a label of `formatter` takes along an x axis (on a y axis, one line of text)."""
    getattr(ax, f"set_{which}scale")("log")
    axis = getattr(ax, f"{which}axis")
    axis.set_major_locator(_LogTicks(width + 0.15 if which == "x" else 0.3))
    axis.set_major_formatter(FuncFormatter(formatter))
    axis.set_minor_locator(LogLocator(subs=range(2, 10)))
    axis.set_minor_formatter(NullFormatter())


def perplexity_yaxis(ax) -> None:
    """A log perplexity axis labelled in plain numbers (60, 70, 100), not powers of ten."""
    _log_axis(ax, "y", _plain, 0.5)


def flops_axis(ax, which: str = "x") -> None:
    """A log FLOPs (or FLOPs per token) axis labelled in scientific notation (3×10¹¹)."""
    _log_axis(ax, which, flops_label, 0.7)


def _hours(x, pos=None) -> str:
    """Plain decimals however small (0.0005, not 5e-04): a tiny study's runs take seconds."""
    return _plain(x) if x >= 0.01 else np.format_float_positional(x, precision=2, unique=True, fractional=False,
                                                                  trim="-")


def hours_axis(ax, which: str = "x") -> None:
    """A log axis of device-hours labelled in plain numbers (0.0005, 0.02, 1.5, 40)."""
    _log_axis(ax, which, _hours, 0.6)


COSTS = ("flops", "hours")


@dataclass(frozen=True)
class Cost:
    """The cost a figure's axes show: analytic FLOPs (the lab's default) or measured device-hours (the
    paper's axis, A100 GPU-hours there). A frame holds both as `<part>_flops` and `<part>_hours`
    (`part`: pretrain, specialize, total); `devices` are the devices its hours were measured on."""
    kind: str = "flops"
    devices: tuple[str, ...] = ()

    def __post_init__(self):
        if self.kind not in COSTS:
            raise ValueError(f"cost axis {self.kind!r}: choose one of {', '.join(COSTS)}")

    @classmethod
    def of(cls, kind: str, *frames) -> "Cost":
        """The cost `kind` for figures of `frames`, with the devices their rows name (column `device`)."""
        devices = sorted({d for f in frames if "device" in getattr(f, "columns", ())
                          for cell in f["device"].dropna() for d in str(cell).split("; ") if d})
        return cls(kind, tuple(devices))

    def column(self, part: str) -> str:
        return f"{part}_{self.kind}"

    def label(self, what: str) -> str:
        """`what` with the unit, "pretraining cost (FLOPs)"; device-hours name their device on a second line."""
        if self.kind == "flops":
            return f"{what} (FLOPs)"
        on = self.devices[0] if len(self.devices) == 1 else "several devices (below)" if self.devices else ""
        return f"{what} (device-hours)" + (f"\non {on}" if on else "")

    def axis(self, ax, which: str = "x") -> None:
        (flops_axis if self.kind == "flops" else hours_axis)(ax, which)

    def note(self, fig) -> None:
        """Say on `fig` when its hours come from more than one device: they do not compare point for point."""
        if self.kind == "hours" and len(self.devices) > 1:
            fig.text(0.01, -0.02, "device-hours measured on several devices, which do not compare: "
                     + "; ".join(self.devices), ha="left", va="top", fontsize=8, color="0.35", wrap=True)


def count_axis(ax, which: str = "x") -> None:
    """A log axis of counts (tokens, windows) labelled 16k, 2M."""
    _log_axis(ax, which, _count, 0.4)
