"""The plan of a budget study: which steps, in which order, at what price.

One study is a list of *steps*, each one cached call into the method registry
(`lab.methods`):

- a **pretraining** step per method with a generic model of its own (slm, llm,
  slm-mix, slm-hn): one run writes a checkpoint at each share of the budget;
- a **specialization** step per (method, domain, set size, budget): the method
  fine-tunes from the checkpoint nearest that pretraining budget (SLM-is, which
  has no pretraining, trains on resampled generic text for that specialization
  budget instead).

Which budgets. Specializing every checkpoint for every set size would multiply
the fine-tunings by five, so a plan specializes from *every* checkpoint for the
`curve_sets` only (default: the scale's, the two smallest sets, where pretraining
matters most), and from the *largest* budget for every set. Each method lists
its own steps and prices them (`Method.steps`, `Method.price`): the plan holds
no method's name and no cost formula.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from .. import checks
from ..data.corpus import load_corpus
from ..errors import LabError
from ..methods import METHODS
from ..methods.base import Layout, Step, fraction_label
from ..scales import Scale, get_scale
from ..training.train import train_config


@dataclass
class Plan:
    scale: Scale
    methods: list[str]
    domains: list[str]
    set_sizes: list[int]
    curve_sets: list[int]
    is_sets: list[int]
    fractions: list[float]
    seed: int
    options: dict[str, object]
    steps: list[Step]


def make_plan(scale: str | Scale, methods_: Sequence[str] | None = None, domains: Sequence[str] | None = None,
              set_sizes: Sequence[int] | None = None, *, curve_sets: Sequence[int] | None = None,
              is_sets: Sequence[int] | None = None, fractions: Sequence[float] | None = None, seed: int = 0,
              **options) -> Plan:
    """The steps of a study, in run order, each priced in FLOPs.

    Defaults: every registered method, the scale's study domains among its corpus's, its
    three set sizes; `curve_sets` (specialized from every checkpoint share in
    `fractions`) and the shares themselves the scale's; `is_sets` (where SLM-is
    trains) the curve sets. `options` are method options, each given to the
    methods that take it (`Method.options`).
    """
    scale = get_scale(scale)
    checks.seed(seed)
    for flag, sizes in (("--set-sizes", set_sizes), ("--curve-sets", curve_sets), ("--is-sets", is_sets)):
        for n in sizes or ():
            checks.set_size(n, scale.context, flag)
    known = {o.name for m in METHODS.values() for o in m.options if o.study}
    unknown = sorted(k for k, v in options.items() if k not in known and v is not None)
    if unknown:
        raise LabError(f"unknown method option(s) {', '.join(unknown)}: the study passes on {', '.join(sorted(known))}")
    chosen = list(methods_) if methods_ else list(METHODS)
    bad = [m for m in chosen if m not in METHODS]
    if bad:
        raise LabError(f"unknown method(s) {', '.join(bad)}: choose among {', '.join(METHODS)}")
    chosen = [m for m in METHODS if m in chosen]
    corpus = load_corpus(scale)
    domains = list(domains) if domains else corpus.study_domains
    for d in domains:
        if d not in corpus.domains:
            raise LabError(f"unknown domain {d!r}: choose among {', '.join(corpus.domains)}")
    set_sizes = sorted(int(n) for n in (set_sizes or scale.set_tokens))
    curve_sets = sorted(int(n) for n in curve_sets) if curve_sets is not None else \
        [set_sizes[i] for i in scale.curve_sets if i < len(set_sizes)]
    if is_sets is not None:
        is_sets = sorted(int(n) for n in is_sets)
    elif scale.importance_sets is not None:
        is_sets = [set_sizes[i] for i in scale.importance_sets if i < len(set_sizes)]
    else:
        is_sets = list(curve_sets)
    for name, sizes in (("curve_sets", curve_sets), ("is_sets", is_sets)):
        if not set(sizes) <= set(set_sizes):
            raise LabError(f"{name}={sizes}: each must be one of the study's set sizes {set_sizes}")
    tc = train_config("slm", scale)
    fractions = sorted(float(f) for f in (fractions or scale.curve_fractions or tc.checkpoint_fractions))
    if fractions[-1] != 1.0 or any(not any(math.isclose(f, c) for c in tc.checkpoint_fractions) for f in fractions):
        raise LabError(f"fractions={fractions}: choose among the checkpoint shares "
                       f"{', '.join(map(fraction_label, tc.checkpoint_fractions))} of the pretraining budget, "
                       "1 included")
    layout = Layout(scale, tuple(chosen), tuple(domains), tuple(set_sizes), tuple(curve_sets), tuple(is_sets),
                    tuple(fractions), dict(options))

    steps: list[Step] = []
    for name, method in METHODS.items():
        if any(name in METHODS[m].needs for m in chosen):
            opts = method.study_options(options, phase="pretrain")
            steps.append(Step(name, "pretrain", flops=method.price_pretrain(scale, opts),
                              options=tuple(sorted(opts.items()))))
    largest, curves = [], []
    for m in chosen:
        for step in METHODS[m].steps(layout):
            (largest if step.fraction in (None, 1.0) else curves).append(step)
    # The largest budget first: the comparisons at equal pretraining come early, the curves after.
    steps += largest + curves
    return Plan(scale=scale, methods=chosen, domains=domains, set_sizes=set_sizes, curve_sets=curve_sets,
                is_sets=is_sets, fractions=fractions, seed=seed,
                options={k: v for k, v in options.items() if v is not None}, steps=steps)
