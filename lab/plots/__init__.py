"""Figures the notebooks show, one module per topic, each function returning a
matplotlib figure for the notebook to save. Axes carry their units (tokens,
characters, FLOPs, perplexity)."""
import matplotlib
import seaborn as sns

matplotlib.rcParams.setdefault("figure.dpi", 100)
sns.set_theme(style="whitegrid", context="notebook")


def perplexity_yaxis(ax) -> None:
    """A log perplexity axis labelled in plain numbers (60, 70, 100), not powers of ten."""
    from matplotlib.ticker import FormatStrFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FormatStrFormatter("%.0f"))
    ax.yaxis.set_minor_formatter(FormatStrFormatter("%.0f"))
