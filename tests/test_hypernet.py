"""SLM-hn: the generated-MLP model, its costs, its closed-form instantiation, the method row."""
import json
import math
from dataclasses import asdict, replace

import numpy as np
import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from lab.data.tokens import eval_windows, window_starts
from lab.errors import LabError
from lab.methods.store import ResultRow
from lab.nn import costs
from lab.nn.checkpoints import load_model, save_model
from lab.nn.hypernet import HyperConfig, HyperGPT, load_hypernet, param_count_hypernet
from lab.nn.model import GPT
from lab.training.evaluate import evaluate
from lab.training.routing import RoutedSampler, evaluate_routed
from lab.training.train import TrainConfig, Trainer, seed_everything

CFG = HyperConfig(vocab_size=97, context=16, n_layer=2, n_head=2, d_model=24, d_mlp=40,
                  n_experts=5, code_dim=3, bank_size=4)


pytestmark = pytest.mark.usefixtures("one_thread")


def trained_model(cfg=CFG, steps=5):
    """A hyper-network a few steps away from its initialisation (so experts differ for real)."""
    seed_everything(0)
    model = HyperGPT(cfg)
    tokens = np.random.default_rng(0).integers(0, cfg.vocab_size, 4_000).astype(np.uint16)
    ids = np.random.default_rng(1).integers(0, cfg.n_experts, len(window_starts(len(tokens), cfg.context)))
    trainer = Trainer(model, TrainConfig(lr=1e-2, warmup_steps=1), RoutedSampler(tokens, ids, 8, cfg.context),
                      device="cpu", progress=False)
    trainer.train_until(steps)
    return model.eval()


@pytest.mark.parametrize("bias", [False, True])
def test_param_count_formula(bias):
    cfg = replace(CFG, bias=bias)
    model = HyperGPT(cfg)
    assert sum(p.numel() for p in model.parameters()) == param_count_hypernet(cfg)
    # The shared part is the SLM's: attention, norms, embeddings, shapes and names.
    slm = dict(GPT(cfg.slm).named_parameters())
    for name, p in model.named_parameters():
        if name in slm:
            assert p.shape == slm[name].shape, name


def test_cost_formula_counts_the_weight_generation():
    model = HyperGPT(CFG)
    x = torch.randint(0, CFG.vocab_size, (4, CFG.context))
    distinct, repeated = torch.tensor([3, 1, 4, 0]), torch.tensor([3, 1, 3, 3])
    with sdpa_kernel(SDPBackend.MATH):
        with FlopCounterMode(display=False) as forward:
            model(x, None, distinct)
        with FlopCounterMode(display=False) as train:
            model(x, x, distinct)[1].backward()
        with FlopCounterMode(display=False) as train_repeated:
            model(x, x, repeated)[1].backward()
    slm_per_token = costs.train_flops_per_token(CFG.slm)
    # Every window its own expert: the formula is exact.
    assert train.get_total_flops() == CFG.train_flops(x.numel(), 1) == costs.train_flops(model, x.numel(), 1)
    assert train.get_total_flops() == x.numel() * slm_per_token + 3 * CFG.generation_flops(4)
    assert forward.get_total_flops() == x.numel() * costs.forward_flops_per_token(CFG.slm) + CFG.generation_flops(4)
    # Fewer experts than windows generate fewer weights: the formula never undercounts.
    assert train_repeated.get_total_flops() == x.numel() * slm_per_token + 3 * CFG.generation_flops(2)
    assert train_repeated.get_total_flops() < CFG.train_flops(x.numel(), 1)
    # At most k experts per step, and two steps cost twice one.
    assert CFG.experts_per_step(100) == CFG.n_experts
    assert CFG.train_flops(2 * 64 * 16, 2) == 2 * CFG.train_flops(64 * 16, 1)
    # Deployed, it is one SLM.
    assert costs.inference_flops_per_token(model) == costs.forward_flops_per_token(CFG.slm)


def test_instantiated_slm_loaded_back_equals_the_routed_model(tmp_path):
    model = trained_model()
    x = torch.randint(0, CFG.vocab_size, (6, CFG.context))
    experts = torch.tensor([2, 0, 2, 4, 1, 3])
    with torch.no_grad():
        routed, _ = model(x, None, experts)
    for e in experts.unique().tolist():
        path = save_model(model.instantiate(e), tmp_path / f"expert{e}", tokens=1, flops=1.0, seconds=0.0)
        slm = load_model(path).eval()
        assert type(slm) is GPT and slm.config == CFG.slm
        with torch.no_grad():
            logits, _ = slm(x[experts == e])
        torch.testing.assert_close(logits, routed[experts == e], rtol=1e-5, atol=1e-5)


def test_histogram_instantiation_is_the_weighted_sum_of_experts():
    model = trained_model()
    one_hot = np.eye(CFG.n_experts)[3]
    top = model.instantiate(3).state_dict()
    for name, value in model.instantiate(one_hot).state_dict().items():
        torch.testing.assert_close(value, top[name], rtol=0, atol=1e-7)
    p = np.array([0.1, 0.0, 0.5, 0.15, 0.25])
    mixed = model.instantiate(p).state_dict()
    experts = [model.instantiate(e).state_dict() for e in range(CFG.n_experts)]
    for name, value in mixed.items():
        expected = sum(w * experts[e][name] for e, w in enumerate(p)) if ".mlp." in name else experts[0][name]
        torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(LabError, match="summing to one"):
        model.instantiate(np.array([0.5, 0.2, 0.0, 0.0, 0.0]))
    with pytest.raises(LabError, match="does not exist"):
        model.instantiate(CFG.n_experts)


def test_routed_forward_needs_experts():
    model = HyperGPT(CFG)
    x = torch.randint(0, CFG.vocab_size, (2, CFG.context))
    with pytest.raises(LabError, match="expert"):
        model(x)
    with pytest.raises(LabError, match=r"\[0, 5\)"):
        model(x, None, torch.tensor([0, 5]))


class OneRoutedBatch:
    context = CFG.context

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        chunk = torch.randint(0, CFG.vocab_size, (8, CFG.context + 1), generator=g)
        self.batch = chunk[:, :-1], chunk[:, 1:], torch.tensor([0, 1, 1, 2, 3, 3, 4, 0])

    def next(self):
        return self.batch

    def state_dict(self):
        return {}


def test_one_batch_overfits():
    seed_everything(0)
    trainer = Trainer(HyperGPT(CFG), TrainConfig(lr=1e-2, warmup_steps=5), OneRoutedBatch(), device="cpu",
                      progress=False)
    losses = []
    trainer.add_callback("on_batch_end", lambda t: losses.append(t.loss))
    trainer.train_until(150)
    assert losses[0] > 4.0 and losses[-1] < 0.5 * losses[0]
    assert trainer.flops == 150 * CFG.train_flops(8 * CFG.context, 1)


def test_micro_batches_carry_their_experts():
    """Gradient accumulation splits the expert ids with the windows: same loss as one pass."""
    losses = []
    for micro in (0, 3):
        seed_everything(0)
        trainer = Trainer(HyperGPT(CFG), TrainConfig(lr=1e-2, warmup_steps=1, micro_batch=micro),
                          OneRoutedBatch(), device="cpu", progress=False)
        trainer.train_until(3)
        losses.append(trainer.loss)
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)


def test_routed_sampler_and_evaluation_follow_the_window_clusters():
    tokens = np.random.default_rng(0).integers(0, CFG.vocab_size, 3_000).astype(np.uint16)
    starts = window_starts(len(tokens), CFG.context)
    ids = np.arange(len(starts)) % CFG.n_experts
    sampler = RoutedSampler(tokens, ids, 16, CFG.context, seed=0)
    x, y, e = sampler.next()
    assert (np.diff(e.numpy()) >= 0).all()  # grouped by expert
    for row, expert in zip(x, e):
        (j,) = np.flatnonzero([np.array_equal(tokens[s:s + CFG.context], row.numpy()) for s in starts])[:1]
        assert ids[j] == expert
    with pytest.raises(LabError, match="windows"):
        RoutedSampler(tokens, ids[:-1], 16, CFG.context)
    # Routed evaluation of expert-e windows equals evaluating the instantiated SLM of e.
    model = trained_model()
    same = np.full(len(starts), 2)
    routed = evaluate_routed(model, tokens, window_experts=same)
    assert routed.loss == pytest.approx(evaluate(model.instantiate(2), tokens).loss, rel=1e-5)
    # A budgeted, spread evaluation takes each picked window through its own cluster's expert.
    picked = eval_windows(len(tokens), CFG.context, 8 * CFG.context, spread=True)
    each = [evaluate(model.instantiate(int(ids[j])), tokens[starts[j]:starts[j] + CFG.context + 1]).loss for j in picked]
    spread = evaluate_routed(model, tokens, window_experts=ids, max_tokens=8 * CFG.context, spread=True, batch_size=3)
    assert spread.loss == pytest.approx(np.mean(each), rel=1e-5)


def test_checkpoint_round_trip(tmp_path):
    model = trained_model()
    tokens = np.random.default_rng(0).integers(0, CFG.vocab_size, 4_000).astype(np.uint16)
    ids = np.zeros(len(window_starts(len(tokens), CFG.context)), dtype=np.int64)
    trainer = Trainer(model, TrainConfig(), RoutedSampler(tokens, ids, 8, CFG.context), device="cpu", progress=False)
    trainer.save(tmp_path / "ckpt")
    assert json.loads((tmp_path / "ckpt" / "meta.json").read_text())["model_config"] == asdict(CFG)
    back = load_hypernet(tmp_path / "ckpt")
    for name, value in model.state_dict().items():
        torch.testing.assert_close(back.state_dict()[name], value, rtol=0, atol=0)
    save_model(model.instantiate(0), tmp_path / "plain", tokens=0, flops=0.0, seconds=0.0)
    with pytest.raises(LabError, match="plain model"):
        load_hypernet(tmp_path / "plain")


def test_specialize_row_and_cache(tiny_corpus):
    from lab import methods
    from lab.methods.hypernet import hyper_config
    from lab.nn.model import model_config
    from lab.training.train import train_config

    scale, domain = "tiny", "legal"
    set_tokens = min(tiny_corpus.scale.set_tokens)
    rows = methods.pretrain("slm-hn", scale, progress=False)
    slm_budget = train_config("slm", scale).pretrain_flops
    assert [r["pretrain_flops"] for r in rows] == sorted(r["pretrain_flops"] for r in rows)
    assert rows[-1]["pretrain_flops"] == pytest.approx(slm_budget, rel=0.01)
    assert rows[-1]["valid_loss"] < rows[0]["valid_loss"]

    first = methods.specialize("slm-hn", domain, set_tokens, scale, progress=False)
    for field in ResultRow.REPORTED:
        assert first.get(field) is not None, field
    assert first["cached"] is False
    assert first["inference_flops_per_token"] == costs.forward_flops_per_token(model_config("slm", scale))
    assert first["pretrain_flops"] == rows[-1]["pretrain_flops"]
    assert math.isfinite(first["ppl_before"]) and math.isfinite(first["ppl_after"])
    extra = first["extra"]
    assert extra["instantiate"] == "top" and extra["experts"] == hyper_config(scale).n_experts
    assert sum(extra["histogram"]) == pytest.approx(1.0)
    assert extra["top_cluster"] == int(np.argmax(extra["histogram"]))
    assert load_model(extra["instance_checkpoint"]).config == model_config("slm", scale)

    again = methods.specialize("slm-hn", domain, set_tokens, scale, progress=False)
    assert again["cached"] is True and again["ppl_after"] == first["ppl_after"]

    mixed = methods.specialize("slm-hn", domain, set_tokens, scale, progress=False, instantiate="histogram")
    assert mixed["cached"] is False and mixed["extra"]["instantiate"] == "histogram"
    assert mixed["extra"]["histogram"] == extra["histogram"]
    with pytest.raises(LabError, match="--instantiate .mean.: choose one of top, histogram"):
        methods.specialize("slm-hn", domain, set_tokens, scale, progress=False, instantiate="mean")


def test_cli_specialize_slm_hn(tiny_corpus, capsys):
    from lab.cli import main

    args = ["specialize", "--method", "slm-hn", "--scale", "tiny", "--domain", "legal",
            "--set-tokens", str(min(tiny_corpus.scale.set_tokens)), "--json"]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["method"] == "slm-hn" and first["ppl_after"] > 0
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["cached"] is True
