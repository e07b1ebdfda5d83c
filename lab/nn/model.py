"""The decoder-only transformer every method trains, and its named sizes.

nanoGPT's model, kept small: pre-norm blocks, learned positions, causal
attention through `scaled_dot_product_attention`, and an output projection tied
to the token embedding. The SLM and the LLM of each scale share depth, context
and heads; the LLM is 2.75 times wider, as in the paper (126M vs 771M
parameters: 7 layers, width 1024 vs 2816).

The module owns the configurations: `model_config(kind, scale)` for shapes and
`train_config(kind, scale)` for the optimizer, schedule and pretraining budgets
(`lab.training.train` reads the latter).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import LabError
from ..scales import Scale, get_scale


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int = 4096
    context: int = 128
    n_layer: int = 2
    n_head: int = 4
    d_model: int = 64
    d_mlp: int = 0
    """Hidden width of the MLP; 0 means 4 x d_model."""
    dropout: float = 0.0
    bias: bool = False
    """Biases in linear layers and norms; without them is a little faster and no worse (nanoGPT)."""

    def __post_init__(self):
        if self.d_mlp == 0:
            object.__setattr__(self, "d_mlp", 4 * self.d_model)
        if self.d_model % self.n_head:
            raise LabError(f"d_model={self.d_model} is not divisible by n_head={self.n_head}")


class _SoftmaxCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy whose gradient, softmax minus the one-hot targets, is formed in the
    forward pass from the log-softmax in place: the backward pass then neither zero-fills a
    gradient the size of the logits nor reads two such tensors. Over a 4,096-word vocabulary
    these are the largest tensors of a small model's step."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        rows = torch.arange(len(targets), device=logits.device)
        grad = torch.log_softmax(logits, dim=-1)
        loss = -grad[rows, targets].mean()
        grad.exp_()
        grad[rows, targets] -= 1.0
        ctx.save_for_backward(grad)
        return loss

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor):
        (grad,) = ctx.saved_tensors
        return grad.mul_(grad_loss / len(grad)), None


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token loss of logits [..., V] (in fp32) against targets [...]; equal to
    `F.cross_entropy`, faster to train through (`_SoftmaxCrossEntropy`)."""
    logits, targets = logits.float().flatten(0, -2), targets.flatten()
    if not logits.requires_grad:
        return F.cross_entropy(logits, targets)
    return _SoftmaxCrossEntropy.apply(logits, targets)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_head = cfg.n_head
        self.dropout = cfg.dropout
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=cfg.bias)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=cfg.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_head, C // self.n_head).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.up = nn.Linear(cfg.d_model, cfg.d_mlp, bias=cfg.bias)
        self.down = nn.Linear(cfg.d_mlp, cfg.d_model, bias=cfg.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.gelu(self.up(x)))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model, bias=cfg.bias)
        self.mlp = MLP(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln1(x)))
        return x + self.drop(self.mlp(self.ln2(x)))


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.config = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.wpe = nn.Embedding(cfg.context, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.d_model, bias=cfg.bias)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight
        self.apply(self._init_weights)
        # GPT-2: scale the projections into the residual stream so its variance
        # does not grow with depth.
        for name, p in self.named_parameters():
            if name.endswith(("attn.proj.weight", "mlp.down.weight")):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        """Logits [B, T, V], and the mean next-token loss when `targets` are given."""
        T = idx.shape[1]
        if T > self.config.context:
            raise LabError(f"sequence of {T} tokens is longer than the model's context {self.config.context}")
        pos = torch.arange(T, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))
        for block in self.blocks:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        if targets is None:
            return logits, None
        return logits, cross_entropy(logits, targets)

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, n_new: int, temperature: float = 1.0,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Sample `n_new` tokens after the prompts `idx` [B, T]; for looking at what a model learnt."""
        for _ in range(n_new):
            logits, _ = self(idx[:, -self.config.context:])
            probs = F.softmax(logits[:, -1].float() / temperature, dim=-1)
            idx = torch.cat([idx, torch.multinomial(probs, 1, generator=generator)], dim=1)
        return idx


def param_count_formula(cfg: GPTConfig) -> int:
    """Parameters of `GPT(cfg)`, counted from the shapes (tied output counted once)."""
    d, b = cfg.d_model, int(cfg.bias)
    norm = d + b * d
    attn = d * 3 * d + b * 3 * d + d * d + b * d
    mlp = d * cfg.d_mlp + b * cfg.d_mlp + cfg.d_mlp * d + b * d
    return cfg.vocab_size * d + cfg.context * d + cfg.n_layer * (2 * norm + attn + mlp) + norm


def non_embedding_params(cfg: GPTConfig) -> int:
    """Parameters outside the token and position embeddings (Kaplan et al. 2020's N)."""
    return param_count_formula(cfg) - cfg.vocab_size * cfg.d_model - cfg.context * cfg.d_model


def model_config(kind: str, scale: str | Scale) -> GPTConfig:
    """The SLM or LLM of a scale (`lab.scales`: shapes, vocabulary, context)."""
    if kind not in ("slm", "llm"):
        raise LabError(f"unknown model kind {kind!r}: choose 'slm' or 'llm'")
    s = get_scale(scale)
    return GPTConfig(vocab_size=s.vocab_size, context=s.context, n_layer=s.shapes.n_layer, n_head=s.shapes.n_head,
                     d_model=s.shapes.slm_width if kind == "slm" else s.shapes.llm_width)
