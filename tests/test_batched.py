"""Fine-tunes stacked into one model train as they would one by one (`lab.training.batched`)."""
import numpy as np
import pytest
import torch

from lab.errors import LabError
from lab.nn.model import GPT, GPTConfig
from lab.training.batched import finetune_many
from lab.training.finetune import FinetuneConfig, finetune

CFG = GPTConfig(vocab_size=64, context=16, n_layer=2, n_head=2, d_model=32)
CONFIG = FinetuneConfig(lr=3e-3, batch_size=4, warmup_steps=5, max_steps=150, eval_every=10, patience=2,
                        eval_tokens=1024, seed=0, precision="fp32")


def _chain(seed: int, n: int) -> np.ndarray:
    """A first-order Markov stream: learnable, different per seed."""
    rng = np.random.default_rng(seed)
    table = rng.dirichlet(np.full(CFG.vocab_size, 0.1), size=CFG.vocab_size)
    out = np.empty(n, dtype=np.int64)
    out[0] = 0
    for i in range(1, n):
        out[i] = rng.choice(CFG.vocab_size, p=table[out[i - 1]])
    return out


def _models(n: int) -> list[GPT]:
    models = []
    for seed in range(n):
        torch.manual_seed(seed)
        models.append(GPT(CFG))
    return models


def test_stacked_fine_tunes_match_lone_ones(one_thread):
    # A tiny set overfits and stops early; the two larger ones train longer, so the stack shrinks midway.
    streams = [_chain(s, 6_000) for s in range(3)]
    trains = [streams[0][:60], streams[1][:4_000], streams[2][:4_000]]
    valids = [s[4_000:] for s in streams]
    lone = [finetune(m, t, v, CONFIG, device="cpu", progress=False) for m, t, v in zip(_models(3), trains, valids)]
    stacked = finetune_many(_models(3), trains, valids, CONFIG, device="cpu")
    assert len({record.steps for _, record in lone}) > 1  # members left the stack at different steps
    for (m1, r1), (m2, r2) in zip(lone, stacked):
        assert [s for s, _ in r2.history] == [s for s, _ in r1.history]
        assert [loss for _, loss in r2.history] == pytest.approx([loss for _, loss in r1.history], rel=1e-4)
        assert (r2.best_step, r2.steps, r2.stopped_by) == (r1.best_step, r1.steps, r1.stopped_by)
        assert (r2.flops_to_best, r2.flops, r2.tokens_to_best) == (r1.flops_to_best, r1.flops, r1.tokens_to_best)
        assert r2.eval_flops == r1.eval_flops and r2.trained_params == r1.trained_params
        for (name, a), b in zip(m1.state_dict().items(), m2.state_dict().values()):
            assert torch.allclose(a, b, atol=2e-4), name


def test_stacks_hold_one_shape_and_full_fine_tunes():
    small, other = GPT(CFG), GPT(GPTConfig(vocab_size=64, context=16, n_layer=1, n_head=2, d_model=32))
    data = _chain(0, 500)
    with pytest.raises(LabError, match="one shape"):
        finetune_many([small, other], [data, data], [data, data], CONFIG)
    with pytest.raises(LabError, match="one training and one validation set per model"):
        finetune_many([small], [data, data], [data], CONFIG)
    lora = FinetuneConfig(**{**CONFIG.__dict__, "lora_rank": 4})
    with pytest.raises(LabError, match="LoRA"):
        finetune_many([small], [data], [data], lora)
