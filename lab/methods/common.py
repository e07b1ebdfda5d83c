"""What every method module needs: data, checkpoints, a cached-call flag."""
from __future__ import annotations

from pathlib import Path

from ..data.corpus import GENERIC, Domain, load_corpus, load_domain
from ..errors import LabError
from ..nn.checkpoints import read_meta


def generic_streams(scale: str):
    corpus = load_corpus(scale)
    return corpus.tokens(GENERIC, "train"), corpus.tokens(GENERIC, "validation")


def domain_data(domain: str, set_tokens: int, scale: str) -> tuple[Domain, object]:
    """The domain and its nested training set; errors say how many tokens it has."""
    d = load_domain(domain, scale)
    return d, d.set(set_tokens)


def checkpoint_rows(paths: list[Path]) -> list[dict]:
    rows = []
    for path in paths:
        meta = read_meta(path)
        rows.append({"checkpoint": str(path), "pretrain_flops": meta["flops"], "pretrain_tokens": meta["tokens"],
                     "valid_loss": meta.get("valid_loss"), "seconds": meta["seconds"], "device": meta.get("device"),
                     "steps": meta.get("step")})
    return rows


def pick_checkpoint(rows: list[dict], pretrain_flops: float | None) -> dict:
    """The checkpoint nearest the requested pretraining FLOPs (default: the largest)."""
    if not rows:
        raise LabError("no pretraining checkpoint was produced")
    if pretrain_flops is None:
        return max(rows, key=lambda r: r["pretrain_flops"])
    return min(rows, key=lambda r: abs(r["pretrain_flops"] - pretrain_flops))

