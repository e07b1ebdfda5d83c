"""SLM-mix: batched experts train as lone models, extract to plain SLMs, cost one SLM at
inference, and pick experts by the rules they claim."""
import numpy as np
import pytest
import torch

from lab.data.tokens import BatchSampler, window_starts
from lab.errors import LabError
from lab.methods.store import ResultRow
from lab.nn import costs
from lab.nn.checkpoints import load_model, read_meta
from lab.nn.mixture import BatchedGPT, experts_in, extract, load_mixture, route
from lab.nn.model import GPT, GPTConfig, model_config
from lab.training.routing import ExpertSampler, expert_seed, expert_starts, pretrain_mixture, routed_evaluate
from lab.training.train import TrainConfig, Trainer, seed_everything

CFG = GPTConfig(vocab_size=128, context=16, n_layer=2, n_head=2, d_model=16)
K = 3


pytestmark = pytest.mark.usefixtures("one_thread")


def clustered_stream(n_windows=300, k=K, seed=0):
    """Windows whose tokens come from cluster-specific vocabulary ranges, and their cluster ids."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, k, n_windows)
    width = CFG.vocab_size // k
    tokens = np.concatenate([rng.integers(c * width, (c + 1) * width, CFG.context) for c in ids])
    tokens = np.concatenate([tokens, tokens[:1]]).astype(np.uint16)  # the last window's target token
    assert len(window_starts(len(tokens), CFG.context)) == n_windows
    return tokens, ids


def test_batched_experts_train_like_lone_models():
    tokens, ids = clustered_stream()
    starts = expert_starts(tokens, ids, K, CFG.context)
    # A tight clip, so that clipping acts, and per expert (the experts' norms differ).
    cfg = TrainConfig(batch_size=4, lr=3e-3, warmup_steps=2, grad_clip=0.5)
    seed_everything(0)
    mixture = BatchedGPT(CFG, K)
    lone = [mixture.expert(e) for e in range(K)]
    batched = Trainer(mixture, cfg, ExpertSampler(tokens, starts, 4, CFG.context, seed=0), device="cpu",
                      progress=False)
    alone = [Trainer(m, cfg, BatchSampler(tokens, 4, CFG.context, seed=expert_seed(0, e), starts=starts[e]),
                     device="cpu", progress=False) for e, m in enumerate(lone)]
    for _ in range(6):
        total = batched.train_step()
        assert total == pytest.approx(np.mean([t.train_step() for t in alone]), rel=1e-5)
    for e, trainer in enumerate(alone):
        for (name, a), b in zip(mixture.expert(e).named_parameters(), trainer.model.parameters()):
            assert torch.allclose(a, b, atol=1e-6, rtol=1e-5), (e, name)
    assert batched.tokens == K * sum(t.tokens for t in alone) / K == 6 * K * 4 * CFG.context


def test_costs_are_the_experts_costs():
    mixture = BatchedGPT(CFG, K)
    n = 3 * 4096
    assert costs.train_flops(mixture, n) == sum(costs.train_flops(mixture.expert(e), n // K) for e in range(K))
    assert costs.inference_flops_per_token(mixture) == costs.inference_flops_per_token(GPT(CFG))


def test_checkpoints_extract_to_plain_slms_that_route_exactly(tmp_path):
    tokens, ids = clustered_stream()
    cfg = TrainConfig(batch_size=4, lr=3e-3, warmup_steps=2, save_every=0)
    per_step = K * 4 * CFG.context
    budgets = [costs.train_flops(CFG, 10 * per_step), costs.train_flops(CFG, 20 * per_step)]
    paths = pretrain_mixture(CFG, cfg, tokens, ids, K, tmp_path / "mix", budget_flops=budgets, progress=False)
    meta = read_meta(paths[1])
    assert [read_meta(p)["step"] for p in paths] == [10, 20]
    assert meta["tokens"] == 20 * per_step and meta["flops"] == pytest.approx(budgets[1])
    assert experts_in(paths[1]) == K
    # The same budgets again reuse the checkpoints.
    stamp = (paths[1] / "meta.json").stat().st_mtime_ns
    assert pretrain_mixture(CFG, cfg, tokens, ids, K, tmp_path / "mix", budget_flops=budgets,
                            progress=False) == paths
    assert (paths[1] / "meta.json").stat().st_mtime_ns == stamp

    mixture = load_mixture(paths[1])
    starts = window_starts(len(tokens), CFG.context)[:24]
    idx = torch.from_numpy(tokens[starts[:, None] + np.arange(CFG.context)].astype(np.int64))
    routed = route(mixture, idx, ids[:24])
    for e in range(K):
        expert = load_model(extract(paths[1], e))
        assert type(expert) is GPT and read_meta(extract(paths[1], e))["expert"] == e
        mine = torch.from_numpy(ids[:24] == e)
        with torch.no_grad():
            assert torch.equal(expert.eval()(idx[mine])[0], routed[mine])

    # Routed evaluation: every window scored by its own expert, the loss the token-weighted mean.
    ev = routed_evaluate(mixture, tokens, ids)
    assert ev.tokens == sum(ev.expert_tokens) == len(ids) * CFG.context
    assert ev.loss == pytest.approx(np.dot(ev.expert_loss, ev.expert_tokens) / ev.tokens)
    # Experts trained on their own vocabulary range beat the others on it.
    wrong = routed_evaluate(mixture, tokens, (ids + 1) % K)
    assert ev.loss < wrong.loss


def test_sampler_draws_each_expert_from_its_cluster():
    tokens, ids = clustered_stream()
    sampler = ExpertSampler(tokens, expert_starts(tokens, ids, K, CFG.context), 5, CFG.context, seed=3)
    x, y = sampler.next()
    assert x.shape == (5, K, CFG.context) and sampler.tokens_per_batch == 5 * K * CFG.context
    width = CFG.vocab_size // K
    for e in range(K):
        assert ((x[:, e] >= e * width) & (x[:, e] < (e + 1) * width)).all()
    state = sampler.state_dict()
    again = ExpertSampler(tokens, expert_starts(tokens, ids, K, CFG.context), 5, CFG.context, seed=0)
    again.load_state_dict(state)
    assert torch.equal(sampler.next()[0], again.next()[0])
    with pytest.raises(LabError, match="no generic windows"):
        ExpertSampler(tokens, [np.array([0]), np.array([], dtype=np.int64)], 5, CFG.context)


def test_selection_rules_pick_what_they_say_and_count_their_cost(tmp_path):
    from lab.methods.mixture import select_expert

    tokens, ids = clustered_stream()
    cfg = TrainConfig(batch_size=8, lr=1e-2, warmup_steps=2, save_every=0)
    (path,) = pretrain_mixture(CFG, cfg, tokens, ids, K, tmp_path, budget_flops=[costs.train_flops(
        CFG, 30 * K * 8 * CFG.context)], progress=False)
    mixture = load_mixture(path)
    domain = tokens[np.concatenate([np.arange(s, s + CFG.context) for s in expert_starts(tokens, ids, K,
                                                                                           CFG.context)[2]])]

    top = select_expert("top", mixture, np.array([0.2, 0.5, 0.3]), domain)
    assert top.expert == 1 and top.flops == 0

    loss = select_expert("loss", mixture, np.array([0.2, 0.5, 0.3]), domain)
    assert loss.expert == 2 == int(np.argmin(loss.scores))
    scored = (len(domain) - 1) // CFG.context * CFG.context
    assert loss.flops == K * scored * costs.forward_flops_per_token(CFG)

    fake = {e: {"extra": {"best_valid_loss": v}, "specialize_flops": 10.0 * (e + 1), "specialize_tokens": 100,
                "seconds": 1.0} for e, v in enumerate([3.0, 1.0, 2.0])}
    every = select_expert("all", mixture, np.array([0.2, 0.5, 0.3]), domain, fake.__getitem__)
    assert every.expert == 1 and every.flops == 10.0 + 30.0 and every.tokens == 200
    assert every.finetuned == fake
    with pytest.raises(LabError, match="unknown expert selection"):
        select_expert("best", mixture, np.array([0.2, 0.5, 0.3]), domain)


def test_crossover_finds_where_the_mixture_starts_to_win():
    import pandas as pd

    from lab.analysis.mixture import crossover

    flops = [1e9, 2e9, 4e9, 8e9]
    curves = pd.DataFrame({"method": ["slm"] * 4 + ["mix"] * 4, "pretrain_flops": flops * 2,
                           "ppl": [100, 80, 70, 65] + [120, 90, 60, 50]})
    c = crossover(curves, "mix")
    assert c["first_win_flops"] == 4e9 and 2e9 < c["crossover_flops"] < 4e9
    never = crossover(curves.assign(ppl=[1, 1, 1, 1, 2, 2, 2, 2]), "mix")
    assert never["first_win_flops"] is None and never["crossover_flops"] is None


def test_specialize_slm_mix_row_and_cache(tiny_corpus):
    from lab import methods
    from lab.methods.mixture import EXPERT_METHOD  # noqa: F401 (the query below names it)
    from lab.methods.store import load_results

    rows = methods.pretrain("slm-mix", "tiny", progress=False)
    assert [r["pretrain_flops"] for r in rows] == sorted(r["pretrain_flops"] for r in rows)
    assert rows[-1]["valid_loss"] < rows[0]["valid_loss"]
    last = rows[-1]
    assert last["pretrain_tokens"] == sum(last["expert_tokens"]) and len(last["expert_windows"]) == 4

    domain = tiny_corpus.domains[0]
    top = methods.specialize("slm-mix", domain, 8_000, "tiny", progress=False)
    for field in ResultRow.REPORTED:
        assert field in top, field
    assert top["method"] == "slm-mix" and not top["cached"]
    assert top["ppl_after"] < top["ppl_before"]
    assert top["pretrain_flops"] == pytest.approx(last["pretrain_flops"])
    assert top["inference_flops_per_token"] == costs.inference_flops_per_token(model_config("slm", "tiny"))
    assert type(load_model(top["extra"]["expert_checkpoint"])) is GPT
    x = top["extra"]
    assert x["expert"] == x["top_cluster"] == int(np.argmax(x["histogram"])) and x["selection"] == "top"
    assert sum(x["histogram"]) == pytest.approx(1.0) and x["selection_flops"] == 0
    assert methods.specialize("slm-mix", domain, 8_000, "tiny", progress=False)["cached"]

    every = methods.specialize("slm-mix", domain, 8_000, "tiny", progress=False, selection="all")
    tunes = load_results("tiny").query("method == @EXPERT_METHOD and domain == @domain")
    assert len(tunes) == 4  # one fine-tuning per expert, the "top" one reused
    assert every["specialize_flops"] == pytest.approx(tunes["specialize_flops"].sum())
    best = [t["best_valid_loss"] for t in tunes["extra"]]
    assert every["extra"]["best_valid_loss"] == min(best)
    with pytest.raises(LabError, match="not k"):
        methods.specialize("slm-mix", domain, 8_000, "tiny", k=4)
