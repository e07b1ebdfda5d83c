"""Every method of the study behind two calls, one module per method.

    pretrain(method, scale)                        -> one row per pretraining checkpoint
    specialize(method, domain, set_tokens, scale)  -> one result row

A result row always carries `ppl_before` and `ppl_after` (test perplexity on
the domain before and after specialization), `pretrain_flops`,
`specialize_flops` and `inference_flops_per_token`, and is cached in the
scale's results store: asking twice trains once (`cached` says which).
Methods register themselves in `METHODS` with the module that implements them.
"""
from __future__ import annotations

import importlib

from ..errors import LabError

# method -> module under lab.methods; the module defines `specialize(...)`
# and, for methods with a pretraining phase of their own, `pretrain(...)`.
METHODS = {
    "slm": "dense",
    "slm-generic": "dense",
    "slm-nopt": "dense",
    "llm": "dense",
    "slm-d": "distill",
    "slm-is": "importance",
    "slm-mix": "mixture",
    "slm-hn": "hypernet",
}
REPORTED = ("method", "scale", "domain", "set_tokens", "seed", "ppl_before", "ppl_after", "pretrain_flops",
            "specialize_flops", "inference_flops_per_token", "pretrain_tokens", "specialize_tokens", "seconds",
            "device", "cached")


def _module(method: str):
    if method not in METHODS:
        raise LabError(f"unknown method {method!r}: choose one of {', '.join(METHODS)}")
    return importlib.import_module(f"{__name__}.{METHODS[method]}")


def pretrain(method: str, scale: str = "default", *, seed: int = 0, progress: bool = True, **options) -> list[dict]:
    module = _module(method)
    if not hasattr(module, "pretrain"):
        raise LabError(f"{method} has no pretraining phase of its own (it starts from scratch on the domain "
                       "or builds on another method's pretrained model)")
    return module.pretrain(method, scale, seed=seed, progress=progress, **options)


def specialize(method: str, domain: str, set_tokens: int, scale: str = "default", *, seed: int = 0,
               pretrain_flops: float | None = None, progress: bool = True, **options) -> dict:
    """Specialize `method` to `domain` (a built-in name or a path) with its nested training set of
    `set_tokens` tokens, starting from the pretraining checkpoint nearest `pretrain_flops`
    (default: the largest). Pretrains first if needed."""
    return _module(method).specialize(method, domain, set_tokens, scale, seed=seed,
                                      pretrain_flops=pretrain_flops, progress=progress, **options)


def report(row: dict) -> dict:
    """The fields a user reads (the command line's JSON): costs, perplexities, identity."""
    return {k: row.get(k) for k in REPORTED}
