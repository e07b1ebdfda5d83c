"""Checks of what a user gives and of what the lab cached, each failing with one LabError line.

Numbers. The command line checks every number a user types before any work,
and the library functions it calls check them again (a notebook or a script
calls those directly), so a bad value never reaches a run or the results store.

Files. A cache file the lab reads back (a checkpoint's weights, a token stream)
has its size and sha256 recorded when it is written; `verify_file` compares
them when it is read: the size every time, the hash once per process for each
(path, modification time, size), so reading a file many times costs one hash.
"""
from __future__ import annotations

import hashlib
import math
import numbers
import os
from pathlib import Path

from .errors import LabError

SEED_MAX = 2**32 - 1
"""numpy's legacy global seed, which training sets, takes 32 bits."""


def _whole(value) -> bool:
    return (not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(value)
            and float(value).is_integer())


def integer(value, flag: str, *, minimum: int) -> int:
    if not _whole(value) or value < minimum:
        raise LabError(f"{flag} {value!r}: give a whole number of at least {minimum:,}")
    return int(value)


def seed(value, flag: str = "--seed") -> int:
    if not _whole(value) or not 0 <= value <= SEED_MAX:
        raise LabError(f"{flag} {value!r}: a seed is a whole number from 0 to {SEED_MAX:,}")
    return int(value)


def set_size(value, context: int, flag: str = "--set-tokens") -> int:
    """An in-domain set size: training draws windows of `context + 1` tokens from it, so it needs
    at least one context plus two."""
    if not _whole(value) or value < context + 2:
        raise LabError(f"{flag} {value!r}: an in-domain set needs at least {context + 2:,} tokens at this "
                       f"scale (one training window: the context of {context:,} plus two); give a larger size")
    return int(value)


def positive(value, flag: str) -> float:
    """A budget (FLOPs, seconds): a finite number above zero."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (math.isfinite(value) and value > 0):
        raise LabError(f"{flag} {value!r}: give a finite number above zero")
    return float(value)


# -- files ----------------------------------------------------------------------

_digests: dict[tuple[str, int, int], str] = {}


def sha256(path: str | os.PathLike) -> str:
    """The file's sha256, hashed once per process for each (path, modification time, size)."""
    st = os.stat(path)
    key = (str(Path(path).resolve()), st.st_mtime_ns, st.st_size)
    if key not in _digests:
        with open(path, "rb") as f:
            _digests[key] = hashlib.file_digest(f, "sha256").hexdigest()
    return _digests[key]


def file_record(path: str | os.PathLike) -> dict:
    """What `verify_file` compares, taken right after writing `path`."""
    with open(path, "rb") as f:
        return {"bytes": os.fstat(f.fileno()).st_size, "sha256": hashlib.file_digest(f, "sha256").hexdigest()}


def verify_file(path: str | os.PathLike, record: dict, fix: str) -> Path:
    """`path`, unless its size or sha256 differs from `record` (`file_record`'s): then a LabError
    naming it and saying what rebuilds it (`fix`)."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise LabError(f"{path} is missing; {fix}") from None
    if size != record["bytes"]:
        raise LabError(f"{path} is damaged: it has {size:,} bytes where {record['bytes']:,} were written; {fix}")
    if sha256(path) != record["sha256"]:
        raise LabError(f"{path} is damaged: its contents differ from what was written (sha256); {fix}")
    return path
