import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from lab.nn import costs
from lab.nn.model import GPT, GPTConfig, model_config

CFG = GPTConfig(vocab_size=97, context=16, n_layer=2, n_head=2, d_model=24, d_mlp=40)


def test_matmul_params_are_the_linear_layers_including_the_tied_head():
    model = GPT(CFG)
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    assert costs.matmul_params(CFG) == linear  # lm_head shares wte's weight but is its own matmul


def _counted(model) -> tuple[int, int, int]:
    """Tokens of a 3-window batch, and the FLOPs PyTorch's counter sees for its forward pass and its training step."""
    x = torch.randint(0, CFG.vocab_size, (3, CFG.context))
    # The math backend runs attention as plain matmuls, which the counter sees.
    with sdpa_kernel(SDPBackend.MATH):
        with FlopCounterMode(display=False) as forward:
            model(x)
        with FlopCounterMode(display=False) as train:
            model(x, x)[1].backward()
    return x.numel(), forward.get_total_flops(), train.get_total_flops()


def test_flops_match_a_measured_count():
    model = GPT(CFG)
    tokens, forward, train = _counted(model)
    assert forward == tokens * costs.forward_flops_per_token(CFG)
    assert train == tokens * costs.train_flops_per_token(CFG)
    assert costs.train_flops(model, tokens) == train
    assert costs.inference_flops_per_token(model) == forward / tokens


def test_paper_style_six_n():
    cfg = model_config("slm", "paper")
    n = costs.matmul_params(cfg)
    attention = 12 * cfg.n_layer * cfg.context * cfg.d_model
    assert costs.train_flops_per_token(cfg) == 6 * n + attention
    assert 0.05 < attention / (6 * n) < 0.15


def test_models_with_their_own_costs_are_asked():
    class Generated(GPT):
        def train_flops(self, n_tokens, n_steps):
            return n_tokens * 10 + n_steps * 1_000

        def inference_flops_per_token(self):
            return 7

    model = Generated(CFG)
    assert costs.train_flops(model, 100, 3) == 4_000
    assert costs.inference_flops_per_token(model) == 7
    assert costs.total_flops(100.0, 10.0, n_domains=7) == pytest.approx(170.0)


@pytest.mark.parametrize("rank", [1, 4])
def test_lora_flops_match_a_measured_count(rank):
    from lab.training.lora import LoraGPT, trained_params

    model = LoraGPT(GPT(CFG), rank)
    assert trained_params(model) == costs.lora_params(CFG, rank) < costs.matmul_params(CFG)
    tokens, forward, train = _counted(model)
    assert forward == tokens * costs.lora_forward_flops_per_token(CFG, rank)
    assert train == tokens * costs.lora_train_flops_per_token(CFG, rank)
    assert costs.train_flops(model, tokens) == train
    # Cheaper than full training: the frozen weights' gradients are never formed.
    assert costs.lora_train_flops_per_token(CFG, rank) < costs.train_flops_per_token(CFG)
    merged = model.merged()
    assert type(merged) is GPT and costs.inference_flops_per_token(merged) == costs.forward_flops_per_token(CFG)
