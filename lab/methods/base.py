"""What a method is: one object with its name, needs, options, recipe and price.

A `Method` pretrains (if it has a generic model of its own), specializes a
checkpoint to a domain, lists the steps it adds to a study, and prices each
step in FLOPs from the same configs its run uses (`lab.training`): the study
has no cost formulas of its own. `Option`s declare the method's settings; the
command line, the study and the checks read them from the registry
(`lab.methods.METHODS`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import LabError
from ..nn import costs
from ..nn.model import model_config
from ..scales import Scale, get_scale
from ..training.finetune import finetune_config
from ..training.train import train_config
from .store import ResultRow


@dataclass(frozen=True)
class Option:
    """One setting of a method, given on the command line as `--name` (dashes for underscores)."""
    name: str
    type: Callable[[str], Any]
    help: str
    choices: tuple = ()
    pretrain: bool = False
    """It also decides the pretrained model (the method's pretraining takes it too)."""
    study: bool = True
    """The study passes it on (False: a setting for single runs only)."""
    check: Callable[[Any], str | None] | None = None
    """Returns what is wrong with a value, or None."""

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def validate(self, method: str, value: Any) -> Any:
        try:
            value = self.type(value)
        except (TypeError, ValueError):
            raise LabError(f"{method}: {self.flag} {value!r} is not a valid {self.type.__name__}") from None
        if self.choices and value not in self.choices:
            raise LabError(f"{method}: {self.flag} {value!r}: choose one of {', '.join(map(str, self.choices))}")
        why = self.check(value) if self.check else None
        if why:
            raise LabError(f"{method}: {self.flag} {value!r}: {why}")
        return value


def at_least(n: float) -> Callable[[Any], str | None]:
    return lambda v: None if v >= n else f"must be at least {n}"


def positive(v: float) -> str | None:
    return None if math.isfinite(v) and v > 0 else "must be a positive number"


LORA_RANK = Option("lora_rank", int, "fine-tune LoRA adapters of this rank (peft) instead of every weight; "
                   "0: full fine-tuning", check=lambda r: None if r >= 0 else "give a rank of 0 (full fine-tuning) "
                   "or more")
"""Every method that fine-tunes a pretrained GPT takes it (`lab.training.lora`)."""
LR_SCALE = Option("lr_scale", float, "fine-tune at this multiple of the recipe's learning rate (1: the recipe)",
                  study=False, check=positive)
"""For measuring the recipe (`benchmarks/bench_finetune_lr.py`); the study keeps the recipe's rate."""


@dataclass(frozen=True)
class Step:
    """One cached call of a study: a method's pretraining, or its specialization to one domain and set."""
    method: str
    phase: str
    """"pretrain" or "specialize"."""
    domain: str | None = None
    set_tokens: int | None = None
    fraction: float | None = None
    """Share of the largest budget: the pretraining checkpoint, or SLM-is's specialization budget."""
    budget: float | None = None
    """That budget in FLOPs (the checkpoint's `pretrain_flops`, or SLM-is's `spec_flops`)."""
    flops: float = 0.0
    """Planned FLOPs (the method's `price`): an upper bound (fine-tuning at its step cap), 0 when
    another step pays them."""
    options: tuple = ()
    """(name, value) pairs passed to the method."""

    @property
    def id(self) -> str:
        opts = ",".join(f"{k}={v}" for k, v in self.options)
        return "|".join(str(x) for x in (self.method, self.phase, self.domain, self.set_tokens,
                                          fraction_label(self.fraction), opts))

    @property
    def rate_key(self) -> str:
        return f"{self.method}/{self.phase}"

    def describe(self) -> str:
        if self.phase == "pretrain":
            return f"{self.method} pretraining"
        where = "spec. budget" if self.method == "slm-is" else "checkpoint"
        budget = "" if self.fraction is None else f", {where} {fraction_label(self.fraction)}"
        return f"{self.method} on {self.domain} ({self.set_tokens:,} tokens{budget})"


def fraction_label(f: float | None) -> str:
    if f is None:
        return "-"
    if f >= 1:
        return "1"
    return f"1/{round(1 / f)}" if abs(1 / f - round(1 / f)) < 1e-6 else f"{f:.3g}"


@dataclass(frozen=True)
class Layout:
    """What a study asks of every method: the scale, domains, set sizes, budgets and options."""
    scale: Scale
    methods: tuple[str, ...]
    domains: tuple[str, ...]
    set_sizes: tuple[int, ...]
    curve_sets: tuple[int, ...]
    is_sets: tuple[int, ...]
    fractions: tuple[float, ...]
    options: dict = field(default_factory=dict)


class Method:
    """A method of the study. Subclasses set the class attributes and implement `specialize`
    (and `pretrain` when they have a generic model of their own). Their options arrive checked:
    `lab.methods.pretrain` and `specialize` (and the study's plan) run `check_options` first."""
    name: str = ""
    title: str = ""
    """The name the paper writes (figures, tables)."""
    options: tuple[Option, ...] = ()
    refused: dict[str, str] = {}
    """Options other methods take that this one cannot, with why (said when one is given)."""
    kind: str = "slm"
    """The model shape whose pretraining recipe the method's own pretraining follows ("slm" or "llm")."""
    needs: tuple[str, ...] = ()
    """The methods whose pretraining this one's specialization starts from (one study step each)."""
    curve: bool = True
    """Specialized from every checkpoint on the curve sets (False: from the largest budget only)."""
    from_scratch: bool = False
    """No pretraining checkpoint: the study passes no pretraining budget."""
    seconds_per_flop: float = 1.8e-11
    """Time prior before anything is measured, from the 2-core CPU at `default`: the SLM's whole
    pretraining ran 72k tokens/s at 0.77 MFLOPs a token (docs/regime.md). Methods that train
    SLM-shaped models keep it."""

    def __repr__(self) -> str:
        return f"<method {self.name}>"

    # -- options ------------------------------------------------------------

    def option(self, name: str) -> Option | None:
        return next((o for o in self.options if o.name == name), None)

    def check_options(self, options: dict, *, phase: str = "specialize") -> dict:
        """The options this method takes, validated; any other one is an error naming the method."""
        out = {}
        for name, value in options.items():
            opt = self.option(name)
            if opt is None and name in self.refused:
                raise LabError(f"{self.name} cannot take {name}: {self.refused[name]}")
            if opt is None or (phase == "pretrain" and not opt.pretrain):
                takes = [o.name for o in self.options if phase != "pretrain" or o.pretrain]
                raise LabError(f"{self.name} {'pretraining ' if phase == 'pretrain' else ''}takes "
                               + (f"the options {', '.join(takes)}" if takes else "no options")
                               + f", not {name}")
            if value is not None:
                out[name] = opt.validate(self.name, value)
        return out

    def study_options(self, options: dict, *, phase: str = "specialize") -> dict:
        """Of a study's options, those this method takes in `phase`, validated."""
        mine = {o.name for o in self.options if o.study and (phase != "pretrain" or o.pretrain)}
        return self.check_options({k: v for k, v in options.items() if k in mine and v is not None}, phase=phase)

    # -- running ------------------------------------------------------------

    @property
    def pretrains(self) -> bool:
        """Whether the method has a pretraining phase the command line can run."""
        return type(self).pretrain is not Method.pretrain

    def pretrain(self, scale: str | Scale, *, seed: int = 0, progress: bool = True, **options) -> list[dict]:
        raise LabError(f"{self.name} has no pretraining phase of its own (it starts from scratch on the domain "
                       "or builds on another method's pretrained model)")

    def specialize(self, domain: str, set_tokens: int, scale: str | Scale, *, seed: int = 0,
                   pretrain_flops: float | None = None, progress: bool = True, **options) -> ResultRow:
        raise NotImplementedError

    # -- planning -----------------------------------------------------------

    def steps(self, layout: Layout) -> list[Step]:
        """This method's specialization steps in a study: every set size from the largest budget,
        and the curve sets from every checkpoint share too."""
        opts = tuple(sorted(self.study_options(layout.options).items()))
        top = train_config("slm", layout.scale).pretrain_flops
        steps = []
        for n in layout.set_sizes:
            fractions = layout.fractions if n in layout.curve_sets and self.curve else (1.0,)
            for f in sorted(fractions, reverse=True):
                for d in layout.domains:
                    step = Step(self.name, "specialize", d, n, f, f * top, options=opts)
                    steps.append(priced(step, self.price(step, layout)))
        return steps

    def price(self, step: Step, layout: Layout) -> float:
        """Planned FLOPs of one of this method's steps (an upper bound: fine-tuning at its step cap)."""
        raise NotImplementedError

    def price_pretrain(self, scale: str | Scale, options: dict) -> float:
        """Planned FLOPs of this method's pretraining run (every checkpoint's cooldown branch included)."""
        return train_config(self.kind, scale).run_flops()


def priced(step: Step, flops: float) -> Step:
    """`step` with its planned FLOPs."""
    return Step(step.method, step.phase, step.domain, step.set_tokens, step.fraction, step.budget, flops, step.options)


def finetune_flops(kind: str, scale: str | Scale, set_tokens: int, *, from_scratch: bool = False,
                   lora_rank: int = 0) -> float:
    """One fine-tuning of the scale's SLM or LLM at its step cap (`finetune_config`), with its
    validation and the test scoring before and after. SLM-nopt trains twice the cap from scratch.
    With LoRA, training and validation run with the adapters unmerged, the test scoring merged."""
    s = get_scale(scale)
    cfg, ft = model_config(kind, s), finetune_config(kind, s, set_tokens)
    steps = ft.max_steps * (2 if from_scratch else 1)
    per_token, valid = costs.train_flops_per_token(cfg), costs.forward_flops_per_token(cfg)
    if lora_rank:
        per_token, valid = costs.lora_train_flops_per_token(cfg, lora_rank), costs.lora_forward_flops_per_token(
            cfg, lora_rank)
    train = steps * ft.batch_size * cfg.context * per_token
    evals = (steps // ft.eval_every + 1) * ft.eval_tokens * valid
    return train + evals + 2 * s.test_tokens * costs.forward_flops_per_token(cfg)


def lora_rank(step: Step) -> int:
    """The LoRA rank a study step fine-tunes with (0: full fine-tuning)."""
    return int(dict(step.options).get("lora_rank") or 0)


def scoring_flops(kind: str, scale: str | Scale) -> float:
    """Scoring the domain's test stream once with the scale's SLM or LLM."""
    s = get_scale(scale)
    return s.test_tokens * costs.forward_flops_per_token(model_config(kind, s))
