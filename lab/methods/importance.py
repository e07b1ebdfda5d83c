"""SLM-is: a small model trained from scratch, per domain, on generic text resampled to look like it.

Recipe (the paper's section 3.3):

1. describe the domain's training set by its cluster histogram at k clusters
   of the generic windows (`lab.data.cluster`);
2. draw generic windows with probability p_domain(c) / p_generic(c), c the
   window's cluster (`lab.training.importance`), so the clusters of what the model
   reads follow the domain's while the text stays plentiful;
3. train an SLM from scratch on that stream for `spec_flops` (default: a quarter
   of the SLM's pretraining budget, the paper's 130 of 530 GPU-hours; `Scale.importance_budget`);
4. fine-tune it on the domain set like every other method.

Nothing is shared between domains, so *all* of it is specialization cost:
a row has `pretrain_flops` 0 and `specialize_flops` = resampled training +
fine-tuning. One resampled run writes a checkpoint at each share of its budget
(`TrainConfig.checkpoint_fractions`, the cooldown branches of `lab.training.train`), so
a curve over specialization budgets costs one run per domain (`curve`).

`weights="top"` puts all the weight on the domain's most frequent cluster
instead: the model then reads only that cluster, like one expert of a mixture
(the paper's Figure 8 compares the two).

`importance="dsir"` replaces steps 1-2 with DSIR (`lab.data.dsir`, the
`data-selection` package): generic windows are chosen by the log-likelihood
ratio of their hashed unigrams and bigrams under the domain set and the generic
corpus, as many distinct windows as the run reads in its budget (at most
`lab.data.dsir.MAX_SHARE` of them), and the run draws uniformly among them.
Steps 3-4, the budget and the row's costs are the same; the row adds DSIR's own
measure of the selection, the hashed n-gram KL from the domain to the selected
windows against that to the whole generic corpus. Choosing costs CPU time for
hashing, not model FLOPs, so it is not in `specialize_flops` (nor is clustering).

Choice of k. The paper used k=1024. Here `Scale.importance_k` is 16 at `default`
(4 at `tiny`, whose corpus is small; 1024 at `paper`). A finer k follows the
domain more closely but concentrates the draw on fewer generic windows:
`effective_windows` (Kish's effective sample size) is 2-29k windows at k=16
and 1-25k at k=256 against the 140k windows a full SLM budget draws, and an
8k-token set (62 windows) leaves most of 64 or 256 clusters empty. Measured
at `default` (64k-token sets, an eighth of the SLM budget, test perplexity
after fine-tuning): medicine 96 / 65 / 84 / 85 and legal 108 / 65 / 68 / 67 at
k = 4 / 16 / 64 / 256. Notebook 03 repeats it (`lab.analysis.importance.k_ablation`).

Edge cases. A domain set of fewer windows than k gives a histogram that is
mostly sampling noise: it is used as it is, with `lab.data.cluster`'s warning, and
the row says `sparse`. Domain clusters that no generic window falls in are
dropped and the rest renormalised (`uncovered_share` in the row; a warning).
Clusters the generic corpus barely holds get large weights, and their few
windows are drawn again and again: the row's `effective_epochs` says how many
times the run read each effective window, with a warning above
`REPEAT_WARNING`.
A set shorter than one window raises a LabError. SLM-is has no pretraining,
so `pretrain_flops` (which picks a pretraining checkpoint for other methods)
is ignored.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from ..data import dsir
from ..data.cluster import Clustering, cluster_corpus, corpus_decode, default_ks, entropy
from ..data.corpus import GENERIC, Domain, load_corpus
from ..data.tokens import BatchSampler, window_starts
from ..device import device_name, pick_device
from ..errors import LabError
from ..nn import costs
from ..nn.checkpoints import load_model, read_meta
from ..nn.model import model_config
from ..paths import scale_dir
from ..scales import Scale, get_scale
from ..training.evaluate import evaluate
from ..training.finetune import finetune, finetune_config
from ..training.importance import ImportanceWeights, importance_weights
from ..training.train import budget_steps, checkpoint_name, pretrain, train_config
from .base import (LORA_RANK, LR_SCALE, Layout, Method, Option, Step, at_least, finetune_flops, lora_rank, positive,
                   priced)
from .common import checkpoint_rows, domain_data
from .runs import file_hash
from .store import ResultRow, ResultStore, cached_run, data_hash, stable_hash

WEIGHTS = ("histogram", "top")
"""Clusters behind the weights when `k` is not given (see the module notes)."""
IMPORTANCE = ("clusters", "dsir")
"""How the generic stream is resampled: the paper's cluster histograms, or DSIR's hashed n-grams."""
REPEAT_WARNING = 10
"""Warn when a run would read each effective window more times than this."""


@dataclass
class Resampling:
    """What an SLM-is run reads: generic windows and the probability of drawing each."""
    domain: str
    set_tokens: int
    k: int
    weights: str
    histogram: np.ndarray
    """The domain set's cluster histogram at k."""
    importance: ImportanceWeights
    starts: np.ndarray
    """Offsets of the generic windows that can be drawn (probability > 0)."""
    probabilities: np.ndarray
    generic: np.ndarray
    context: int
    clustering_key: dict
    importance_kind = "clusters"
    spread = "a smaller k spreads the draw over more windows"

    @property
    def label(self) -> str:
        """What names the run's checkpoint folder."""
        return f"k{self.k}-{self.weights}"

    @property
    def draw_key(self) -> dict:
        """What decides the stream beyond the draw itself (the clustering)."""
        return self.clustering_key

    @property
    def effective_windows(self) -> float:
        return self.importance.effective_windows

    def row_key(self) -> dict:
        return {"k": self.k, "weights": self.weights}

    @property
    def top_cluster(self) -> int:
        return int(np.argmax(self.histogram))

    @property
    def sparse(self) -> bool:
        """Fewer domain windows than clusters: the histogram is mostly sampling noise."""
        return len(window_starts(self.set_tokens, self.context)) < self.k

    def sampler(self, batch_size: int, seed: int) -> BatchSampler:
        return BatchSampler(self.generic, batch_size, self.context, seed, starts=self.starts,
                            weights=self.probabilities)

    def summary(self) -> dict:
        """The row fields that describe the resampled stream."""
        iw = self.importance
        return {"importance": "clusters", "k": self.k, "weights": self.weights, "top_cluster": self.top_cluster,
                "top_share": float(self.histogram.max()), "domain_entropy_nats": entropy(self.histogram),
                "effective_windows": iw.effective_windows, "drawable_windows": int(len(self.starts)),
                "uncovered_share": iw.uncovered_share, "sparse": self.sparse}


@dataclass
class DsirResampling:
    """What an SLM-is run reads with `importance="dsir"`: the generic windows DSIR selected, drawn uniformly."""
    domain: str
    set_tokens: int
    selection: dsir.Selection
    generic: np.ndarray
    context: int
    importance_kind = "dsir"
    label = "dsir"
    spread = "a smaller budget, or more generic text, repeats them less"

    @property
    def starts(self) -> np.ndarray:
        return self.selection.starts

    @property
    def probabilities(self) -> np.ndarray:
        return np.full(len(self.starts), 1.0 / len(self.starts))

    @property
    def draw_key(self) -> dict:
        return self.selection.key

    @property
    def effective_windows(self) -> float:
        return float(len(self.starts))

    def row_key(self) -> dict:
        return {"importance": "dsir"}

    def sampler(self, batch_size: int, seed: int) -> BatchSampler:
        return BatchSampler(self.generic, batch_size, self.context, seed, starts=self.starts)

    def summary(self) -> dict:
        return {"importance": "dsir", "effective_windows": self.effective_windows,
                "drawable_windows": int(len(self.starts)), **self.selection.summary()}


def default_k(scale: str | Scale) -> int:
    return get_scale(scale).importance_k


def clustering_for(corpus, k: int) -> Clustering:
    """The corpus's clusters at k; the scale's other k are asked for too, so one cache serves all."""
    return cluster_corpus(corpus, ks=sorted(set(default_ks(corpus.scale.name)) | {k})).subset([k])


def resampling(domain: str, set_tokens: int, scale: str, *, k: int | None = None,
               weights: str = "histogram") -> Resampling:
    """The importance-sampled generic stream for a domain's training set of `set_tokens` tokens."""
    if weights not in WEIGHTS:
        raise LabError(f"unknown SLM-is weights {weights!r}: choose 'histogram' (the domain's cluster "
                       "histogram) or 'top' (its most frequent cluster only)")
    k = default_k(scale) if k is None else int(k)
    corpus = load_corpus(scale)
    dom, train = domain_data(domain, set_tokens, scale)
    clustering = clustering_for(corpus, k)
    hist = clustering.histogram(train, corpus_decode(corpus), k, name=dom.name)
    target = hist if weights == "histogram" else np.eye(k)[int(np.argmax(hist))]
    iw = importance_weights(clustering.generic_ids[k], target)
    if iw.uncovered_share > 0:
        warnings.warn(f"{dom.name}: {iw.uncovered_share:.1%} of its windows lie in clusters "
                      f"{iw.uncovered.tolist()} that hold no generic window; that mass is dropped and the rest "
                      "renormalised", stacklevel=2)
    generic = corpus.tokens(GENERIC, "train")
    drawable = iw.probabilities > 0
    return Resampling(domain=dom.name, set_tokens=len(train), k=k, weights=weights, histogram=hist,
                      importance=iw, starts=window_starts(len(generic), corpus.scale.context)[drawable],
                      probabilities=iw.probabilities[drawable], generic=generic, context=corpus.scale.context,
                      clustering_key=clustering.key)


def dsir_resampling(domain: str, set_tokens: int, scale: str, *, spec_flops: float | None = None,
                    seed: int = 0) -> DsirResampling:
    """The generic windows DSIR selects for a domain's training set: as many as a run of `spec_flops`
    reads (default: `default_spec_flops`), at most `lab.data.dsir.MAX_SHARE` of them."""
    corpus = load_corpus(scale)
    dom, train = domain_data(domain, set_tokens, scale)
    generic = corpus.tokens(GENERIC, "train")
    cfg = model_config("slm", scale)
    reads = spec_budgets(scale, spec_flops)[-1] / costs.train_flops_per_token(cfg) / cfg.context
    available = len(window_starts(len(generic), cfg.context))
    n_select = max(1, min(round(reads), int(dsir.MAX_SHARE * available)))
    selection = dsir.select(generic, train, cfg.context, corpus_decode(corpus), n_select, corpus.root / "dsir",
                            seed=seed, name=dom.name)
    return DsirResampling(domain=dom.name, set_tokens=len(train), selection=selection, generic=generic,
                          context=cfg.context)


def stream(domain: str, set_tokens: int, scale: str, *, importance: str = "clusters", k: int | None = None,
           weights: str = "histogram", spec_flops: float | None = None,
           seed: int = 0) -> Resampling | DsirResampling:
    """The resampled generic stream of one SLM-is run, by clusters (`resampling`) or by DSIR (`dsir_resampling`)."""
    if importance not in IMPORTANCE:
        raise LabError(f"slm-is: unknown importance {importance!r}: choose 'clusters' (cluster histograms, the "
                       "paper's) or 'dsir' (hashed n-gram weights)")
    if importance == "clusters":
        return resampling(domain, set_tokens, scale, k=k, weights=weights)
    if k is not None or weights != "histogram":
        raise LabError("slm-is: k and weights set the cluster resampling; importance 'dsir' selects by hashed "
                       "n-grams and takes neither")
    return dsir_resampling(domain, set_tokens, scale, spec_flops=spec_flops, seed=seed)


def run_dir(rs: Resampling | DsirResampling, scale: str, seed: int) -> Path:
    """Checkpoint folder of one resampled run: named by the domain, set, k and weights, and keyed by
    everything that decides its batches and weights (so two domains never share a run)."""
    cfg, tc = model_config("slm", scale), replace(train_config("slm", scale), seed=seed)
    key = stable_hash({"model": asdict(cfg), "train": tc.run_fields(), "generic": rs.draw_key,
                       "draw": data_hash(rs.starts, rs.probabilities)})
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", rs.domain)
    return scale_dir(scale) / "checkpoints" / f"slm-is-{name}-{rs.set_tokens}-{rs.label}-{key[:10]}"


def default_spec_flops(scale: str | Scale) -> float:
    """SLM-is's specialization budget unless one is given: the scale's share of the SLM's largest
    pretraining budget (`Scale.importance_budget`, the paper's 0.25)."""
    return get_scale(scale).importance_budget * train_config("slm", scale).pretrain_flops


def spec_budgets(scale: str, spec_flops: float | None) -> list[float]:
    """The run's checkpoint budgets: the SLM's checkpoint fractions of `spec_flops`
    (default: `default_spec_flops`)."""
    tc = train_config("slm", scale)
    spec_flops = default_spec_flops(scale) if spec_flops is None else float(spec_flops)
    if not spec_flops > 0:
        raise LabError(f"spec_flops must be a positive number of FLOPs, got {spec_flops}")
    return [f * spec_flops for f in tc.checkpoint_fractions]


def train(domain: str, set_tokens: int, scale: str, *, spec_flops: float | None = None, k: int | None = None,
          weights: str = "histogram", importance: str = "clusters", seed: int = 0, progress: bool = True,
          callbacks=None) -> list[dict]:
    """Train the SLM from scratch on the resampled stream, with a checkpoint at each share of
    `spec_flops`; one row per checkpoint (checkpoint, pretrain_flops and pretrain_tokens of
    *this* run, valid_loss on the domain's validation set, seconds). Cached: checkpoints
    already written are reused, and larger budgets continue the same run. `callbacks` are
    the trainer's (`lab.training.train.Trainer.add_callback`)."""
    rs = stream(domain, set_tokens, scale, importance=importance, k=k, weights=weights, spec_flops=spec_flops,
                seed=seed)
    dom, _ = domain_data(domain, set_tokens, scale)
    return _train(rs, dom, scale, spec_budgets(scale, spec_flops), seed, progress, callbacks)


def _train(rs: Resampling | DsirResampling, dom: Domain, scale: str, budgets: list[float], seed: int, progress: bool,
           callbacks=None) -> list[dict]:
    # The live loss is the domain's validation loss: what the resampling aims at.
    cfg, tc = model_config("slm", scale), replace(train_config("slm", scale), seed=seed)
    out = run_dir(rs, scale, seed)
    if any(not (out / checkpoint_name(step) / "meta.json").exists() for step in budget_steps(cfg, tc, flops=budgets)):
        check_repeats(rs, max(budgets), scale)  # said before training, not on every cached call
    paths = pretrain(cfg, tc, rs.generic, out, budget_flops=budgets, valid=dom.validation,
                     sampler_factory=lambda: rs.sampler(tc.batch_size, seed), callbacks=callbacks,
                     progress=progress)
    return checkpoint_rows(paths)


def check_repeats(rs: Resampling | DsirResampling, flops: float, scale: str) -> float:
    """How many times a run of `flops` reads each effective window of the stream; warns above `REPEAT_WARNING`."""
    epochs = flops / costs.train_flops_per_token(model_config("slm", scale)) / (rs.effective_windows * rs.context)
    if epochs > REPEAT_WARNING:
        warnings.warn(f"{rs.domain}: the resampled stream ({rs.label}) is worth about "
                      f"{rs.effective_windows:,.0f} distinct windows, and {flops:.3g} FLOPs read each "
                      f"about {epochs:.0f} times; {rs.spread}", stacklevel=3)
    return epochs


def specialize(method: str, domain: str, set_tokens: int, scale: str, *, seed: int = 0,
               pretrain_flops: float | None = None, progress: bool = True, k: int | None = None,
               spec_flops: float | None = None, weights: str = "histogram", importance: str = "clusters",
               lora_rank: int = 0, lr_scale: float = 1.0) -> ResultRow:
    """SLM-is on one domain: train on the resampled generic stream for `spec_flops`, then
    fine-tune. `pretrain_flops` is ignored (SLM-is has no pretraining)."""
    rs = stream(domain, set_tokens, scale, importance=importance, k=k, weights=weights, spec_flops=spec_flops,
                seed=seed)
    dom, train_set = domain_data(domain, set_tokens, scale)
    budgets = spec_budgets(scale, spec_flops)
    # A checkpoint at this budget may already exist (a curve wrote it): no need to plan the others.
    path = run_dir(rs, scale, seed) / checkpoint_name(
        budget_steps(model_config("slm", scale), train_config("slm", scale), flops=[budgets[-1]])[0])
    if not (path / "meta.json").exists():
        path = Path(_train(rs, dom, scale, budgets, seed, progress)[-1]["checkpoint"])
    return _finetune(path, rs, dom, train_set, scale, seed, progress, lora_rank, lr_scale)


def curve(domain: str, set_tokens: int, scale: str, *, spec_flops: float | None = None, k: int | None = None,
          weights: str = "histogram", importance: str = "clusters", seed: int = 0,
          progress: bool = True) -> list[dict]:
    """SLM-is rows at every checkpoint of one resampled run (shares of `spec_flops`): the
    specialization-budget curve for one domain and set size, for the cost of one run."""
    rs = stream(domain, set_tokens, scale, importance=importance, k=k, weights=weights, spec_flops=spec_flops,
                seed=seed)
    dom, train_set = domain_data(domain, set_tokens, scale)
    rows = _train(rs, dom, scale, spec_budgets(scale, spec_flops), seed, progress)
    return [_finetune(Path(r["checkpoint"]), rs, dom, train_set, scale, seed, progress) for r in rows]


def _finetune(checkpoint: Path, rs: Resampling | DsirResampling, dom: Domain, train_set: np.ndarray, scale: str,
              seed: int, progress: bool, lora_rank: int = 0, lr_scale: float = 1.0) -> ResultRow:
    """Fine-tune one checkpoint of a resampled run and store the row, every FLOP counted as specialization.

    (`lab.methods.runs.specialize_run` books the checkpoint's FLOPs as pretraining, shared
    by every domain; here they are this domain's alone.)"""
    meta = read_meta(checkpoint)
    ft = finetune_config("slm", scale, len(train_set), seed=seed, lora_rank=lora_rank, lr_scale=lr_scale)
    key = {"method": "slm-is", "scale": scale, "domain": dom.name, "set_tokens": len(train_set), "seed": seed,
           **rs.row_key(), "checkpoint": file_hash(checkpoint / "model.safetensors"), "finetune": ft.key()}

    def run() -> dict:
        device = pick_device()
        model = load_model(checkpoint, device)
        before = evaluate(model, dom.test)
        model, record = finetune(model, train_set, dom.validation, ft, device=device, progress=progress)
        after = evaluate(model, dom.test)
        return {
            **record.to_dict(), "finetune_seconds": record.seconds, "finetune_flops": record.flops_to_best,
            "pretrain_tokens": 0, "pretrain_flops": 0.0,
            "specialize_tokens": meta["tokens"] + record.tokens_to_best,
            "specialize_flops": meta["flops"] + record.flops_to_best,
            "inference_flops_per_token": costs.inference_flops_per_token(model),
            "seconds": meta["seconds"] + record.seconds, "ppl_before": before.ppl, "ppl_after": after.ppl,
            "device": device_name(device), "checkpoint_path": str(checkpoint),
            "is_flops": meta["flops"], "is_tokens": meta["tokens"], "is_seconds": meta["seconds"],
            "is_valid_loss": meta.get("valid_loss"),
            "effective_epochs": meta["tokens"] / max(rs.effective_windows * rs.context, 1.0),
            **rs.summary(),
        }

    return cached_run(ResultStore.for_scale(scale), key, run,
                      data_hash=data_hash(train_set, dom.validation, dom.test))


class ImportanceSampling(Method):
    """SLM-is trains one model per domain and set, so the study runs it on its `is_sets` only; one
    run writes a checkpoint at every share of its specialization budget, so the curve over that
    budget costs fine-tunings only."""
    name, title, from_scratch = "slm-is", "SLM-is", True
    options = (
        Option("k", int, "clusters used for the importance weights", check=at_least(1)),
        Option("spec_flops", float, "specialization budget for training on the resampled generic corpus (FLOPs)",
               check=positive),
        Option("weights", str, "resample to the domain's whole cluster histogram, or to its top cluster only",
               choices=WEIGHTS, study=False),
        Option("importance", str, "resample the generic corpus by cluster histograms (the paper's) or by DSIR's "
               "hashed n-gram weights", choices=IMPORTANCE),
        LORA_RANK,
        LR_SCALE,
    )

    def specialize(self, domain: str, set_tokens: int, scale: str | Scale, *, seed: int = 0,
                   pretrain_flops: float | None = None, progress: bool = True, **options) -> ResultRow:
        return specialize(self.name, domain, set_tokens, scale, seed=seed, pretrain_flops=pretrain_flops,
                          progress=progress, **options)

    def steps(self, layout: Layout) -> list[Step]:
        opts = self.study_options(layout.options)
        spec = float(opts.pop("spec_flops", default_spec_flops(layout.scale)))
        steps = []
        for n in layout.is_sets:
            for f in sorted(layout.fractions, reverse=True):
                for d in layout.domains:
                    step = Step(self.name, "specialize", d, n, f, f * spec,
                                options=tuple(sorted({**opts, "spec_flops": f * spec}.items())))
                    steps.append(priced(step, self.price(step, layout)))
        return steps

    def price(self, step: Step, layout: Layout) -> float:
        """The fine-tuning, and at the full budget the resampled run itself (a checkpoint at every share)."""
        tc = train_config("slm", layout.scale)
        run = tc.run_flops(step.budget) if step.fraction == 1.0 else 0.0
        return finetune_flops("slm", layout.scale, step.set_tokens, lora_rank=lora_rank(step)) + run
