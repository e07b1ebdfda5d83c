"""SLM-mix: a hard mixture of small experts, one per generic cluster, trained together.

The paper's mixture (Grangier et al. 2024, section 3) is k SLMs, expert i trained
only on the generic windows of k-means cluster i. They are independent models,
so the lab trains them in one process as one `BatchedGPT`: every weight carries
a leading expert dimension and each matrix multiply is a batched one
(`torch.bmm`), so a step of k experts is one pass of the same few kernels a
single SLM runs, each on k times the data. Nothing mixes across experts: the
loss backpropagated is the sum of the experts' own mean losses (so each
expert's gradient is exactly the one it would get alone), gradients are
clipped per expert, and AdamW acts element by element. `tests/test_mixture.py`
checks that a batched expert follows a lone GPT with the same initial weights
on the same batches.

Training (`lab.training.routing.pretrain_mixture`) draws `batch_size` windows from
every expert's cluster at each optimizer step, so at equal FLOPs with the SLM each
of k experts sees 1/k of the SLM's tokens.

At inference a window goes to the expert of its cluster (`route`): the cost of
one SLM. `extract` writes one expert as a plain SLM checkpoint that
`lab.nn.checkpoints.load_model` reads, so a specialized expert is an ordinary SLM.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors import safe_open

from ..errors import LabError
from .checkpoints import WEIGHTS, load_weights, read_meta, save_model, verified
from .model import GPT, GPTConfig, cross_entropy


class BatchedLinear(nn.Module):
    """k independent `nn.Linear` layers: weight [k, out, in], applied to x [k, n, in]."""

    def __init__(self, n_experts: int, d_in: int, d_out: int, bias: bool):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_experts, d_out, d_in))
        self.bias = nn.Parameter(torch.zeros(n_experts, d_out)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.transpose(1, 2)
        return torch.bmm(x, w) if self.bias is None else torch.baddbmm(self.bias[:, None], x, w)


class BatchedLayerNorm(nn.Module):
    """k independent `nn.LayerNorm`s. Their weights are stored flat ([k d], not [k, d]):
    the trainer's optimizer decays matrices only, telling them apart by rank, and a
    norm's scale must stay exempt as it is in a single GPT."""

    def __init__(self, n_experts: int, d: int, bias: bool):
        super().__init__()
        self.n_experts, self.d = n_experts, d
        self.weight = nn.Parameter(torch.ones(n_experts * d))
        self.bias = nn.Parameter(torch.zeros(n_experts * d)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(x, (self.d,)) * self.weight.view(self.n_experts, 1, self.d)
        return y if self.bias is None else y + self.bias.view(self.n_experts, 1, self.d)


class BatchedBlock(nn.Module):
    def __init__(self, cfg: GPTConfig, n_experts: int):
        super().__init__()
        self.n_head = cfg.n_head
        self.dropout = cfg.dropout
        d = cfg.d_model
        # Attribute names follow `lab.nn.model.Block`, so expert e's state dict is every tensor's slice e.
        self.ln1 = BatchedLayerNorm(n_experts, d, cfg.bias)
        self.attn = nn.Module()
        self.attn.qkv = BatchedLinear(n_experts, d, 3 * d, cfg.bias)
        self.attn.proj = BatchedLinear(n_experts, d, d, cfg.bias)
        self.ln2 = BatchedLayerNorm(n_experts, d, cfg.bias)
        self.mlp = nn.Module()
        self.mlp.up = BatchedLinear(n_experts, d, cfg.d_mlp, cfg.bias)
        self.mlp.down = BatchedLinear(n_experts, cfg.d_mlp, d, cfg.bias)

    def forward(self, x: torch.Tensor, batch: int) -> torch.Tensor:
        """x: [k, batch * T, d], each expert's windows flattened."""
        k, n, d = x.shape
        T = n // batch
        drop = self.dropout if self.training else 0.0
        q, kk, v = (self.attn.qkv(self.ln1(x)).view(k * batch, T, 3, self.n_head, d // self.n_head)
                    .permute(2, 0, 3, 1, 4))
        y = F.scaled_dot_product_attention(q, kk, v, is_causal=True, dropout_p=drop)
        x = x + F.dropout(self.attn.proj(y.transpose(1, 2).reshape(k, n, d)), drop, self.training)
        h = self.mlp.down(F.gelu(self.mlp.up(self.ln2(x))))
        return x + F.dropout(h, drop, self.training)


class BatchedGPT(nn.Module):
    """k GPTs of one shape (`config`), stacked; expert e is `expert(e)`.

    Input `idx` is [B, k, T]: window b of expert e at `idx[b, e]`. The batch
    comes first so that the trainer's micro-batches (which split dimension 0)
    split every expert's batch alike. Without targets it returns logits
    [B, k, T, V]; with targets, only the loss (logits None: stacking them is a
    copy training never reads): its value is the experts' mean next-token loss,
    its gradient that of their sum, so each expert learns exactly as it would alone.

    The token and position embeddings are each one `nn.Embedding` of k x V
    (k x context) rows, expert e's token v being row e V + v: a lookup is a
    plain embedding lookup, and the optimizer knows them as embeddings (no
    weight decay). The output projection is tied to the token embedding, as in `GPT`.
    `init=False` leaves the weights unset, for a checkpoint to fill (`load_mixture`).
    """

    def __init__(self, cfg: GPTConfig, n_experts: int, init: bool = True):
        super().__init__()
        if n_experts < 1:
            raise LabError(f"a mixture needs at least one expert, got {n_experts}")
        self.config = cfg
        self.n_experts = n_experts
        # k GPTs drawn one after the other from the global generator, before anything
        # else draws from it: expert e starts as the e-th `GPT(cfg)` made after the
        # same seed, GPT-2's initialisation included.
        experts = [GPT(cfg) for _ in range(n_experts)] if init else []
        self.wte = nn.Embedding(n_experts * cfg.vocab_size, cfg.d_model)
        self.wpe = nn.Embedding(n_experts * cfg.context, cfg.d_model)
        self.blocks = nn.ModuleList(BatchedBlock(cfg, n_experts) for _ in range(cfg.n_layer))
        self.ln_f = BatchedLayerNorm(n_experts, cfg.d_model, cfg.bias)
        for e, model in enumerate(experts):
            self.set_expert(e, model)

    def _slices(self) -> dict[str, tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]]:
        """GPT parameter name -> (stacked tensor, view of it as [k, *GPT shape])."""
        k, cfg = self.n_experts, self.config
        out = {}
        for name, p in self.named_parameters():
            if name == "wte.weight":
                out[name] = (p, lambda t: t.view(k, cfg.vocab_size, cfg.d_model))
            elif name == "wpe.weight":
                out[name] = (p, lambda t: t.view(k, cfg.context, cfg.d_model))
            else:
                out[name] = (p, lambda t: t.view(k, -1) if t.dim() == 1 else t)
        return out

    @torch.no_grad()
    def set_expert(self, e: int, model: GPT) -> None:
        """Copy a GPT's weights into expert slot e."""
        if model.config != self.config:
            raise LabError(f"expert shape {model.config} differs from the mixture's {self.config}")
        source = model.state_dict()
        for name, (p, view) in self._slices().items():
            view(p)[e].copy_(source[name].reshape(view(p)[e].shape))

    @torch.no_grad()
    def expert(self, e: int) -> GPT:
        """Expert e as a plain GPT (a copy of its weights)."""
        if not 0 <= e < self.n_experts:
            raise LabError(f"expert {e} does not exist: the mixture has experts 0..{self.n_experts - 1}")
        device = self.wte.weight.device
        with torch.random.fork_rng(devices=[]):  # a copy must not move the global random stream
            model = GPT(self.config).to(device)
        state = {name: view(p)[e].reshape(model.get_parameter(name).shape).clone()
                 for name, (p, view) in self._slices().items()}
        state["lm_head.weight"] = state["wte.weight"]
        model.load_state_dict(state)
        return model

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        B, k, T = idx.shape
        cfg = self.config
        if k != self.n_experts:
            raise LabError(f"a batch for {k} experts given to a mixture of {self.n_experts}: "
                           "shape it [batch, experts, tokens]")
        if T > cfg.context:
            raise LabError(f"sequence of {T} tokens is longer than the model's context {cfg.context}")
        experts = torch.arange(k, device=idx.device)
        tok = idx.transpose(0, 1) + (experts * cfg.vocab_size)[:, None, None]  # [k, B, T] rows of wte
        pos = torch.arange(T, device=idx.device) + (experts * cfg.context)[:, None]  # [k, T] rows of wpe
        x = self.wte(tok) + self.wpe(pos)[:, None]
        x = F.dropout(x, cfg.dropout, self.training).reshape(k, B * T, cfg.d_model)
        for block in self.blocks:
            x = block(x, B)
        x = self.ln_f(x)
        # The output layer and the loss run expert by expert: over the vocabulary they
        # are a step's largest tensors, and k of them stacked fall out of cache (15-20%
        # fewer tokens/s at the default shape, benchmarks/bench_experts.py).
        head = self.wte.weight.view(k, cfg.vocab_size, cfg.d_model)
        logits = [F.linear(x[e], head[e]) for e in range(k)]
        if targets is None:
            return torch.stack(logits).view(k, B, T, -1).transpose(0, 1), None
        losses = self.expert_losses(logits, targets)
        # The gradient of the sum (each expert's gradient is the one it would get alone);
        # the value of the mean (a loss to read beside an SLM's).
        return None, losses.sum() + (losses.mean() - losses.sum()).detach()

    @staticmethod
    def expert_losses(logits: Sequence[torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
        """Mean next-token loss of each expert, [k], from its logits [B T, V] and targets [B, k, T]."""
        return torch.stack([cross_entropy(out, targets[:, e]) for e, out in enumerate(logits)])

    @torch.no_grad()
    def clip_grad_norm_(self, max_norm: float) -> torch.Tensor:
        """`torch.nn.utils.clip_grad_norm_` for each expert alone; returns the k norms before clipping."""
        grads = [view(p.grad) for p, view in self._slices().values() if p.grad is not None]
        norms = torch.stack([g.pow(2).flatten(1).sum(1) for g in grads]).sum(0).sqrt()
        scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(scale.view(-1, *[1] * (g.dim() - 1)))
        return norms


def experts_in(path: str | Path) -> int:
    """Number of experts in a mixture checkpoint, read from its weights' shapes."""
    meta = read_meta(path)
    with safe_open(str(verified(path, WEIGHTS, meta)), "pt") as f:
        rows = f.get_slice("wte.weight").get_shape()[0]
    return rows // meta["model_config"]["vocab_size"]


def load_mixture(path: str | Path, device: torch.device | str = "cpu") -> BatchedGPT:
    """The mixture of a checkpoint folder written by `pretrain_mixture`."""
    meta = read_meta(path)
    model = BatchedGPT(GPTConfig(**meta["model_config"]), experts_in(path), init=False)
    load_weights(model, path, meta, device)
    return model.to(device)


def extract(mixture_checkpoint: str | Path, expert: int, out: str | Path | None = None) -> Path:
    """Write expert `expert` of a mixture checkpoint as a plain SLM checkpoint folder
    (`model.safetensors` + `meta.json`, read by `lab.nn.checkpoints.load_model`); reused when present.

    Its meta keeps the mixture's costs (`flops`, `tokens`: what pretraining this
    expert's mixture cost) and adds `expert`, `experts` and `expert_tokens`.
    Default folder: `<checkpoint>/expert<e>`.
    """
    mixture_checkpoint = Path(mixture_checkpoint)
    out = Path(out) if out else mixture_checkpoint / f"expert{expert}"
    if (out / "meta.json").exists():
        return out
    meta = read_meta(mixture_checkpoint)
    k = experts_in(mixture_checkpoint)
    model = load_mixture(mixture_checkpoint).expert(expert)
    keep = ("model_config", "train_config", "step", "tokens", "flops", "seconds", "run_flops", "run_seconds",
            "device", "precision")
    return save_model(model, out, **{key: meta[key] for key in keep}, expert=expert, experts=k,
                      expert_tokens=meta["tokens"] // k, mixture_checkpoint=str(mixture_checkpoint))


# -- routing and evaluation ------------------------------------------------

@torch.no_grad()
def route(model: BatchedGPT, idx: torch.Tensor, expert_ids: Sequence[int] | np.ndarray) -> torch.Tensor:
    """Logits [N, T, V] of windows `idx` [N, T], window i scored by expert `expert_ids[i]` alone,
    as the extracted expert would score it."""
    ids = torch.as_tensor(np.asarray(expert_ids), device=idx.device)
    out = None
    for e in torch.unique(ids).tolist():
        mask = ids == e
        logits, _ = model.expert(e).eval()(idx[mask])
        if out is None:
            out = logits.new_empty(len(idx), *logits.shape[1:])
        out[mask] = logits
    return out
