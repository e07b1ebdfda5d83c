"""Plain model checkpoint folders: `model.safetensors` and `meta.json`, written atomically.

The trainer's resumable state (optimizer, step, RNG) is `lab.training.train`'s; these folders
hold what evaluating or fine-tuning a model needs: its weights and its config, with the
costs of the pretraining it came from.

`meta.json` records the size and sha256 of every file written beside it (`files`), and
`verified` checks them before a file is read, so damaged weights are an error naming
the folder rather than a model that scores wrong. Folders written before that record are
read unchecked.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model as load_safetensors
from safetensors.torch import save_model as save_safetensors

from .. import atomic, checks
from ..errors import LabError
from .model import GPT, GPTConfig

WEIGHTS = "model.safetensors"


def rebuild_advice(folder: str | Path) -> str:
    return (f"delete the folder {folder}: the next `python -m lab pretrain`, `specialize` or `study` "
            "that needs it writes it again")


def read_meta(path: str | Path) -> dict:
    path = Path(path) / "meta.json"
    if not path.exists():
        raise LabError(f"{path.parent} is not a complete checkpoint (no meta.json); train it again")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise LabError(f"{path} is damaged ({e}); {rebuild_advice(path.parent)}") from None


def save_weights(model: torch.nn.Module, folder: Path) -> dict:
    """Write `model`'s weights into `folder`; returns the `files` entry its meta.json keeps."""
    save_safetensors(model, str(folder / WEIGHTS))
    return {WEIGHTS: checks.file_record(folder / WEIGHTS)}


def verified(folder: str | Path, name: str, meta: dict) -> Path:
    """The file `name` of a checkpoint folder, after checking it against the record in its `meta`."""
    record = meta.get("files", {}).get(name)
    if record is None:
        return Path(folder) / name
    return checks.verify_file(Path(folder) / name, record, rebuild_advice(folder))


def load_weights(model: torch.nn.Module, folder: str | Path, meta: dict, device: torch.device | str) -> None:
    """Load a checkpoint folder's verified weights into `model`."""
    path = verified(folder, WEIGHTS, meta)
    try:
        load_safetensors(model, str(path), device=str(device))
    except SafetensorError as e:
        raise LabError(f"{path} is not readable ({e}); {rebuild_advice(folder)}") from None


def save_model(model: GPT, path: str | Path, **meta) -> Path:
    """Write a plain model (an instantiated expert, a fine-tuned teacher) as a checkpoint folder
    `load_model` reads, atomically. `meta` should carry the `tokens`, `flops` and `seconds` of the
    pretraining it came from; its `model_config` is the model's own."""
    path = Path(path)
    with atomic.atomic_dir(path) as tmp:
        files = save_weights(model, tmp)
        atomic.write_json(tmp / "meta.json", {**meta, "model_config": asdict(model.config), "files": files})
    return path


def load_model(path: str | Path, device: torch.device | str = "cpu") -> GPT:
    """The model of a checkpoint folder, ready to evaluate or fine-tune."""
    meta = read_meta(path)
    model = GPT(GPTConfig(**meta["model_config"]))
    load_weights(model, path, meta, device)
    return model.to(device)
