"""SLM-hn: a small transformer whose MLP weights a hyper-network generates per cluster.

The paper's hyper-network (the later version calls it a *projected network*):
for expert (cluster) i and layer l, every MLP matrix is

    W(l, i) = sum_q sum_r E[i, q] M(l)[q, r] T(l)[:, :, r]

with E a k x m table of expert codes (shared by the layers), M(l) a per-layer
m x h mixing matrix and T(l) a bank of h matrices (one bank for the MLP's input
projection, one for its output projection). Attention, norms and embeddings are
shared, with the shapes of the scale's SLM, so for any fixed code the network
*is* an SLM: `instantiate` writes it out in closed form as a plain `lab.nn.model.GPT`.

Training routes each window through the expert of its generic cluster. A batch
is grouped by expert and each present expert's weights are generated once per
step, so a step costs an SLM step plus, per present expert, the E.M.T
contractions (`HyperConfig.train_flops`). With gradient accumulation (the paper
scale's micro-batches) each micro-batch generates its own experts' weights; the
sampler sorts a batch by expert, so that adds at most one generation per
micro-batch, about 0.04% of a paper-scale step, which the formula leaves out.

Parametrization. The code mixing is divided by h (a constant, which M could
absorb): Adam moves each bank entry by about the learning rate, so a generated
matrix moves by about lr x |c|_1, and with c = E M / h and unit-scale E and M,
|c|_1 is about 1 whatever h is: W trains at the SLM's pace. The bank starts at
sqrt(h) x the SLM's initial scale so that W starts at it, and the codes start
close to one shared code (`code_spread`), so that the experts start as one SLM
and grow apart as their clusters' gradients differ.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import LabError
from . import costs
from .checkpoints import load_weights, read_meta
from .model import GPT, CausalSelfAttention, GPTConfig, cross_entropy, param_count_formula


@dataclass(frozen=True)
class HyperConfig(GPTConfig):
    """The SLM's shape plus the hyper-network's: k experts, codes of size m, banks of h matrices."""
    n_experts: int = 8
    """k: clusters, one code each (the paper: 32)."""
    code_dim: int = 8
    """m: size of an expert's code."""
    bank_size: int = 32
    """h: matrices in each bank; decides the pretraining parameters and the step's extra cost."""
    code_spread: float = 0.1
    """Initial spread of the expert codes around one shared code (see `HyperGPT`)."""

    def __post_init__(self):
        super().__post_init__()
        for name in ("n_experts", "code_dim", "bank_size"):
            if getattr(self, name) < 1:
                raise LabError(f"{name}={getattr(self, name)}: the hyper-network needs at least 1")
        if self.code_spread < 0:
            raise LabError(f"code_spread={self.code_spread}: give a spread >= 0")

    @property
    def slm(self) -> GPTConfig:
        """The plain SLM an instantiation produces (and whose cost a routed token pays)."""
        return GPTConfig(**{f.name: getattr(self, f.name) for f in fields(GPTConfig)})

    def generation_flops(self, n_experts: int = 1) -> int:
        """Forward FLOPs to generate the MLP weights of `n_experts` experts:
        per layer, the codes through M (2 m h each) and the two banks (2 h d d_mlp each)."""
        per_layer = 2 * self.code_dim * self.bank_size + 2 * (2 * self.bank_size * self.d_model * self.d_mlp)
        return n_experts * self.n_layer * per_layer

    def experts_per_step(self, windows: int) -> int:
        """Experts whose weights a step generates, counted as if every window had its own
        (at most k): never below the real count, so the hyper-network is never flattered."""
        return min(self.n_experts, windows)

    def train_flops(self, n_tokens: int, n_steps: int = 1) -> float:
        """Training FLOPs for `n_tokens` tokens in `n_steps` steps:

            n_tokens x (SLM training FLOPs per token)
            + n_steps x min(k, windows per step) x 3 x generation_flops(1)

        the routed model computes exactly an SLM per token, and generating the weights
        is a forward pass whose backward costs twice as much."""
        if n_steps <= 0:
            return float(n_tokens * costs.train_flops_per_token(self.slm))
        windows = math.ceil(n_tokens / (n_steps * self.context))
        generate = 3 * self.generation_flops(self.experts_per_step(windows))
        return float(n_tokens * costs.train_flops_per_token(self.slm) + n_steps * generate)

    def inference_flops_per_token(self) -> float:
        """What a deployed instantiation costs: exactly one SLM."""
        return float(costs.forward_flops_per_token(self.slm))


def param_count_hypernet(cfg: HyperConfig) -> int:
    """Parameters of `HyperGPT(cfg)`: the SLM's without its MLP matrices, plus codes, mixing and banks."""
    mlp_matrices = 2 * cfg.d_model * cfg.d_mlp
    per_layer = cfg.code_dim * cfg.bank_size + cfg.bank_size * mlp_matrices
    return (param_count_formula(cfg.slm) - cfg.n_layer * mlp_matrices
            + cfg.n_experts * cfg.code_dim + cfg.n_layer * per_layer)


class GeneratedMLP(nn.Module):
    """The MLP of one layer, its two matrices generated from expert codes."""

    def __init__(self, cfg: HyperConfig):
        super().__init__()
        h = cfg.bank_size
        self.mix = nn.Parameter(torch.randn(cfg.code_dim, h) / math.sqrt(cfg.code_dim))
        # Banks in nn.Linear's [out, in] layout, so an instantiation is a plain copy.
        self.up_bank = nn.Parameter(torch.randn(h, cfg.d_mlp, cfg.d_model) * 0.02 * math.sqrt(h))
        self.down_bank = nn.Parameter(torch.randn(h, cfg.d_model, cfg.d_mlp)
                                      * 0.02 / math.sqrt(2 * cfg.n_layer) * math.sqrt(h))
        self.up_bias = nn.Parameter(torch.zeros(cfg.d_mlp)) if cfg.bias else None
        self.down_bias = nn.Parameter(torch.zeros(cfg.d_model)) if cfg.bias else None

    def weights(self, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Input and output matrices [n, d_mlp, d] and [n, d, d_mlp] for codes [n, m]."""
        h = self.mix.shape[1]
        c = codes @ self.mix / h
        up = (c @ self.up_bank.flatten(1)).view(-1, *self.up_bank.shape[1:])
        down = (c @ self.down_bank.flatten(1)).view(-1, *self.down_bank.shape[1:])
        return up, down

    def forward(self, x: torch.Tensor, codes: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
        """`x` [B, T, d]; window b uses codes[which[b]].

        Each present expert's matrices are generated once, then gathered per window so that one
        batched matmul serves every expert. A loop over the experts, a small matmul each, made the
        step 1.66x the SLM's time; batched it is 1.27x (`benchmarks/bench_hypernet.py`)."""
        up, down = self.weights(codes)
        hidden = F.gelu(_add_bias(torch.bmm(x, up[which].transpose(1, 2)), self.up_bias))
        return _add_bias(torch.bmm(hidden, down[which].transpose(1, 2)), self.down_bias)


def _add_bias(x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return x if bias is None else x + bias


class HyperBlock(nn.Module):
    """`lab.nn.model.Block` with a generated MLP; parameter names match it where they are shared."""

    def __init__(self, cfg: HyperConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model, bias=cfg.bias)
        self.mlp = GeneratedMLP(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, codes: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln1(x)))
        return x + self.drop(self.mlp(self.ln2(x), codes, which))


class HyperGPT(nn.Module):
    """The routed model: `forward(idx, targets, experts)` with one expert id per window."""

    def __init__(self, cfg: HyperConfig):
        super().__init__()
        if not isinstance(cfg, HyperConfig):
            raise LabError(f"HyperGPT needs a HyperConfig, got {type(cfg).__name__}")
        self.config = cfg
        self.codes = nn.Embedding(cfg.n_experts, cfg.code_dim)  # an embedding: no weight decay
        self.wte = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.wpe = nn.Embedding(cfg.context, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(HyperBlock(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.d_model, bias=cfg.bias)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight
        # The shared part starts as the SLM does (GPT-2's initialisation).
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)) and module is not self.codes:
                GPT._init_weights(module)
        for block in self.blocks:
            nn.init.normal_(block.attn.proj.weight, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))
        # The experts start as one model: codes close to a shared one. From independent random
        # codes they start unrelated, and the updates of their common part, which dominates early
        # on, cancel across experts in the shared bank (generic perplexity 215 against the SLM's
        # 178 at 1/16 of the default budget, k=16, h=8).
        with torch.no_grad():
            shared = torch.randn(cfg.code_dim)
            spread = torch.randn(cfg.n_experts, cfg.code_dim) * cfg.code_spread
            self.codes.weight.copy_((shared + spread) / math.sqrt(1 + cfg.code_spread ** 2))

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
                experts: torch.Tensor | None = None):
        """Logits [B, T, V] (and the mean next-token loss given `targets`); window b goes
        through expert `experts[b]`."""
        B, T = idx.shape
        if experts is None:
            raise LabError("the hyper-network needs an expert (cluster) id per window: pass `experts`, "
                           "or instantiate a plain SLM for one cluster with `instantiate`")
        if T > self.config.context:
            raise LabError(f"sequence of {T} tokens is longer than the model's context {self.config.context}")
        experts = experts.reshape(B).to(idx.device)
        if int(experts.min()) < 0 or int(experts.max()) >= self.config.n_experts:
            raise LabError(f"expert ids must lie in [0, {self.config.n_experts}); "
                           f"got {int(experts.min())}..{int(experts.max())}")
        # Each present expert's weights are generated once (`HyperConfig.generation_flops`).
        present, which = torch.unique(experts, return_inverse=True)
        codes = self.codes(present)
        pos = torch.arange(T, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))
        for block in self.blocks:
            x = block(x, codes, which)
        logits = self.lm_head(self.ln_f(x))
        if targets is None:
            return logits, None
        return logits, cross_entropy(logits, targets)

    def train_flops(self, n_tokens: int, n_steps: int = 1) -> float:
        return self.config.train_flops(n_tokens, n_steps)

    def inference_flops_per_token(self) -> float:
        return self.config.inference_flops_per_token()

    # -- instantiation -----------------------------------------------------

    def code_for(self, mixture: int | np.ndarray | torch.Tensor) -> torch.Tensor:
        """The code of one expert (an index) or of a mixture of experts (k weights summing
        to one, e.g. a domain's cluster histogram): sum_i p_i E[i]."""
        k = self.config.n_experts
        if isinstance(mixture, (int, np.integer)):
            if not 0 <= int(mixture) < k:
                raise LabError(f"expert {int(mixture)} does not exist: choose one in [0, {k})")
            return self.codes.weight[int(mixture)]
        p = torch.as_tensor(np.asarray(mixture, dtype=np.float64), dtype=self.codes.weight.dtype,
                            device=self.codes.weight.device)
        if p.shape != (k,) or bool((p < 0).any()) or not math.isclose(float(p.sum()), 1.0, abs_tol=1e-4):
            raise LabError(f"a histogram over the experts needs {k} non-negative weights summing to one; "
                           f"got shape {tuple(p.shape)} summing to {float(p.sum()):.4g}")
        return p @ self.codes.weight

    @torch.no_grad()
    def instantiate(self, mixture: int | np.ndarray | torch.Tensor) -> GPT:
        """The plain SLM of one expert, or of a histogram over experts, in closed form.

        By linearity the histogram's model has the histogram-weighted sum of the
        experts' MLP matrices; everything else is the shared weights."""
        code = self.code_for(mixture)[None]
        gpt = GPT(self.config.slm).to(self.codes.weight.device)
        state = {k: v for k, v in self.state_dict().items() if k in gpt.state_dict()}
        for l, block in enumerate(self.blocks):
            up, down = block.mlp.weights(code)
            state[f"blocks.{l}.mlp.up.weight"] = up[0]
            state[f"blocks.{l}.mlp.down.weight"] = down[0]
            if self.config.bias:
                state[f"blocks.{l}.mlp.up.bias"] = block.mlp.up_bias
                state[f"blocks.{l}.mlp.down.bias"] = block.mlp.down_bias
        gpt.load_state_dict(state)
        return gpt


def load_hypernet(path: str | Path, device: torch.device | str = "cpu") -> HyperGPT:
    """The hyper-network of a pretraining checkpoint folder."""
    meta = read_meta(path)
    if "n_experts" not in meta["model_config"]:
        raise LabError(f"{path} holds a plain model, not a hyper-network; read it with lab.nn.checkpoints.load_model")
    model = HyperGPT(HyperConfig(**meta["model_config"]))
    load_weights(model, path, meta, device)
    return model.to(device)
