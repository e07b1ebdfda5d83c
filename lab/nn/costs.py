"""Analytic compute costs: FLOPs per trained token and per inferred token.

The convention is PaLM's (Chowdhery et al. 2022, appendix B):

    forward FLOPs per token  = 2 N + 4 n_layer context d_model
    training FLOPs per token = 3 x forward = 6 N + 12 n_layer context d_model

N counts the parameters that enter a matrix multiply: every linear layer and
the output projection (V x d: tied to the embedding, but still a real matmul,
and at the lab's small widths the largest one), not the embedding lookups,
norms or biases. The attention term is QK^T and AV over the whole window, as a
dense kernel computes it; the causal mask wastes half of it, and a GPU flash
kernel skips most of that half, so there it overstates attention up to 2x.
`torch.utils.flop_counter.FlopCounterMode` counts exactly these terms (the tests
check it). Inference is priced as the forward pass of a token scored in a full
window, which is what evaluation does; a decoder with a KV cache averages half
the attention term.

Extension points. A hard mixture routes each token through one expert, so its
cost per token is one expert's: pass the expert. A model that spends more than
its dense shape says (a hyper-network pays to generate its weights each step)
defines `train_flops(n_tokens, n_steps)` and `inference_flops_per_token()`,
and `train_flops` / `inference_flops_per_token` below defer to them.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .model import GPTConfig


def matmul_params(cfg: GPTConfig) -> int:
    """Weights that take part in a matrix multiply for every token."""
    per_layer = 4 * cfg.d_model * cfg.d_model + 2 * cfg.d_model * cfg.d_mlp
    return cfg.n_layer * per_layer + cfg.vocab_size * cfg.d_model


def forward_flops_per_token(cfg: GPTConfig) -> int:
    return 2 * matmul_params(cfg) + 4 * cfg.n_layer * cfg.context * cfg.d_model


def train_flops_per_token(cfg: GPTConfig) -> int:
    return 3 * forward_flops_per_token(cfg)


def _config(model_or_cfg):
    return getattr(model_or_cfg, "config", model_or_cfg)


def train_flops(model_or_cfg, n_tokens: int, n_steps: int = 1) -> float:
    """FLOPs to train on `n_tokens` tokens in `n_steps` optimizer steps."""
    custom = getattr(model_or_cfg, "train_flops", None)
    if callable(custom):
        return float(custom(n_tokens, n_steps))
    return float(n_tokens) * train_flops_per_token(_config(model_or_cfg))


def inference_flops_per_token(model_or_cfg) -> float:
    """FLOPs to score one token with the deployed model: the inference budget."""
    custom = getattr(model_or_cfg, "inference_flops_per_token", None)
    if callable(custom):
        return float(custom())
    return float(forward_flops_per_token(_config(model_or_cfg)))


def total_flops(pretrain_flops: float, specialize_flops: float, n_domains: int = 1) -> float:
    """What serving `n_domains` domains costs: pretraining is shared, specialization is paid per domain."""
    return pretrain_flops + n_domains * specialize_flops
