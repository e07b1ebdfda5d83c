"""SLM-d: the distillation loss, its costs, and the method's cached result rows."""
import copy
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lab.errors import LabError
from lab.methods.store import ResultRow
from lab.nn import costs
from lab.nn.model import GPT, GPTConfig
from lab.training.distill import Distiller, distillation_loss
from lab.training.finetune import FinetuneConfig, finetune
from lab.training.train import next_token_loss, seed_everything

STUDENT = GPTConfig(vocab_size=64, context=16, n_layer=1, n_head=2, d_model=16)
TEACHER = GPTConfig(vocab_size=64, context=16, n_layer=1, n_head=2, d_model=32)


def _tokens(n, seed=0):
    # Zipf-like ids so that there is something to learn in a few steps.
    rng = np.random.default_rng(seed)
    return np.minimum(rng.zipf(1.5, n) - 1, STUDENT.vocab_size - 1).astype(np.uint16)


def _model(cfg, seed):
    seed_everything(seed)
    return GPT(cfg)


def _finetune(loss_fn, extra=0.0):
    model = _model(STUDENT, 1)
    cfg = FinetuneConfig(lr=3e-3, batch_size=4, warmup_steps=2, max_steps=12, eval_every=4, patience=10,
                         eval_tokens=512, precision="fp32")
    losses = []
    model, record = finetune(model, _tokens(4_000), _tokens(1_000, seed=1), cfg, loss_fn=loss_fn,
                             extra_flops_per_token=extra, callbacks={"on_batch_end": [lambda t: losses.append(t.loss)]},
                             device="cpu", progress=False)
    return model, record, losses


def test_alpha_zero_is_plain_finetuning():
    distiller = Distiller(_model(TEACHER, 2), alpha=0.0, temperature=2.0)
    plain, plain_record, plain_losses = _finetune(next_token_loss)
    distilled, record, losses = _finetune(distiller, distiller.flops_per_token)
    assert losses == plain_losses and len(losses) == 12
    for (name, a), (_, b) in zip(plain.state_dict().items(), distilled.state_dict().items()):
        assert torch.equal(a, b), name
    assert record.history == plain_record.history
    # Same weights, but the teacher's forward pass is paid for.
    assert record.flops == pytest.approx(plain_record.flops + 12 * 4 * STUDENT.context * distiller.flops_per_token)


def test_alpha_one_with_the_teacher_as_student_has_no_loss():
    student = _model(STUDENT, 3)
    distiller = Distiller(copy.deepcopy(student), alpha=1.0, temperature=1.5)
    x = torch.from_numpy(_tokens(4 * 17).astype(np.int64)).view(4, 17)
    loss = distiller(student, x[:, :-1], x[:, 1:])
    loss.backward()
    assert abs(loss.item()) < 1e-6
    assert max(p.grad.abs().max().item() for p in student.parameters()) < 1e-6


def test_loss_is_the_formula_finite_with_gradients_to_the_student_only():
    student, teacher = _model(STUDENT, 4), _model(TEACHER, 5)
    x = torch.from_numpy(_tokens(4 * 17, seed=2).astype(np.int64)).view(4, 17)
    x, y = x[:, :-1], x[:, 1:]
    alpha, T = 0.3, 2.0
    loss = Distiller(teacher, alpha, T)(student, x, y)
    assert math.isfinite(loss.item()) and loss.item() > 0
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    assert all(p.grad is None for p in teacher.parameters())
    with torch.no_grad():
        s, t = student(x)[0].flatten(0, 1), teacher(x)[0].flatten(0, 1)
        p_t = F.softmax(t / T, -1)
        kl = (p_t * (F.log_softmax(t / T, -1) - F.log_softmax(s / T, -1))).sum(-1).mean()
        expected = (1 - alpha) * F.cross_entropy(s, y.flatten()) + alpha * T ** 2 * kl
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_bad_options_are_one_clear_error():
    logits = torch.zeros(1, 2, 8)
    with pytest.raises(LabError, match="alpha=1.5"):
        distillation_loss(logits, logits, torch.zeros(1, 2, dtype=torch.long), alpha=1.5)
    with pytest.raises(LabError, match="temperature=0"):
        Distiller(_model(TEACHER, 0), temperature=0)
    with pytest.raises(LabError, match="vocabulary"):
        Distiller(GPT(GPTConfig(vocab_size=32, context=16, n_layer=1, n_head=2, d_model=16)))(
            _model(STUDENT, 0), torch.zeros(1, 4, dtype=torch.long), torch.zeros(1, 4, dtype=torch.long))


def test_slm_d_costs_rows_and_cache(tiny_corpus, capsys):
    from lab import methods
    from lab.cli import main
    from lab.nn.checkpoints import load_model
    from lab.nn.model import model_config

    args = ["specialize", "--method", "slm-d", "--domain", "legal", "--set-tokens", "1000", "--scale", "tiny",
            "--alpha", "0.3", "--temperature", "2", "--json"]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert set(first) == set(ResultRow.REPORTED) and not first["cached"]
    assert all(first[k] is not None for k in ResultRow.REPORTED)
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out) == {**first, "cached": True}

    row = methods.specialize("slm-d", "legal", 1000, "tiny", alpha=0.3, temperature=2.0, progress=False)
    extra = row["extra"]
    student = max(methods.pretrain("slm", "tiny", progress=False), key=lambda r: r["pretrain_flops"])
    teacher = max(methods.pretrain("llm", "tiny", progress=False), key=lambda r: r["pretrain_flops"])
    assert row["pretrain_flops"] == student["pretrain_flops"] + teacher["pretrain_flops"]
    assert row["pretrain_tokens"] == student["pretrain_tokens"] + teacher["pretrain_tokens"]
    # The teacher's fine-tuning is the llm method's own row, now cached; its weights were kept.
    tuned = methods.specialize("llm", "legal", 1000, "tiny", progress=False)
    assert tuned["cached"] and extra["teacher_specialize_flops"] == tuned["specialize_flops"]
    assert row["specialize_flops"] == tuned["specialize_flops"] + extra["flops_to_best"]
    slm, llm = model_config("slm", "tiny"), model_config("llm", "tiny")
    per_token = costs.train_flops_per_token(slm) + costs.forward_flops_per_token(llm)
    assert extra["flops"] == pytest.approx(extra["steps"] * 8 * slm.context * per_token)
    assert extra["teacher_forward_flops"] == extra["tokens_to_best"] * costs.forward_flops_per_token(llm)
    assert row["inference_flops_per_token"] == costs.inference_flops_per_token(slm)
    assert math.isfinite(row["ppl_after"]) and row["ppl_after"] <= row["ppl_before"] * 1.01

    # A stored llm row without kept weights: asking to keep them fine-tunes again, deterministically.
    from lab.methods.runs import specialize_run
    from lab.training.evaluate import evaluate
    dom = tiny_corpus.domain("code")
    call = (teacher["checkpoint"], "llm", "tiny", "code", dom.set(1000), dom.validation, dom.test)
    plain = specialize_run(*call, method="llm", progress=False)
    kept = specialize_run(*call, method="llm", progress=False, keep_weights=True)
    assert kept["id"] == plain["id"]
    assert evaluate(load_model(kept.extra["finetuned_path"]), dom.test).ppl == pytest.approx(plain["ppl_after"], rel=1e-4)


def test_method_checks_its_options_before_training(tiny_corpus):
    from lab import methods

    with pytest.raises(LabError, match="--alpha -0.1"):
        methods.specialize("slm-d", "legal", 1000, "tiny", alpha=-0.1, progress=False)
