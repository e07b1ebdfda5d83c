"""LoRA fine-tuning through `peft`: low-rank adapters beside the blocks' linear layers, the rest frozen.

Hu et al. 2021: each adapted weight W (out x in) becomes W + (alpha / r) B A, with
A (r x in) random and B (out x r) zero at the start, so training begins from the
pretrained model exactly. The adapters go on every linear layer of the blocks
(`TARGETS`: attention's qkv and output projection, the MLP's up and down); the
token embedding, which is also the output head, stays frozen with the norms and
positions. After training, `LoraGPT.merged` folds B A into W and hands back the
plain `GPT`, so evaluation, checkpoints and inference costs are those of the model
that is deployed: merged LoRA costs what the full model costs per token.

The FLOPs of training with the adapters unmerged are `lab.nn.costs.lora_train_flops_per_token`
(less than full training: frozen weights need no weight gradient). The Trainer asks the
model for them (`train_flops`), as it asks the hyper-network.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from peft import LoraConfig, get_peft_model

from ..errors import LabError
from ..nn import costs
from ..nn.model import GPT

TARGETS = ("qkv", "proj", "up", "down")
"""The `nn.Linear` modules of `lab.nn.model.Block`; `lm_head` is the tied embedding and is left out."""


class LoraGPT(nn.Module):
    """A `GPT` with LoRA adapters of rank `rank`; only the adapters train. alpha = rank, so the
    update enters as B A unscaled and the learning rate alone sets its size."""

    def __init__(self, model: GPT, rank: int):
        super().__init__()
        if int(rank) < 1:
            raise LabError(f"LoRA rank {rank}: give a rank of at least 1 (0 means full fine-tuning, without LoRA)")
        self.config = model.config
        self.rank = int(rank)
        config = LoraConfig(r=self.rank, lora_alpha=self.rank, lora_dropout=0.0,
                            target_modules=list(TARGETS), bias="none")
        self.peft = get_peft_model(model, config)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        return self.peft(idx, targets)

    def train_flops(self, n_tokens: int, n_steps: int) -> float:
        return float(n_tokens) * costs.lora_train_flops_per_token(self.config, self.rank)

    def inference_flops_per_token(self) -> float:
        """Scoring with the adapters unmerged (the validation of early stopping)."""
        return float(costs.lora_forward_flops_per_token(self.config, self.rank))

    def merged(self) -> GPT:
        """The plain GPT with the adapters folded into its weights (this wrapper is spent after)."""
        return self.peft.merge_and_unload()


def trained_params(model: nn.Module) -> int:
    """Weights an optimizer would update (the tied embedding and output head counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
