"""Token streams on disk and the seeded batch sampler that reads them.

A split is one flat array of uint16 token ids (documents joined by the
end-of-text token), memory-mapped so a stream larger than memory costs nothing
to open. Training batches are windows of `context + 1` tokens at random
offsets; the sampler's whole state is one numpy generator state, saved with
checkpoints so a resumed run sees exactly the batches it would have seen.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from .. import atomic, checks

DTYPE = np.uint16


def save_tokens(path: str | Path, ids: np.ndarray) -> None:
    ids = np.asarray(ids)
    if ids.size and int(ids.max()) > np.iinfo(DTYPE).max:
        raise ValueError("token id does not fit in uint16; use a vocabulary under 65,536")
    atomic.write_bytes(path, ids.astype(DTYPE).tobytes())


def load_tokens(path: str | Path, record: dict | None = None, fix: str = "") -> np.ndarray:
    """The stream at `path`, memory-mapped. With `record` (the `tokens` and `tokens_sha256` a
    manifest wrote with it) it is verified first, and a damaged file is a LabError that ends with `fix`."""
    path = Path(path)
    if record is not None:
        checks.verify_file(path, {"bytes": record["tokens"] * np.dtype(DTYPE).itemsize,
                                  "sha256": record["tokens_sha256"]}, fix)
    if path.stat().st_size == 0:
        return np.zeros(0, dtype=DTYPE)
    return np.memmap(path, dtype=DTYPE, mode="r")


def window_starts(n_tokens: int, context: int) -> np.ndarray:
    """Offsets of the non-overlapping windows of `context + 1` tokens in a stream."""
    return np.arange(0, max(n_tokens - context - 1, 0) + 1, context, dtype=np.int64)[
        : max((n_tokens - 1) // context, 0)
    ]


class BatchSampler:
    """Random windows from a token stream, reproducible from a seed.

    By default every offset is equally likely. Given `starts` (window offsets)
    and optional `weights`, it draws those windows with those probabilities:
    importance sampling and per-cluster experts use this.
    """

    def __init__(self, tokens: np.ndarray, batch_size: int, context: int, seed: int = 0,
                 starts: np.ndarray | None = None, weights: np.ndarray | None = None):
        if len(tokens) < context + 2:
            raise ValueError(f"stream of {len(tokens)} tokens is shorter than one window of {context + 1}")
        self.tokens = tokens
        self.batch_size = batch_size
        self.context = context
        self.starts = None if starts is None else np.asarray(starts, dtype=np.int64)
        self.p = None
        if weights is not None:
            w = np.asarray(weights, dtype=np.float64)
            self.p = w / w.sum()
        self.rng = np.random.Generator(np.random.PCG64(seed))

    def offsets(self) -> np.ndarray:
        if self.starts is None:
            return self.rng.integers(0, len(self.tokens) - self.context, size=self.batch_size)
        return self.starts[self.rng.choice(len(self.starts), size=self.batch_size, p=self.p)]

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.offsets()[:, None] + np.arange(self.context + 1)[None, :]
        chunk = torch.from_numpy(np.asarray(self.tokens[idx], dtype=np.int64))
        return chunk[:, :-1], chunk[:, 1:]

    def state_dict(self) -> dict:
        return {"rng": json.dumps(self.rng.bit_generator.state)}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = json.loads(state["rng"])


def eval_windows(n_tokens: int, context: int, max_tokens: int | None = None, spread: bool = False) -> np.ndarray:
    """Indices (into `window_starts`) of the windows an evaluation scores: every one, or
    `max_tokens // context` of them, either the first ones or, with `spread`, one at the start of
    each of that many equal parts of the stream. A held-out split is whole documents in a fixed
    order, so where it is a few long documents its first windows are one of them; spread windows
    sample them all."""
    n = len(window_starts(n_tokens, context))
    keep = n if max_tokens is None else min(n, max(1, max_tokens // context))
    if not spread:
        return np.arange(keep)
    return np.arange(keep) * n // max(keep, 1)


def eval_batches(tokens: np.ndarray, batch_size: int, context: int, max_tokens: int | None = None,
                 spread: bool = False):
    """Batches (x, y, window indices) of the non-overlapping windows `eval_windows` picks, in order."""
    index = eval_windows(len(tokens), context, max_tokens, spread)
    starts = window_starts(len(tokens), context)[index]
    for i in range(0, len(starts), batch_size):
        s = starts[i:i + batch_size]
        idx = s[:, None] + np.arange(context + 1)[None, :]
        chunk = torch.from_numpy(np.asarray(tokens[idx], dtype=np.int64))
        yield chunk[:, :-1], chunk[:, 1:], torch.from_numpy(index[i:i + batch_size])
