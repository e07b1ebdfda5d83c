import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from lab.errors import LabError
from lab.nn import costs
from lab.scales import get_scale
from lab.training.evaluate import evaluate, macro_perplexity
from lab.nn.model import GPT, GPTConfig, cross_entropy, model_config, non_embedding_params, param_count_formula
from lab.training.train import train_config


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("cfg", [
    GPTConfig(vocab_size=100, context=16, n_layer=1, n_head=1, d_model=8),
    GPTConfig(vocab_size=300, context=32, n_layer=3, n_head=2, d_model=24, d_mlp=40, bias=True),
    *(model_config(kind, scale) for kind in ("slm", "llm") for scale in ("tiny", "default", "paper")),
])
def test_param_count_formula_matches_model(cfg):
    with torch.device("meta"):  # the paper-scale LLM without allocating 3 GB
        model = GPT(cfg)
    assert sum(p.numel() for p in model.parameters()) == param_count_formula(cfg)
    embeddings = model.wte.weight.numel() + model.wpe.weight.numel()
    assert non_embedding_params(cfg) == param_count_formula(cfg) - embeddings


def test_named_sizes_keep_the_papers_shapes_and_regime():
    slm, llm = model_config("slm", "default"), model_config("llm", "default")
    assert llm.n_layer == slm.n_layer and llm.n_head == slm.n_head and llm.context == slm.context
    # The paper's regime at the largest budget: the SLM past 300 tokens per parameter, the LLM (at
    # the SLM's FLOPs) past 45, and the LLM 3-4x the SLM's cost per token (the paper: 3.5x its hours).
    slm_tokens = get_scale("default").pretrain.slm_tokens
    llm_tokens = train_config("llm", "default").pretrain_flops / costs.train_flops_per_token(llm)
    assert slm_tokens / param_count_formula(slm) >= 300
    assert llm_tokens / param_count_formula(llm) >= 45
    assert 3 <= costs.train_flops_per_token(llm) / costs.train_flops_per_token(slm) <= 4
    paper_slm, paper_llm = model_config("slm", "paper"), model_config("llm", "paper")
    assert paper_llm.d_model / paper_slm.d_model == 2.75
    assert 115e6 < param_count_formula(paper_slm) < 130e6 and 740e6 < param_count_formula(paper_llm) < 790e6
    # Equal pretraining FLOPs for both kinds of a scale.
    assert train_config("slm", "default").pretrain_flops == train_config("llm", "default").pretrain_flops


def test_attention_is_causal():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=50, context=12, n_layer=2, n_head=2, d_model=16)).eval()
    x = torch.randint(0, 50, (2, 12))
    t = 6
    changed = x.clone()
    changed[:, t + 1:] = torch.randint(0, 50, (2, 12 - t - 1))
    with torch.no_grad():
        a, _ = model(x)
        b, _ = model(changed)
    assert torch.equal(a[:, :t + 1], b[:, :t + 1])
    assert not torch.allclose(a[:, t + 1:], b[:, t + 1:])


def test_uniform_model_perplexity_is_vocabulary_size():
    cfg = model_config("slm", "tiny")
    model = GPT(cfg)
    with torch.no_grad():
        model.wte.weight.zero_()  # tied: every logit is zero
    tokens = np.random.default_rng(0).integers(0, cfg.vocab_size, 2_000).astype(np.uint16)
    result = evaluate(model, tokens, batch_size=4, precision="fp32")
    assert result.ppl == pytest.approx(cfg.vocab_size, rel=1e-5)
    assert result.tokens == (2_000 - 1) // cfg.context * cfg.context
    assert macro_perplexity({"a": result, "b": replace(result, loss=2 * result.loss)}) == \
        pytest.approx(cfg.vocab_size ** 1.5, rel=1e-5)
    with pytest.raises(TypeError, match="list"):  # a perplexity and a loss are both floats: no guessing
        macro_perplexity({"a": result.ppl})
    # A sequence holds perplexities: the same average from the other side.
    assert macro_perplexity([result.ppl, result.ppl ** 2]) == pytest.approx(cfg.vocab_size ** 1.5, rel=1e-5)
    assert macro_perplexity(np.array([2.0, 8.0])) == pytest.approx(4.0)
    with pytest.raises(LabError):
        macro_perplexity([])
    with pytest.raises(LabError):
        evaluate(model, tokens[:cfg.context])


def test_generate_extends_the_prompt():
    model = GPT(GPTConfig(vocab_size=30, context=8, n_layer=1, n_head=1, d_model=8))
    out = model.generate(torch.zeros(2, 3, dtype=torch.long), 10, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 13) and int(out.max()) < 30
    assert math.isfinite(float(out.float().mean()))


def test_fast_cross_entropy_equals_the_plain_one():
    torch.manual_seed(0)
    logits = (3 * torch.randn(2, 16, 50)).requires_grad_()
    targets = torch.randint(0, 50, (2, 16))
    fast = cross_entropy(logits, targets)
    (grad_fast,) = torch.autograd.grad(2.5 * fast, logits)
    plain = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
    (grad_plain,) = torch.autograd.grad(2.5 * plain, logits)
    assert fast.item() == pytest.approx(plain.item(), rel=1e-6)
    assert torch.allclose(grad_fast, grad_plain, atol=1e-7)
    with torch.no_grad():
        assert cross_entropy(logits, targets).item() == pytest.approx(plain.item(), rel=1e-6)


def test_training_with_the_fast_loss_follows_the_plain_one(monkeypatch):
    """A few optimizer steps of the same model on the same batches: the fused loss changes
    nothing but the speed."""
    import lab.nn.model as model_module
    from lab.data.tokens import BatchSampler
    from lab.training.train import Trainer

    cfg = GPTConfig(vocab_size=64, context=16, n_layer=2, n_head=2, d_model=32)
    tokens = np.tile(np.arange(64), 80).astype(np.uint16)  # learnable: each token names the next
    tc = train_config("slm", "tiny")
    losses = {}
    for name, loss in (("fast", cross_entropy), ("plain", lambda lg, t: torch.nn.functional.cross_entropy(
            lg.float().flatten(0, -2), t.flatten()))):
        monkeypatch.setattr(model_module, "cross_entropy", loss)
        torch.manual_seed(0)
        trainer = Trainer(GPT(cfg), tc, BatchSampler(tokens, 4, cfg.context), device="cpu", progress=False)
        losses[name] = [trainer.train_step() for _ in range(20)]
    assert losses["fast"] == pytest.approx(losses["plain"], abs=1e-5)
    assert losses["fast"][-1] < losses["fast"][0]
