"""SLM-d: distil a domain-fine-tuned LLM into the SLM.

1. Pretrain the LLM (teacher) and the SLM (student) on the generic corpus: the
   same cached runs as the `llm` and `slm` methods.
2. Fine-tune the teacher on the domain: exactly the `llm` method's
   specialization (same checkpoint, recipe and cached row), keeping its weights.
3. Fine-tune the student on the domain set with the mixed loss of `lab.training.distill`
   (targets and the teacher's next-token distributions), the SLM's fine-tuning
   recipe, and early stopping on the plain validation loss.

Costs. Pretraining counts both models (`pretrain_flops` = student + teacher), as
the paper does: the teacher is trained before the domain is known. Specialization
is the teacher's fine-tuning plus the student's, the teacher's forward pass on
every student training token included. Inference is one SLM.

Which checkpoints: `pretrain_flops` picks the student's (nearest, default the
largest) and `teacher_flops` the teacher's (default its largest: the paper finds
distillation pays only with a heavily pretrained teacher). `alpha=0` reproduces
the SLM's fine-tuning exactly while still paying for the teacher, a check rather
than a method. `lora_rank` fine-tunes both the teacher and the student with LoRA
adapters of that rank (`lab.training.lora`): the teacher is then the `llm` method's
LoRA row.
"""
from __future__ import annotations

from pathlib import Path

from .. import methods
from ..device import device_name, pick_device
from ..nn import costs
from ..nn.checkpoints import load_model
from ..nn.model import model_config
from ..scales import Scale
from ..training.distill import DEFAULT_ALPHA, DEFAULT_TEMPERATURE, Distiller, check_options
from ..training.evaluate import evaluate
from ..training.finetune import finetune, finetune_config
from . import runs
from .base import LORA_RANK, LR_SCALE, Layout, Method, Option, Step, finetune_flops, lora_rank, positive
from .common import domain_data, pick_checkpoint
from .store import ResultRow, ResultStore, cached_run, data_hash


def pretrain(method: str, scale: str, *, seed: int = 0, progress: bool = True,
             teacher_flops: float | None = None) -> list[dict]:
    """The SLM's checkpoints, each priced with the teacher it would learn from (the LLM
    checkpoint nearest `teacher_flops`, default the largest): `pretrain_flops`,
    `pretrain_tokens` and `seconds` add the teacher's, the student's own are kept."""
    students = methods.pretrain("slm", scale, seed=seed, progress=progress)
    teacher = pick_checkpoint(methods.pretrain("llm", scale, seed=seed, progress=progress), teacher_flops)
    return [{**row, **_pair_costs(row, teacher), "seconds": row["seconds"] + teacher["seconds"]}
            for row in students]


def _pair_costs(student: dict, teacher: dict) -> dict:
    return {"pretrain_flops": student["pretrain_flops"] + teacher["pretrain_flops"],
            "pretrain_tokens": student["pretrain_tokens"] + teacher["pretrain_tokens"],
            "student_checkpoint": student["checkpoint"], "teacher_checkpoint": teacher["checkpoint"],
            "student_pretrain_flops": student["pretrain_flops"], "teacher_pretrain_flops": teacher["pretrain_flops"],
            "student_pretrain_tokens": student["pretrain_tokens"],
            "teacher_pretrain_tokens": teacher["pretrain_tokens"]}


def specialize(method: str, domain: str, set_tokens: int, scale: str, *, seed: int = 0,
               pretrain_flops: float | None = None, progress: bool = True, alpha: float = DEFAULT_ALPHA,
               temperature: float = DEFAULT_TEMPERATURE, teacher_flops: float | None = None,
               lora_rank: int = 0, lr_scale: float = 1.0) -> ResultRow:
    """Distil the LLM checkpoint nearest `teacher_flops`, fine-tuned on the domain, into the SLM
    checkpoint nearest `pretrain_flops` (both default to the largest). The row's `extra` keeps each
    model's share of the costs (`student_pretrain_flops`, `teacher_pretrain_flops`,
    `teacher_specialize_flops`, `teacher_forward_flops`), the teacher's perplexities and the
    student's `FinetuneRecord`."""
    check_options(alpha, temperature)
    dom, train = domain_data(domain, set_tokens, scale)
    student = pick_checkpoint(methods.pretrain("slm", scale, seed=seed, progress=progress), pretrain_flops)
    teacher = pick_checkpoint(methods.pretrain("llm", scale, seed=seed, progress=progress), teacher_flops)
    config = finetune_config("slm", scale, len(train), seed=seed, lora_rank=lora_rank, lr_scale=lr_scale)
    teacher_config = finetune_config("llm", scale, len(train), seed=seed, lora_rank=lora_rank)
    # The fine-tuned teacher is decided by its checkpoint and the llm recipe (fine-tuning is seeded).
    key = {"method": "slm-d", "scale": scale, "domain": dom.name, "set_tokens": len(train), "seed": seed,
           "student": runs.file_hash(Path(student["checkpoint"]) / "model.safetensors"),
           "teacher": runs.file_hash(Path(teacher["checkpoint"]) / "model.safetensors"),
           "teacher_finetune": teacher_config.key(), "finetune": config.key(), "alpha": alpha,
           "temperature": temperature}

    def run() -> dict:
        # The llm method's own call, so the row (and the fine-tuning) is shared with it.
        tuned = runs.specialize_run(teacher["checkpoint"], "llm", scale, dom.name, train, dom.validation,
                                    dom.test, method="llm", seed=seed, config=teacher_config, progress=progress,
                                    keep_weights=True)
        device = pick_device()
        distiller = Distiller(load_model(tuned.extra["finetuned_path"], device), alpha, temperature)
        model = load_model(student["checkpoint"], device)
        before = evaluate(model, dom.test)
        model, record = finetune(model, train, dom.validation, config, loss_fn=distiller,
                                 extra_flops_per_token=distiller.flops_per_token, device=device,
                                 progress=progress)
        after = evaluate(model, dom.test)
        return {
            **_pair_costs(student, teacher),
            "specialize_flops": tuned["specialize_flops"] + record.flops_to_best,
            "specialize_tokens": tuned["specialize_tokens"] + record.tokens_to_best,
            "inference_flops_per_token": costs.inference_flops_per_token(model),
            "seconds": tuned["seconds"] + record.seconds,
            "ppl_before": before.ppl, "ppl_after": after.ppl, "device": device_name(device),
            "alpha": alpha, "temperature": temperature,
            "teacher_specialize_flops": tuned["specialize_flops"], "teacher_seconds": tuned["seconds"],
            "teacher_ppl_before": tuned["ppl_before"], "teacher_ppl_after": tuned["ppl_after"],
            "teacher_forward_flops": record.tokens_to_best * distiller.flops_per_token,
            **record.to_dict(),
        }

    return cached_run(ResultStore.for_scale(scale), key, run, data_hash=data_hash(train, dom.validation, dom.test))


class Distillation(Method):
    """Distillation's curve over student budgets is notebook 06's: each of its points pays a teacher
    forward pass on every training token, so the study specializes from the largest budget only."""
    name, title, needs, curve = "slm-d", "SLM-d", ("slm", "llm"), False
    options = (
        Option("alpha", float, "weight of the teacher term in the loss",
               check=lambda a: None if 0.0 <= a <= 1.0 else "choose a weight in [0, 1]"),
        Option("temperature", float, "temperature of the teacher's distribution", check=positive),
        Option("teacher_flops", float, "the LLM teacher checkpoint nearest this pretraining budget (FLOPs; "
               "default: the largest)", pretrain=True, study=False, check=positive),
        LORA_RANK,
        LR_SCALE,
    )

    def pretrain(self, scale: str | Scale, *, seed: int = 0, progress: bool = True, **options) -> list[dict]:
        return pretrain(self.name, scale, seed=seed, progress=progress, **options)

    def specialize(self, domain: str, set_tokens: int, scale: str | Scale, *, seed: int = 0,
                   pretrain_flops: float | None = None, progress: bool = True, **options) -> ResultRow:
        return specialize(self.name, domain, set_tokens, scale, seed=seed, pretrain_flops=pretrain_flops,
                          progress=progress, **options)

    def price(self, step: Step, layout: Layout) -> float:
        """The student's fine-tuning, the teacher's (the llm method's recipe), and the teacher's forward
        pass on every student training token."""
        slm, llm = model_config("slm", layout.scale), model_config("llm", layout.scale)
        ft = finetune_config("slm", layout.scale, step.set_tokens)
        teacher = ft.max_steps * ft.batch_size * slm.context * costs.forward_flops_per_token(llm)
        rank = lora_rank(step)
        return (finetune_flops("slm", layout.scale, step.set_tokens, lora_rank=rank)
                + finetune_flops("llm", layout.scale, step.set_tokens, lora_rank=rank) + teacher)
