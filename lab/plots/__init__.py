"""Figures the notebooks show, one module per topic, each function returning a
matplotlib figure for the notebook to save. Axes carry their units (tokens,
characters, FLOPs, perplexity)."""
import matplotlib
import seaborn as sns

matplotlib.rcParams.setdefault("figure.dpi", 100)
sns.set_theme(style="whitegrid", context="notebook")
