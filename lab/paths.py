"""Where the lab keeps its data. Everything generated lives under one root.

The root is `data/` in the repository, or `$LAB_DATA` when set (tests point it
at a temporary folder; a cluster job can point it at scratch space).
"""
from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def data_root() -> Path:
    return Path(os.environ.get("LAB_DATA", REPO / "data")).resolve()


def raw_dir() -> Path:
    """Downloaded source packages, shared by every scale."""
    return Path(os.environ.get("LAB_RAW", data_root() / "raw")).resolve()


def scale_dir(scale: str) -> Path:
    """The built corpus, tokenizer and token streams of one scale."""
    return data_root() / str(scale)


def output_dir(scale: str) -> Path:
    """Executed notebooks, figures and metrics files of one scale."""
    return Path(os.environ.get("LAB_OUT", scale_dir(scale) / "outputs")).resolve()
