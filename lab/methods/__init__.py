"""Every method of the study: one `Method` object each (`lab.methods.base`), one module per method.

    pretrain(method, scale)                        -> one row per pretraining checkpoint
    specialize(method, domain, set_tokens, scale)  -> one result row

A result row always carries `ppl_before` and `ppl_after` (test perplexity on
the domain before and after specialization), `pretrain_flops`,
`specialize_flops` and `inference_flops_per_token`, and is cached in the
scale's results store: asking twice trains once (`cached` says which).

Adding a method is one module defining a `Method` and one `register` line below.
"""
from __future__ import annotations

from .. import checks
from ..errors import LabError
from ..scales import Scale, get_scale
from .base import Method
from .store import ResultRow

METHODS: dict[str, Method] = {}
"""Name -> method, in the study's run order."""


def register(method: Method) -> Method:
    if not method.name or method.name in METHODS:
        raise LabError(f"cannot register method {method.name!r}: " + ("it has no name" if not method.name else
                                                                    "a method of that name is registered"))
    METHODS[method.name] = method
    return method


def get(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise LabError(f"unknown method {name!r}: choose one of {', '.join(METHODS)}") from None


def pretrain(method: str, scale: str | Scale = "default", *, seed: int = 0, progress: bool = True,
             **options) -> list[dict]:
    """Pretrain `method`'s generic model; `options` are its own (`Method.options`, checked here), and
    `budget_flops` and `callbacks` (the trainer's) pass through to the methods that train."""
    m = get(method)
    run = {k: options.pop(k) for k in ("budget_flops", "callbacks") if k in options}
    return m.pretrain(scale, seed=checks.seed(seed), progress=progress, **run,
                      **m.check_options(options, phase="pretrain"))


def specialize(method: str, domain: str, set_tokens: int, scale: str | Scale = "default", *, seed: int = 0,
               pretrain_flops: float | None = None, progress: bool = True, **options) -> ResultRow:
    """Specialize `method` to `domain` (a built-in name or a path) with its nested training set of
    `set_tokens` tokens, starting from the pretraining checkpoint nearest `pretrain_flops`
    (default: the largest). Pretrains first if needed."""
    m = get(method)
    checks.set_size(set_tokens, get_scale(scale).context)
    if pretrain_flops is not None:
        checks.positive(pretrain_flops, "--pretrain-flops")
    return m.specialize(domain, set_tokens, scale, seed=checks.seed(seed), pretrain_flops=pretrain_flops,
                        progress=progress, **m.check_options(options))


# Run order. SLM-d comes before the LLM: it fine-tunes the teacher keeping its weights, a row the
# LLM's own step then reuses (the other way round fine-tunes the teacher twice).
from .dense import LLM, SLM, FromScratch, GenericOnly  # noqa: E402
from .distill import Distillation  # noqa: E402
from .hypernet import HyperNetwork  # noqa: E402
from .importance import ImportanceSampling  # noqa: E402
from .mixture import Mixture  # noqa: E402

register(GenericOnly())
register(SLM)
register(FromScratch())
register(Distillation())
register(LLM)
register(Mixture())
register(HyperNetwork())
register(ImportanceSampling())
