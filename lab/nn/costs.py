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


def lora_params(cfg: GPTConfig, rank: int) -> int:
    """LoRA adapter weights: an A (in x r) and a B (r x out) beside every linear layer of the blocks
    (qkv, proj, up, down); the tied embedding and output head get none (`lab.training.lora`)."""
    d, m = cfg.d_model, cfg.d_mlp
    return cfg.n_layer * rank * ((d + 3 * d) + (d + d) + (d + m) + (m + d))


def lora_forward_flops_per_token(cfg: GPTConfig, rank: int) -> int:
    """The full model's forward plus the adapters' (unmerged, as during fine-tuning)."""
    return forward_flops_per_token(cfg) + 2 * lora_params(cfg, rank)


def lora_train_flops_per_token(cfg: GPTConfig, rank: int) -> int:
    """Training with LoRA: the forward pass, then a backward pass that skips what nothing trains.

    A backward pass costs two matmuls per forward matmul, one for the input's gradient and
    one for the weight's. Frozen weights need no weight gradient, but their input gradient
    still carries the signal down to the adapters below, so they cost one matmul, not two.
    Adapters cost both. The first block's qkv is the exception: its input comes from frozen
    embeddings and a frozen norm, so neither it nor its adapter needs an input gradient
    (autograd skips them). Attention's score and value products have no weights and keep
    twice their forward cost.

        4 N + 6 P + 12 n_layer context d_model - 6 d_model^2 - 2 r d_model

    with N = `matmul_params` and P = `lora_params`; against full training's
    6 N + 12 n_layer context d_model.
    """
    d = cfg.d_model
    n, p = matmul_params(cfg), lora_params(cfg, rank)
    attention = 4 * cfg.n_layer * cfg.context * d
    forward = 2 * n + 2 * p + attention
    frozen_input_grads = 2 * (n - 3 * d * d)
    adapter_grads = 2 * p + 2 * (p - rank * d)
    return forward + frozen_input_grads + adapter_grads + 2 * attention


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
