"""Knowledge distillation: a student learns from the targets and from a teacher's distributions.

Hinton, Vinyals and Dean 2015, "Distilling the Knowledge in a Neural Network",
applied per token as in the paper's SLM-d: for student logits s, teacher logits t
and next-token targets y,

    loss = (1 - alpha) * CE(s, y) + alpha * T^2 * KL(softmax(t / T) || softmax(s / T))

averaged over tokens. The KL term is the teacher's cross-entropy under the student
minus the teacher's own entropy, so its gradient is the soft-target gradient, and
it is zero when the student matches the teacher. The T^2 factor keeps the soft
term's gradients the same size whatever T (they shrink as 1/T^2 otherwise), so
`alpha` means the same thing at every temperature.

`Distiller(teacher, alpha, temperature)` is a `loss_fn(model, x, y)` for
`lab.training.train.Trainer` / `lab.training.finetune.finetune`; the teacher's forward pass is what
it costs beyond the student's own training (`Distiller.flops_per_token`). The
method itself (which teacher, costs, caching) is `lab.methods.distill`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..device import autocast, autocast_dtype
from ..errors import LabError
from ..nn import costs
from ..nn.model import GPT

DEFAULT_ALPHA = 0.5
DEFAULT_TEMPERATURE = 1.0


def check_options(alpha: float, temperature: float) -> None:
    if not 0.0 <= alpha <= 1.0:
        raise LabError(f"alpha={alpha} is the weight of the teacher term: choose a value in [0, 1] "
                       f"(default {DEFAULT_ALPHA})")
    if not temperature > 0.0:
        raise LabError(f"temperature={temperature} must be positive (default {DEFAULT_TEMPERATURE}; "
                       "above 1 softens the teacher's distribution)")


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor, *,
                      alpha: float = DEFAULT_ALPHA, temperature: float = DEFAULT_TEMPERATURE,
                      ce: torch.Tensor | None = None) -> torch.Tensor:
    """The mixed loss for logits [B, T, V] and targets [B, T]. `ce` is the student's
    cross-entropy when the caller already has it (the model returns it with its logits)."""
    check_options(alpha, temperature)
    s = student_logits.float().flatten(0, 1)
    if ce is None:
        ce = F.cross_entropy(s, targets.flatten())
    log_p_student = F.log_softmax(s / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits.float().flatten(0, 1) / temperature, dim=-1)
    # KL(teacher || student), summed over the vocabulary and averaged over tokens.
    kl = F.kl_div(log_p_student, log_p_teacher, log_target=True, reduction="batchmean")
    return (1.0 - alpha) * ce + alpha * temperature ** 2 * kl


class Distiller:
    """`loss_fn(student, x, y)` with a frozen teacher (moved to the student's device on first use).

    The teacher runs without gradients in its own precision (`lab.device`'s rule
    for its width: bf16 on a CPU with AMX for the LLM, fp32 for the narrow SLM).
    """

    def __init__(self, teacher: GPT, alpha: float = DEFAULT_ALPHA, temperature: float = DEFAULT_TEMPERATURE,
                 precision: str = "auto"):
        check_options(alpha, temperature)
        self.teacher = teacher.eval().requires_grad_(False)
        self.alpha = alpha
        self.temperature = temperature
        self.precision = precision

    @property
    def flops_per_token(self) -> float:
        """The teacher's forward pass on every trained token: what distillation adds to fine-tuning."""
        return costs.inference_flops_per_token(self.teacher)

    def __call__(self, student: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.teacher.config.vocab_size != student.config.vocab_size:
            raise LabError(f"teacher vocabulary {self.teacher.config.vocab_size} differs from the student's "
                           f"{student.config.vocab_size}: both must use the same tokenizer")
        self.teacher.to(x.device)
        with torch.no_grad(), autocast(x.device, autocast_dtype(x.device, self.teacher.config.d_model,
                                                                 self.precision)):
            teacher_logits, _ = self.teacher(x)
        student_logits, ce = student(x, y)
        return distillation_loss(student_logits, teacher_logits, y, alpha=self.alpha,
                                 temperature=self.temperature, ce=ce)
