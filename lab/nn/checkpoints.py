"""Plain model checkpoint folders: `model.safetensors` and `meta.json`, written atomically.

The trainer's resumable state (optimizer, step, RNG) is `lab.training.train`'s; these folders
hold what evaluating or fine-tuning a model needs: its weights and its config, with the
costs of the pretraining it came from.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import load_model as load_safetensors
from safetensors.torch import save_model as save_safetensors

from .. import atomic
from ..errors import LabError
from .model import GPT, GPTConfig


def read_meta(path: str | Path) -> dict:
    path = Path(path) / "meta.json"
    if not path.exists():
        raise LabError(f"{path.parent} is not a complete checkpoint (no meta.json); train it again")
    return json.loads(path.read_text())


def save_model(model: GPT, path: str | Path, **meta) -> Path:
    """Write a plain model (an instantiated expert, a fine-tuned teacher) as a checkpoint folder
    `load_model` reads, atomically. `meta` should carry the `tokens`, `flops` and `seconds` of the
    pretraining it came from; its `model_config` is the model's own."""
    path = Path(path)
    with atomic.atomic_dir(path) as tmp:
        save_safetensors(model, str(tmp / "model.safetensors"))
        atomic.write_json(tmp / "meta.json", {**meta, "model_config": asdict(model.config)})
    return path


def load_model(path: str | Path, device: torch.device | str = "cpu") -> GPT:
    """The model of a checkpoint folder, ready to evaluate or fine-tune."""
    meta = read_meta(path)
    model = GPT(GPTConfig(**meta["model_config"]))
    load_safetensors(model, str(Path(path) / "model.safetensors"), device=str(device))
    return model.to(device)
