"""Which of the paper's findings (docs/regime.md, section 3) hold at a scale, computed from the study.

Each finding is turned into a test on the study's numbers (`lab.study.load_study`),
stated in its `rule`, and comes back as "holds", "does not hold" or "not measured"
(a method it needs has no results: not written yet, or not run), with the numbers
behind the verdict. Nothing here is hard-coded about the outcome: run the study
again at another scale and the verdicts follow the data.

Comparisons are on macro-averaged test perplexity (exp of the mean per-domain
log-perplexity, the paper's average) after specialization, at the largest
pretraining budget unless a finding is about budgets.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from .. import methods as lab_methods
from ..errors import LabError
from ..methods.common import pick_checkpoint
from ..provenance import machine, revision
from ..study import StudyResults, macro_points
from ..study.results import devices
from .params import parse_list

HOLDS, FAILS, NOT_MEASURED = "holds", "does not hold", "not measured"
STATUSES = (HOLDS, FAILS, NOT_MEASURED)
SMALL = ("slm", "slm-mix", "slm-hn", "slm-is", "slm-d")
"""Methods that deploy one SLM (the small inference budget)."""
DOMAIN_COUNTS = (1, 7, 50)
"""Numbers of domains at which total costs are compared (the paper's figure)."""
TAU_WEAK = 0.6
"""Finding 2: a Kendall tau below this between the before and after rankings counts as "does not predict"."""


@dataclass
class Finding:
    number: int
    claim: str
    rule: str
    """How the claim is tested on the lab's numbers."""
    status: str = NOT_MEASURED
    detail: str = ""
    """One line with the numbers behind the verdict."""
    numbers: dict = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    """Methods the test needs that have no results."""

    def line(self) -> str:
        miss = f" (missing: {', '.join(self.missing)})" if self.missing else ""
        return f"{self.number}. {self.status.upper()}{miss}: {self.claim} {self.detail}".rstrip()

    def to_dict(self) -> dict:
        return asdict(self)


class _Data:
    """The study reduced to what the tests read: macro points and the pretraining table."""

    def __init__(self, study: StudyResults):
        self.study = study
        self.points = macro_points(study.results)
        self.pretrain = study.pretrain
        self.set_sizes = sorted(self.points["set_tokens"].unique().tolist()) if len(self.points) else []

    def has(self, method: str) -> bool:
        return (self.points["method"] == method).any()

    def missing(self, *needed: str) -> list[str]:
        return [m for m in needed if not self.has(m)]

    def final(self, method: str, n: int) -> dict | None:
        """The method's point at its largest budget share for set size n."""
        g = self.points[(self.points["method"] == method) & (self.points["set_tokens"] == n)]
        return None if g.empty else g.sort_values("fraction").iloc[-1].to_dict()

    def curve(self, method: str, n: int) -> pd.DataFrame:
        g = self.points[(self.points["method"] == method) & (self.points["set_tokens"] == n)]
        return g.sort_values("fraction")

    def domain_rows(self, method: str, n: int) -> pd.DataFrame:
        r = self.study.results
        g = r[(r["method"] == method) & (r["set_tokens"] == n)]
        if g.empty:
            return g
        return g[g["fraction"].fillna(1.0) == g["fraction"].fillna(1.0).max()].set_index("domain")


def _r(x: float, digits: int = 2) -> float:
    return round(float(x), digits)


def finding1(d: _Data) -> Finding:
    f = Finding(1, "Fine-tuning matters for every method; even the smallest domain set helps a lot.",
                "every method with a pretrained or resampled model is better on every domain after fine-tuning "
                "than before, at every set size (largest budget); the numbers are macro perplexities")
    tuned = [m for m in ("slm", "llm", "slm-d", "slm-mix", "slm-hn", "slm-is") if d.has(m)]
    f.missing = [m for m in ("slm", "llm", "slm-d", "slm-mix", "slm-hn", "slm-is") if m not in tuned]
    if not tuned:
        return f
    worst, ok = None, True
    for m in tuned:
        f.numbers[m] = {}
        for n in d.set_sizes:
            rows = d.domain_rows(m, n)
            if rows.empty:
                continue
            better = int((rows["ppl_after"] < rows["ppl_before"]).sum())
            p = d.final(m, n)
            f.numbers[m][str(n)] = {"before": _r(p["ppl_before"]), "after": _r(p["ppl_after"]),
                                    "domains_better": better, "domains": len(rows)} if p else {}
            ok &= better == len(rows)
            gain = p["ppl_before"] / p["ppl_after"] if p else math.inf
            if n == d.set_sizes[0] and (worst is None or gain < worst[1]):
                worst = (m, gain)
    verdict = HOLDS if ok else FAILS
    if worst:
        f.detail = (f"Smallest set ({d.set_sizes[0]:,} tokens): the least helped method, {worst[0]}, divides "
                    f"its perplexity by {worst[1]:.2f}.")
    f.status = NOT_MEASURED if f.missing else verdict
    if f.missing:  # the verdict on the methods there are, said as such
        f.detail += f" On the methods measured ({', '.join(tuned)}) it {verdict}."
    return f


def finding2(d: _Data) -> Finding:
    f = Finding(2, "Perplexity on the domain before fine-tuning does not predict perplexity after it.",
                f"per set size, the Kendall tau between the methods' macro perplexities before and after fine-tuning "
                f"(largest budget; 1: the same ranking) is below {TAU_WEAK} on average")
    pool = [m for m in ("slm", "llm", "slm-mix", "slm-hn", "slm-is", "slm-d") if d.has(m)]
    f.missing = [m for m in ("slm", "llm", "slm-mix", "slm-hn", "slm-is", "slm-d") if m not in pool]
    taus = {}
    for n in d.set_sizes:
        pts = [p for m in pool if (p := d.final(m, n))]
        if len(pts) >= 3:
            tau = stats.kendalltau([p["ppl_before"] for p in pts], [p["ppl_after"] for p in pts]).statistic
            if np.isfinite(tau):
                taus[str(n)] = {"tau": _r(tau, 3), "methods": [p["method"] for p in pts]}
    if not taus:
        f.missing = f.missing or ["fewer than three methods measured"]
        return f
    mean = float(np.mean([t["tau"] for t in taus.values()]))
    f.numbers = {"kendall_tau": taus, "mean_tau": _r(mean, 3)}
    f.status = HOLDS if mean < TAU_WEAK else FAILS
    f.detail = f"Mean Kendall tau {mean:.2f} over {len(taus)} set size(s) and {len(pool)} methods."
    if len(pool) < 6:
        f.status, f.detail = NOT_MEASURED, f.detail + " Needs every method for the ranking to mean what it says."
    return f


GENERIC_ORDER = ("llm", "slm-mix", "slm-hn", "slm")
"""Finding 3's order of generic perplexity at equal pretraining FLOPs, best first."""


def finding3(d: _Data) -> Finding:
    order = list(GENERIC_ORDER)
    f = Finding(3, "On the generic corpus at equal pretraining cost: LLM < SLM-mix < SLM-hn < SLM.",
                "generic validation perplexity at the largest (equal-FLOPs) budget is in that order")
    pre = d.pretrain
    f.missing = [m for m in order if not (pre["method"] == m).any()]
    last = {m: g.sort_values("pretrain_flops").iloc[-1] for m, g in pre.groupby("method")}
    f.numbers = {"generic_ppl": {m: _r(r["generic_ppl"]) for m, r in last.items()},
                 "pretrain_flops": {m: float(r["pretrain_flops"]) for m, r in last.items()}}
    # Where each method first beats the SLM as pretraining grows (the crossover, docs/regime.md).
    if "slm" in last:
        slm = pre[pre["method"] == "slm"].sort_values("pretrain_flops")
        first = {}
        for m, g in pre.groupby("method"):
            if m == "slm":
                continue
            g = g.sort_values("pretrain_flops")
            wins = [float(a.pretrain_flops) for a, b in zip(g.itertuples(), slm.itertuples())
                    if a.generic_ppl < b.generic_ppl]
            first[m] = wins[0] if wins else None
        f.numbers["first_budget_beating_slm"] = first
    if f.missing:
        return f
    ppl = [last[m]["generic_ppl"] for m in order]
    f.status = HOLDS if all(a < b for a, b in zip(ppl, ppl[1:])) else FAILS
    ranked = sorted(order, key=lambda m: last[m]["generic_ppl"])
    f.detail = "At equal FLOPs: " + " < ".join(f"{m} {last[m]['generic_ppl']:.1f}" for m in ranked) + "."
    timed = _at_equal_seconds(pre, order)
    if timed:
        f.numbers["at_equal_seconds"] = timed
        ranked = sorted(timed["generic_ppl"], key=timed["generic_ppl"].get)
        f.detail += (f" At equal measured time ({timed['seconds']:.3g} s on {timed['device']}): "
                     + " < ".join(f"{m} {timed['generic_ppl'][m]:.1f}" for m in ranked) + ".")
    return f


def _at_equal_seconds(pre: pd.DataFrame, methods: list[str]) -> dict | None:
    """Each method's generic perplexity at the measured seconds of the shortest of their largest
    budgets (at equal FLOPs a method that uses its FLOPs faster, like the LLM, finishes first; one
    that pays more per step, like SLM-hn, is charged for it), interpolated in log-log between its
    checkpoints. None where a method's first checkpoint came after that time, or where the runs were
    timed on different devices, whose seconds do not compare."""
    if "seconds" not in pre or pre["seconds"].isna().any():
        return None
    devices = set(pre.loc[pre["method"].isin(methods), "device"].dropna())
    if len(devices) != 1:
        return None
    target = min(float(pre.loc[pre["method"] == m, "seconds"].max()) for m in methods)
    out = {}
    for m in methods:
        g = pre[pre["method"] == m].sort_values("seconds")
        if g.empty or not g["seconds"].min() <= target <= g["seconds"].max():
            return None
        out[m] = _r(float(np.exp(np.interp(np.log(target), np.log(g["seconds"]), np.log(g["generic_ppl"])))))
    return {"seconds": target, "device": devices.pop(), "generic_ppl": out}


def generic_order_by_seed(scale: str, seeds: str | list[int], progress: bool = True) -> pd.DataFrame:
    """Finding 3 again for each pretraining seed (comma-separated, or a list): every method of
    `GENERIC_ORDER` pretrained with that seed (read from its cache, or trained: at `default` the four runs
    take about an hour), its generic validation perplexity at the largest budget, the order the methods
    come in and whether it is the paper's. An empty `seeds` gives an empty table."""
    rows = []
    for seed in parse_list(seeds, int, "order_seeds"):
        ppl = {}
        for m in GENERIC_ORDER:
            largest = pick_checkpoint(lab_methods.pretrain(m, scale, seed=seed, progress=progress), None)
            ppl[m] = math.exp(largest["valid_loss"])
        ranked = sorted(ppl, key=ppl.get)
        rows.append({"seed": seed, **ppl, "order": " < ".join(ranked), "paper_order": ranked == list(GENERIC_ORDER)})
    return pd.DataFrame(rows, columns=["seed", *GENERIC_ORDER, "order", "paper_order"]).set_index("seed")


def seed_metrics(by_seed: pd.DataFrame) -> dict:
    """`generic_order_by_seed` for a metrics file: per seed, each method's perplexity, the order and
    whether it is the paper's."""
    return {str(seed): {"generic_ppl": {m: _r(r[m]) for m in GENERIC_ORDER}, "order": r["order"],
                        "paper_order": bool(r["paper_order"])} for seed, r in by_seed.iterrows()}


PAPER_FINDING4 = {"smallest_set": "0.7-1 points", "largest_set": "0.1-0.2 points",
                  "at": "at 400 GPU-hours of pretraining"}
"""The paper's gains of SLM-mix and SLM-hn over the SLM after fine-tuning, printed beside the lab's."""


def finding4(d: _Data) -> Finding:
    f = Finding(4, "After fine-tuning, SLM-mix and SLM-hn beat SLM at equal inference cost; the gain shrinks as the "
                   "domain set grows.",
                "at every set size both have a lower macro perplexity than the SLM (largest budget), and each "
                "one's gain is smaller at the largest set than at the smallest")
    f.missing = d.missing("slm", "slm-mix", "slm-hn")
    gains = {}
    for m in ("slm-mix", "slm-hn"):
        gains[m] = {}
        for n in d.set_sizes:
            a, b = d.final("slm", n), d.final(m, n)
            if a and b:
                gains[m][str(n)] = {"slm": _r(a["ppl_after"]), m: _r(b["ppl_after"]),
                                    "gain": _r(a["ppl_after"] - b["ppl_after"]),
                                    "inference_ratio": _r(b["inference_flops_per_token"] / a["inference_flops_per_token"], 3)}
    f.numbers = gains
    if f.missing:
        return f
    ok = True
    parts = []
    for m, g in gains.items():
        values = [g[str(n)]["gain"] for n in d.set_sizes if str(n) in g]
        ok &= bool(values) and all(v > 0 for v in values) and (len(values) < 2 or values[-1] < values[0])
        parts.append(f"{m} gains " + " / ".join(f"{v:+.2f}" for v in values))
    f.status = HOLDS if ok and len(d.set_sizes) >= 2 else FAILS if not ok else NOT_MEASURED
    f.numbers["paper"] = PAPER_FINDING4
    f.detail = "Perplexity points over the SLM, by set size " + \
        "/".join(f"{n:,}" for n in d.set_sizes) + ": " + "; ".join(parts) + \
        f" (the paper: {PAPER_FINDING4['smallest_set']} at its smallest set, {PAPER_FINDING4['largest_set']} at " \
        f"its largest, {PAPER_FINDING4['at']})."
    return f


def _costs_to_reach(curve: pd.DataFrame, target: float, n_domains: np.ndarray) -> np.ndarray | None:
    """For each count n, the cheapest total cost (pretraining + n x specialization) of a point at or
    below `target` perplexity; None if no point reaches it."""
    ok = curve[curve["ppl_after"] <= target * (1 + 1e-9)]
    if ok.empty:
        return None
    return (ok["pretrain_flops"].to_numpy()[:, None]
            + np.outer(ok["specialize_flops"].to_numpy(), n_domains)).min(axis=0)


def _cost_to_reach(curve: pd.DataFrame, target: float, n_domains: int) -> float | None:
    costs = _costs_to_reach(curve, target, np.array([n_domains]))
    return None if costs is None else float(costs[0])


def _break_even(own: pd.DataFrame, rival: pd.DataFrame, target: float, most: int = 10_000) -> int | None:
    """Fewest domains from which `rival` reaches `target` perplexity for less total cost than `own`
    (each at its cheapest point for that many domains), or None if not up to `most`."""
    n = np.arange(1, most + 1)
    a, b = _costs_to_reach(own, target, n), _costs_to_reach(rival, target, n)
    if a is None or b is None or not (b <= a).any():
        return None
    return int(n[np.argmax(b <= a)])


def finding5(d: _Data) -> Finding:
    f = Finding(5, "SLM-is is the best small model after specialization, but its cost is paid per domain, so over "
                   "many domains SLM-hn/SLM-mix win on total cost.",
                "(a) where SLM-is ran, its macro perplexity (full specialization budget) is below every other small "
                "model's at the largest budget; (b) to reach the perplexity both can reach, SLM-hn or SLM-mix "
                f"costs less in total than SLM-is for {DOMAIN_COUNTS[-1]} domains")
    rivals = [m for m in ("slm-hn", "slm-mix") if d.has(m)]
    f.missing = d.missing("slm-is") + ([] if rivals else ["slm-hn", "slm-mix"])
    if f.missing:
        return f
    best, beaten = {}, True
    for n in d.set_sizes:
        p = d.final("slm-is", n)
        if p is None:
            continue
        others = {m: q["ppl_after"] for m in SMALL if m != "slm-is" and (q := d.final(m, n))}
        best[str(n)] = {"slm-is": _r(p["ppl_after"]), **{m: _r(v) for m, v in others.items()}}
        beaten &= all(p["ppl_after"] < v for v in others.values())
    n = min(int(k) for k in best)
    is_curve = d.curve("slm-is", n)
    totals = {}
    for m in rivals:
        curve = d.curve(m, n)
        target = max(is_curve["ppl_after"].min(), curve["ppl_after"].min())
        totals[m] = {"target_ppl": _r(target), **{
            str(k): {"slm-is": _cost_to_reach(is_curve, target, k), m: _cost_to_reach(curve, target, k)}
            for k in DOMAIN_COUNTS}}
        # Domains from which the rival is cheaper at that perplexity: its pretraining is shared, SLM-is's
        # cost is paid again for every domain.
        totals[m]["break_even_domains"] = _break_even(is_curve, curve, target)
    cheaper = any(t[str(DOMAIN_COUNTS[-1])][m] is not None and t[str(DOMAIN_COUNTS[-1])]["slm-is"] is not None
                  and t[str(DOMAIN_COUNTS[-1])][m] < t[str(DOMAIN_COUNTS[-1])]["slm-is"] for m, t in totals.items())
    f.numbers = {"ppl_after": best, "total_cost": totals, "set_tokens": n}
    f.status = HOLDS if beaten and cheaper else FAILS
    f.detail = (f"(a) SLM-is {'is' if beaten else 'is not'} the best small model ("
                + ", ".join(f"set {int(k):,}: {v['slm-is']:.1f} against {min(x for m, x in v.items() if m != 'slm-is'):.1f}"
                            " for the best other" for k, v in best.items() if len(v) > 1) + ")"
                + f"; (b) for {DOMAIN_COUNTS[-1]} domains "
                + ", ".join(f"{m} {'is' if (c := t[str(DOMAIN_COUNTS[-1])])[m] is not None and c['slm-is'] is not None and c[m] < c['slm-is'] else 'is not'} "
                            f"cheaper (break-even at {t['break_even_domains']} domains)" for m, t in totals.items()) + ".")
    return f


def finding6(d: _Data) -> Finding:
    f = Finding(6, "Distillation only beats SLM with a heavily pretrained teacher, and loses to SLM-hn/SLM-mix once "
                   "teacher cost is counted.",
                "at every set size SLM-d (its teacher at the LLM's largest budget, pretraining = student + teacher) "
                "has a macro perplexity no better than the best of SLM-hn/SLM-mix at their largest budget, "
                "which costs less pretraining; whether it beats the SLM is reported")
    rivals = [m for m in ("slm-hn", "slm-mix") if d.has(m)]
    f.missing = d.missing("slm-d", "slm") + ([] if rivals else ["slm-hn", "slm-mix"])
    if f.missing:
        return f
    loses, beats_slm = True, {}
    for n in d.set_sizes:
        p, s = d.final("slm-d", n), d.final("slm", n)
        others = {m: q for m in rivals if (q := d.final(m, n))}
        if not (p and s and others):
            continue
        best = min(others.values(), key=lambda q: q["ppl_after"])
        f.numbers[str(n)] = {"slm-d": _r(p["ppl_after"]), "slm": _r(s["ppl_after"]),
                             best["method"]: _r(best["ppl_after"]), "slm-d_pretrain_flops": p["pretrain_flops"],
                             "rival_pretrain_flops": best["pretrain_flops"]}
        beats_slm[str(n)] = p["ppl_after"] < s["ppl_after"]
        loses &= p["ppl_after"] >= best["ppl_after"] and p["pretrain_flops"] > best["pretrain_flops"]
    if not beats_slm:
        f.missing = ["no set size with both"]
        return f
    f.status = HOLDS if loses else FAILS
    f.detail = "By set size: " + "; ".join(
        f"{n}: SLM-d {v['slm-d']:.1f} vs SLM {v['slm']:.1f} vs "
        + ", ".join(f"{k} {x:.1f}" for k, x in v.items() if k in rivals) for n, v in f.numbers.items()) + "."
    return f


def finding7(d: _Data) -> Finding:
    f = Finding(7, "Mixtures and hyper-networks do not help on domains whose cluster histogram has high entropy.",
                "over domains, the gain over the SLM (log-perplexity difference after fine-tuning, mean over set sizes, "
                "largest budget) is smaller on the higher-entropy half of the domains than on the lower half")
    rivals = [m for m in ("slm-mix", "slm-hn") if d.has(m)]
    f.missing = d.missing("slm") + ([] if rivals else ["slm-mix", "slm-hn"])
    if f.missing:
        return f
    ok = True
    for m in rivals:
        rows = []
        for n in d.set_sizes:
            a, b = d.domain_rows("slm", n), d.domain_rows(m, n)
            for dom in a.index.intersection(b.index):
                h = b.loc[dom, "histogram_entropy"]
                if h is not None and np.isfinite(h):
                    rows.append({"domain": dom, "entropy": float(h),
                                 "gain": float(np.log(a.loc[dom, "ppl_after"]) - np.log(b.loc[dom, "ppl_after"]))})
        if not rows:
            continue
        g = pd.DataFrame(rows).groupby("domain").mean()
        if len(g) < 4:
            continue
        high = g["entropy"] > g["entropy"].median()
        rho = stats.spearmanr(g["entropy"], g["gain"]).statistic
        f.numbers[m] = {"gain_high_entropy": _r(g.loc[high, "gain"].mean(), 4),
                        "gain_low_entropy": _r(g.loc[~high, "gain"].mean(), 4), "spearman": _r(rho, 3),
                        "per_domain": {dom: {"entropy": _r(r.entropy, 3), "gain": _r(r.gain, 4)} for dom, r in g.iterrows()}}
        ok &= f.numbers[m]["gain_high_entropy"] < f.numbers[m]["gain_low_entropy"]
    if not f.numbers:
        f.missing = ["fewer than four domains with cluster histograms"]
        return f
    f.status = HOLDS if ok else FAILS
    f.detail = "; ".join(f"{m}: gain {v['gain_low_entropy']:+.3f} nats on low-entropy domains, "
                         f"{v['gain_high_entropy']:+.3f} on high-entropy ones (Spearman {v['spearman']:+.2f})"
                         for m, v in f.numbers.items()) + "."
    return f


def finding8(d: _Data) -> Finding:
    from .decisions import recommend

    f = Finding(8, "Decision rule: large inference budget -> large model; small inference budget and large "
                   "specialization budget -> importance sampling; both small -> hyper-network or mixture.",
                "on the middle and large sets (the paper's rule is about large budgets; on its smallest set its "
                "own SLM-is matches the LLM), the explorer's best method under the budgets (largest pretraining, "
                "one domain) is the LLM with an LLM-sized inference budget and every specialization affordable, "
                "SLM-is with an SLM-sized inference budget and SLM-is's specialization affordable, and SLM-hn or "
                "SLM-mix with an SLM-sized inference budget and only a fine-tuning affordable")
    rivals = [m for m in ("slm-hn", "slm-mix") if d.has(m)]
    f.missing = d.missing("llm", "slm-is") + ([] if rivals else ["slm-hn", "slm-mix"])
    if f.missing:
        return f
    is_sets = sorted({int(x) for x in d.points.loc[d.points["method"] == "slm-is", "set_tokens"]})
    judged = [n for n in is_sets if n > min(d.set_sizes)]
    ok = True
    for n in is_sets:
        verdict = _decision_rule(d, n, rivals, recommend)
        f.numbers[str(n)] = verdict
        if n in judged:
            ok &= all(v["best"] in v["expected"] for v in verdict.values())
    if not judged:
        f.missing = ["slm-is on the middle or large set"]
        f.detail = (f"SLM-is ran on the smallest set only ({is_sets[0]:,} tokens), where the paper's rule does not "
                    "apply: run the study with `--is-sets` covering the larger sets.")
        return f
    f.status = HOLDS if ok else FAILS
    f.detail = " ".join(f"Set {n}: " + "; ".join(f"{k}: {v['best']} ({v['ppl']})" for k, v in f.numbers[str(n)].items())
                        + ("." if int(n) in judged else " (smallest set, not judged).") for n in f.numbers)
    return f


def _decision_rule(d: _Data, n: int, rivals: list[str], recommend) -> dict:
    """The explorer's best method in the rule's three budget cells at set size `n`."""
    pts = d.points[d.points["set_tokens"] == n]
    small_inf = float(pts.loc[pts["method"] == "slm", "inference_flops_per_token"].max()
                      if d.has("slm") else pts.loc[pts["method"].isin(rivals), "inference_flops_per_token"].max())
    large_inf = float(pts["inference_flops_per_token"].max())
    pretrain = float(pts["pretrain_flops"].max())
    large_spec = float(pts["specialize_flops"].max())
    # Small: enough for any fine-tuning from a pretrained small model, not for SLM-is's resampled training.
    finetunes = pts[pts["method"].isin(["slm", *rivals]) & (pts["fraction"] == 1.0)]["specialize_flops"]
    small_spec = float(finetunes.max())
    cells = {"large inference": (large_inf, large_spec, {"llm"}),
             "small inference, large specialization": (small_inf, large_spec, {"slm-is"}),
             "small inference, small specialization": (small_inf, small_spec, set(rivals))}
    out = {}
    for name, (inf, spec, expected) in cells.items():
        r = recommend(d.points, pretrain_budget=pretrain, spec_budget=spec, inference_budget=inf, set_tokens=n)
        out[name] = {"inference_budget": inf, "spec_budget": spec, "best": r["method"] if r else None,
                     "ppl": _r(r["ppl"]) if r else None, "expected": sorted(expected)}
    return out


FINDINGS = (finding1, finding2, finding3, finding4, finding5, finding6, finding7, finding8)


def compute_findings(study: StudyResults) -> list[Finding]:
    data = _Data(study)
    return [fn(data) for fn in FINDINGS]


def findings_table(findings: list[Finding]) -> pd.DataFrame:
    return pd.DataFrame([{"finding": f.number, "status": f.status, "claim": f.claim, "measured": f.detail,
                          "missing": ", ".join(f.missing)} for f in findings]).set_index("finding")


def table2(pretrain: pd.DataFrame) -> pd.DataFrame:
    """The paper's Table 2 (A100 GPU-hours per billion training tokens: SLM 2.2, SLM-pn 3.6, LLM 7.7) as
    measured here: per pretrained model, device-hours per billion tokens over its whole run, the ratio to the
    SLM's, and the device."""
    last = pretrain.sort_values("pretrain_flops").groupby("method").tail(1)
    last = last[last["pretrain_tokens"] > 0]
    table = pd.DataFrame({"method": last["method"],
                          "hours_per_billion_tokens": last["pretrain_hours"] / last["pretrain_tokens"] * 1e9,
                          "device": last["device"]}).set_index("method")
    if "slm" in table.index:
        table.insert(1, "ratio_to_slm", table["hours_per_billion_tokens"] / table.loc["slm", "hours_per_billion_tokens"])
    return table


def _interpolate(x: np.ndarray, y: np.ndarray, at: float, log_y: bool = True) -> float:
    """`y` at cost `at`, linear in log cost (and log `y`), never extrapolated: NaN outside the costs
    measured (a single point counts only where it sits). Costs all zero: the best `y` (no pretraining)."""
    if len(x) == 0:
        return np.nan
    if (x == 0).all():
        return float(np.min(y))
    keep = x > 0
    lx, ly, lc = np.log(x[keep]), np.log(y[keep]) if log_y else y[keep], math.log(at)
    if not lx[0] - 0.05 <= lc <= lx[-1] + 0.05:
        return np.nan
    value = float(np.interp(lc, lx, ly))
    return math.exp(value) if log_y else value


def table8(points: pd.DataFrame, pretrain: pd.DataFrame | None = None, costs: list[float] | None = None,
           cost: str = "flops") -> pd.DataFrame:
    """The paper's Table 8: per pretraining cost and method, the optimizer steps of its pretraining, its
    generic validation perplexity, its macro perplexity before fine-tuning (smallest set) and after
    fine-tuning on each set size. Values are interpolated (linearly in log cost and log perplexity,
    never extrapolated) at fixed pretraining costs (`cost`: "flops" or "hours", measured device-hours),
    by default the SLM's checkpoints. Methods without pretraining (SLM-is, SLM-nopt) take their best
    value at every cost; a method measured at one cost fills the row it sits in."""
    if points.empty:
        return pd.DataFrame()
    x = f"pretrain_{cost}"
    pretrain = pretrain if pretrain is not None else pd.DataFrame(columns=["method", x, "generic_ppl", "steps"])
    shared = points[points["pretrain_flops"] > 0]
    if costs is None:
        ref = shared[shared["method"] == "slm"] if (shared["method"] == "slm").any() else shared
        costs = sorted({float(c) for c in ref[x].dropna()})
    smallest = points["set_tokens"].min()
    rows = []
    for method, g in points.groupby("method"):
        pre = pretrain[pretrain["method"] == method].dropna(subset=[x]).sort_values(x)
        for c in costs:
            steps = _interpolate(pre[x].to_numpy(float), pre["steps"].to_numpy(float), c, log_y=False)
            row = {"cost": c, "method": method, "steps": round(steps) if math.isfinite(steps) else steps,
                   "generic": _interpolate(pre[x].to_numpy(float), pre["generic_ppl"].to_numpy(float), c)}
            for column, n, y in [("before", smallest, "ppl_before")] + \
                    [(f"after {n:,}", n, "ppl_after") for n in sorted(points["set_tokens"].unique())]:
                at = g[g["set_tokens"] == n].dropna(subset=[x]).sort_values(x)
                row[column] = _interpolate(at[x].to_numpy(float), at[y].to_numpy(float), c)
            rows.append(row)
    table = pd.DataFrame(rows).set_index(["cost", "method"]).sort_index()
    table.index = table.index.set_names([f"pretraining cost ({'FLOPs' if cost == 'flops' else 'device-hours'})",
                                         "method"])
    return table


def metrics(study: StudyResults, findings: list[Finding], cost: str = "flops",
            by_seed: pd.DataFrame | None = None) -> dict:
    """Notebook 07's metrics file: each finding's verdict and numbers, the macro perplexities per
    method and set size (largest budget), generic perplexities, each method's status, Table 8 on the
    `cost` axis, the devices the measured times come from, and finding 3's order for each seed of
    `by_seed` (`generic_order_by_seed`; empty when no seed was asked for)."""
    points = macro_points(study.results)
    t8 = table8(points, study.pretrain, cost=cost)
    t2 = table2(study.pretrain)
    final = points[points["fraction"] == points.groupby(["method", "set_tokens"])["fraction"].transform("max")]
    macro = {m: {str(int(r.set_tokens)): {"before": float(r.ppl_before), "after": float(r.ppl_after),
                                          "pretrain_flops": float(r.pretrain_flops),
                                          "specialize_flops": float(r.specialize_flops)}
                 for r in g.itertuples()} for m, g in final.groupby("method")}
    pre = study.pretrain.sort_values("pretrain_flops")
    return {
        "scale": study.scale,
        "revision": revision(),
        "machine": machine(),
        "findings": {str(f.number): {"status": f.status, "detail": f.detail, "missing": f.missing,
                                     "numbers": f.numbers} for f in findings},
        "macro_ppl": macro,
        "generic_ppl": {m: g["generic_ppl"].tolist() for m, g in pre.groupby("method")},
        "pretrain_flops": {m: g["pretrain_flops"].tolist() for m, g in pre.groupby("method")},
        "methods": study.methods,
        "domains": study.domains,
        "set_sizes": study.set_sizes,
        "per_domain": {f"{r.method}/{r.domain}/{r.set_tokens}": {"before": float(r.ppl_before),
                                                                 "after": float(r.ppl_after)}
                       for r in study.results[study.results["fraction"].fillna(1.0) == 1.0].itertuples()},
        "cost_axis": cost,
        "devices": devices(points["device"], study.pretrain["device"]),
        "table8": [{"cost": c, "method": m, **{k: (None if pd.isna(v) else float(v)) for k, v in row.items()}}
                   for (c, m), row in t8.iterrows()],
        "table2": {m: {"hours_per_billion_tokens": float(r["hours_per_billion_tokens"]), "device": r["device"]}
                   for m, r in t2.iterrows()},
        "generic_order_by_seed": {} if by_seed is None else seed_metrics(by_seed),
    }


PUBLISHED_KEYS = {"scale": str, "revision": str, "machine": dict, "findings": dict, "macro_ppl": dict,
                  "generic_ppl": dict, "methods": dict, "domains": list, "set_sizes": list, "devices": list,
                  "table8": list, "table2": dict, "generic_order_by_seed": dict}
"""What a published findings file (`results/<scale>/findings.json`) holds, with the type of each."""


def check_published(data: dict, source: str) -> None:
    """Refuse a findings file that lacks what a reader of `results/` relies on: every key of
    `PUBLISHED_KEYS`, every finding of `FINDINGS` with a status among `STATUSES`, and a revision."""
    if not isinstance(data, dict):
        raise LabError(f"{source}: not a findings file (a JSON object written by notebook 07)")
    wrong = [f"{k} ({t.__name__})" for k, t in PUBLISHED_KEYS.items() if not isinstance(data.get(k), t)]
    if wrong:
        raise LabError(f"{source}: missing or mistyped {', '.join(wrong)}; run notebook 07 again "
                       "(`python -m lab notebooks --only 07`) to write a complete one")
    found = data["findings"]
    bad = [n for n in map(str, range(1, len(FINDINGS) + 1)) if not isinstance(found.get(n), dict)
           or found[n].get("status") not in STATUSES]
    if bad:
        raise LabError(f"{source}: findings {', '.join(bad)} missing or without a status among {', '.join(STATUSES)}")
