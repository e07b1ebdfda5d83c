"""The decoder-only transformer every method trains, and its named sizes.

nanoGPT's model, kept small: pre-norm blocks, learned positions, causal
attention through `scaled_dot_product_attention`, and an output projection tied
to the token embedding. The SLM and the LLM of each scale share depth, context
and heads; the LLM is 2.75 times wider, as in the paper (126M vs 771M
parameters: 7 layers, width 1024 vs 2816).

The module owns the configurations: `model_config(kind, scale)` for shapes and
`train_config(kind, scale)` for the optimizer, schedule and pretraining budgets
(`lab.train` reads the latter).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import costs
from ..errors import LabError
from ..scales import get_scale


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
        return logits, F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())

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


# Named sizes. The LLM keeps the SLM's depth, context and heads and is 2.75x wider.
_SHAPES = {
    #          n_layer, n_head, SLM width, LLM width
    "tiny": (2, 2, 32, 88),
    "default": (2, 4, 64, 176),
    "paper": (7, 16, 1024, 2816),
}


def model_config(kind: str, scale: str) -> GPTConfig:
    """The SLM or LLM of a named scale; vocabulary and context come from `lab.scales`."""
    if kind not in ("slm", "llm"):
        raise LabError(f"unknown model kind {kind!r}: choose 'slm' or 'llm'")
    data = get_scale(scale)
    n_layer, n_head, d_slm, d_llm = _SHAPES[scale]
    return GPTConfig(vocab_size=data.vocab_size, context=data.context, n_layer=n_layer,
                     n_head=n_head, d_model=d_slm if kind == "slm" else d_llm)


@dataclass(frozen=True)
class TrainConfig:
    """Optimizer, schedule and pretraining budget of one model (see `lab.train` for the schedule)."""
    batch_size: int = 8
    micro_batch: int = 0
    """Sequences per forward pass when a batch does not fit in memory (gradient accumulation); 0: the whole batch."""
    lr: float = 3e-3
    warmup_steps: int = 200
    cooldown: float = 0.2
    """Share of each checkpoint's budget spent decaying the learning rate to zero."""
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    seed: int = 0
    precision: str = "auto"
    """"auto" (bf16 autocast where it is faster, see `lab.device`), "fp32" or "bf16"."""
    pretrain_flops: float = 4.25e13
    """Largest pretraining budget, in FLOPs so that the SLM and the LLM are compared at equal
    compute (`train_config` states it as tokens of the scale's SLM)."""
    checkpoint_fractions: tuple[float, ...] = (1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0)
    """Budgets, as shares of `pretrain_flops`, at which one run writes a checkpoint."""
    eval_every: int = 500
    eval_tokens: int = 65_536
    """Generic validation tokens scored every `eval_every` steps (the live loss curve)."""
    save_every: int = 2_000
    """Steps between saves of the resumable main-run state (0: only at checkpoints)."""

    @property
    def checkpoint_flops(self) -> list[float]:
        return [f * self.pretrain_flops for f in self.checkpoint_fractions]

    def run_fields(self) -> dict:
        """The fields that decide the weights at a given step (not where the run stops or what it logs)."""
        skip = ("pretrain_flops", "checkpoint_fractions", "eval_every", "eval_tokens", "save_every")
        return {k: v for k, v in asdict(self).items() if k not in skip}


def train_config(kind: str, scale: str) -> TrainConfig:
    """Training defaults per scale. At `default` the SLM's largest budget is 18M tokens
    (about 170 per non-embedding parameter: DESIGN section 5's capacity-limited regime,
    past the crossover where mixtures start to win); the LLM gets the same FLOPs."""
    model_config(kind, scale)  # validates both names
    slm_flops_per_token = costs.train_flops_per_token(model_config("slm", scale))
    if scale == "tiny":
        # 2M SLM tokens (about 20 s): pretraining must dwarf the largest in-domain set
        # (128k tokens), or training on that set alone beats pretraining and every
        # finding reverses even in the tests.
        return TrainConfig(batch_size=8, lr=3e-3, warmup_steps=50, pretrain_flops=2_000_000 * slm_flops_per_token,
                           eval_every=500, eval_tokens=8_192, save_every=0)
    if scale == "default":
        return TrainConfig(batch_size=8, lr=3e-3, warmup_steps=200, pretrain_flops=18_000_000 * slm_flops_per_token)
    # Paper shapes on a GPU: GPT-3's learning rates for its 125M and 760M models, a
    # 256 x 1024-token batch, 10B SLM tokens (the paper went to about 180B).
    return TrainConfig(batch_size=256, micro_batch=16, lr=6e-4 if kind == "slm" else 2.5e-4, warmup_steps=2000,
                       pretrain_flops=10_000_000_000 * slm_flops_per_token, eval_every=1000,
                       eval_tokens=1_048_576, save_every=500)
