import dataclasses
from dataclasses import replace

import numpy as np
import pytest
import torch

from lab.training.evaluate import evaluate
from lab.training.finetune import finetune, finetune_config, FinetuneConfig
from lab.nn.model import GPT, GPTConfig, model_config
from lab.training.train import TrainConfig, train_config
from lab.scales import get_scale
from lab.data.tokens import BatchSampler, eval_windows, window_starts
from lab.training.train import Trainer, pretrain, seed_everything
from lab.nn.checkpoints import load_model, read_meta

CFG = GPTConfig(vocab_size=256, context=32, n_layer=2, n_head=2, d_model=32)


pytestmark = pytest.mark.usefixtures("one_thread")


def zipf_tokens(n, vocab=256, seed=0):
    """Skewed unigrams plus a repeated phrase: something a tiny model can learn quickly."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, vocab + 1)
    ids = rng.choice(vocab, size=n, p=p / p.sum())
    ids[::7] = 3
    return ids.astype(np.uint16)


class OneBatch:
    """A sampler that always returns the same batch."""
    context = CFG.context

    def __init__(self, tokens):
        chunk = torch.from_numpy(tokens[: 8 * (CFG.context + 1)].astype(np.int64)).view(8, CFG.context + 1)
        self.x, self.y = chunk[:, :-1], chunk[:, 1:]

    def next(self):
        return self.x, self.y

    def state_dict(self):
        return {}


def trainer_for(tokens, seed=0, **overrides):
    seed_everything(seed)
    cfg = TrainConfig(**{"batch_size": 8, "lr": 3e-3, "warmup_steps": 5, **overrides})
    return Trainer(GPT(CFG), cfg, BatchSampler(tokens, 8, CFG.context, seed=0), device="cpu", progress=False)


def test_one_batch_overfits():
    seed_everything(0)
    trainer = Trainer(GPT(CFG), TrainConfig(lr=1e-2, warmup_steps=5), OneBatch(zipf_tokens(1_000)),
                      device="cpu", progress=False)
    losses = []
    trainer.add_callback("on_batch_end", lambda t: losses.append(t.loss))
    trainer.train_until(100)
    assert losses[0] > 5.0 and losses[-1] < 0.3 * losses[0]
    assert trainer.tokens == 100 * 8 * CFG.context and trainer.flops > 0


def test_resume_continues_exactly(tmp_path):
    tokens = zipf_tokens(20_000)
    a = trainer_for(tokens)
    a.train_until(4)
    a.save(tmp_path / "ckpt")
    expected = [a.train_step() for _ in range(2)]

    b = trainer_for(tokens, seed=1)  # different initial weights, all overwritten by the checkpoint
    meta = b.load(tmp_path / "ckpt")
    assert meta["step"] == 4 and b.tokens == meta["tokens"]
    assert [b.train_step() for _ in range(2)] == expected


def test_schedule_warms_up_holds_and_cools_down():
    t = trainer_for(zipf_tokens(2_000), warmup_steps=10)
    assert t.learning_rate(0) == pytest.approx(3e-4) and t.learning_rate(9) == pytest.approx(3e-3)
    assert t.learning_rate(10_000) == pytest.approx(3e-3)  # no final length: constant after warm-up
    t.decay = (80, 100)
    assert t.learning_rate(79) == pytest.approx(3e-3) and t.learning_rate(80) == pytest.approx(3e-3)
    assert t.learning_rate(99) < 3e-3 * 0.03


def test_pretrain_checkpoints_equal_separate_runs_and_resume(tmp_path):
    tokens, valid = zipf_tokens(30_000), zipf_tokens(3_000, seed=1)
    cfg = TrainConfig(batch_size=4, lr=3e-3, warmup_steps=5, eval_every=10, eval_tokens=512)
    per_step = 4 * CFG.context
    events = []
    both = pretrain(CFG, cfg, tokens, tmp_path / "both", budget_tokens=[20 * per_step, 40 * per_step],
                    valid=valid, progress=False, callbacks={"on_checkpoint": [lambda t: events.append(t.step)]})
    assert [p.name for p in both] == ["step00000020", "step00000040"] and events == [20, 40]
    meta = read_meta(both[0])
    assert meta["step"] == 20 and meta["tokens"] == 20 * per_step and meta["decay"] == [16, 20]
    assert read_meta(both[1])["run_flops"] == pytest.approx(read_meta(both[1])["flops"] * 44 / 40)

    # The 20-step checkpoint of the long run is the 20-step run.
    short = pretrain(CFG, cfg, tokens, tmp_path / "grow", budget_tokens=[20 * per_step], progress=False)
    for a, b in zip(load_model(both[0]).parameters(), load_model(short[0]).parameters()):
        assert torch.equal(a, b)
    # Asking the short run for a longer budget continues it, to the same weights.
    grown = pretrain(CFG, cfg, tokens, tmp_path / "grow", budget_tokens=[20 * per_step, 40 * per_step],
                     progress=False)
    for a, b in zip(load_model(both[1]).parameters(), load_model(grown[1]).parameters()):
        assert torch.equal(a, b)
    assert read_meta(grown[1])["valid_loss"] is None  # no validation stream given
    assert read_meta(both[1])["valid_loss"] < read_meta(both[0])["valid_loss"]

    # A run that crashes resumes from its last periodic save and ends with the same weights.
    def crash(t):
        if t.step == 30 and t.decay is None:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pretrain(CFG, replace(cfg, save_every=7), tokens, tmp_path / "crash",
                 budget_tokens=[20 * per_step, 40 * per_step], progress=False, callbacks={"on_batch_end": [crash]})
    assert read_meta(tmp_path / "crash" / "main")["step"] == 28
    resumed = pretrain(CFG, cfg, tokens, tmp_path / "crash", budget_tokens=[20 * per_step, 40 * per_step],
                       progress=False)
    for a, b in zip(load_model(both[1]).parameters(), load_model(resumed[1]).parameters()):
        assert torch.equal(a, b)


def test_early_stopping_stops_and_restores_best(tmp_path):
    seed_everything(0)
    model = GPT(CFG)
    train, valid = zipf_tokens(600, seed=2), zipf_tokens(4_000, seed=3)
    # A high rate on 600 tokens: validation improves, then the model memorises and it worsens.
    cfg = FinetuneConfig(lr=2e-2, batch_size=8, warmup_steps=2, max_steps=400, eval_every=5, patience=3,
                         eval_tokens=2_048)
    evals = []
    model, record = finetune(model, train, valid, cfg, progress=False, device="cpu",
                             callbacks={"on_eval": [lambda t: evals.append(t.valid_loss)]})
    assert record.stopped_by == "patience" and record.steps < cfg.max_steps
    assert 0 < record.best_step < record.steps and record.best_step == record.steps - 3 * cfg.eval_every
    assert record.best_valid_loss < record.initial_valid_loss
    assert record.tokens_to_best == record.best_step * 8 * CFG.context
    assert 0 < record.flops_to_best < record.flops
    assert len(evals) == len(record.history)
    again = evaluate(model, valid, batch_size=8, max_tokens=cfg.eval_tokens, spread=True)
    assert again.loss == pytest.approx(record.best_valid_loss, abs=1e-6)


def test_spread_evaluation_samples_the_whole_split():
    # Two long documents: the first 512 tokens are all the first one; spread windows reach the second.
    valid = np.concatenate([np.full(2_000, 7), zipf_tokens(2_000, seed=4)]).astype(np.uint16)
    n = len(window_starts(len(valid), CFG.context))
    first, spread = eval_windows(len(valid), CFG.context, 512), eval_windows(len(valid), CFG.context, 512, spread=True)
    assert first.tolist() == list(range(16))
    assert len(spread) == 16 and (np.diff(spread) > 0).all() and spread[0] == 0 and spread[-1] == 15 * n // 16
    assert eval_windows(len(valid), CFG.context, 10 ** 9, spread=True).tolist() == list(range(n))
    seed_everything(0)
    model = GPT(CFG)
    starts = window_starts(len(valid), CFG.context)[spread]
    each = [evaluate(model, valid[s:s + CFG.context + 1]).loss for s in starts]
    assert evaluate(model, valid, batch_size=5, max_tokens=512, spread=True).loss == pytest.approx(np.mean(each), rel=1e-5)
    assert evaluate(model, valid, max_tokens=512).loss != pytest.approx(np.mean(each), rel=1e-3)


def test_finetune_recipe_scales_with_the_set():
    small, mid, large = (finetune_config("slm", "default", n) for n in (8_000, 64_000, 512_000))
    assert small.lr < mid.lr < large.lr <= 0.3 * train_config("slm", "default").lr
    assert mid.lr / small.lr == pytest.approx(8 ** 0.5)
    assert small.max_steps >= 100 and small.max_steps <= mid.max_steps < large.max_steps
    assert small.eval_tokens >= 32_768 and small.patience >= 3
    assert finetune_config("slm", "tiny", 2_000).eval_tokens <= get_scale("tiny").valid_tokens


def test_lr_scale_multiplies_the_recipe_rate_and_only_it():
    recipe = finetune_config("slm", "default", 64_000)
    assert finetune_config("slm", "default", 64_000, lr_scale=1.0) == recipe  # the study's cache keys stay
    swept = finetune_config("slm", "default", 64_000, lr_scale=0.3)
    assert swept.lr == pytest.approx(0.3 * recipe.lr)
    assert {k: v for k, v in swept.key().items() if k != "lr"} == {k: v for k, v in recipe.key().items() if k != "lr"}
    from lab.errors import LabError
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(LabError, match="give a positive multiple of the recipe's learning rate"):
            finetune_config("slm", "default", 64_000, lr_scale=bad)


def test_trainer_rejects_unknown_event():
    from lab.errors import LabError
    with pytest.raises(LabError):
        trainer_for(zipf_tokens(2_000)).add_callback("on_step", print)


def test_micro_batches_give_the_same_step():
    tokens = zipf_tokens(10_000)
    whole, split = trainer_for(tokens), trainer_for(tokens, micro_batch=2)
    assert whole.train_step() == pytest.approx(split.train_step(), rel=1e-5)
    # Adam's first step is about lr * sign(gradient), so a gradient near zero
    # that differs in the last float bits moves by up to a step: compare to 1% of one.
    for a, b in zip(whole.model.parameters(), split.model.parameters()):
        assert torch.allclose(a, b, atol=0.01 * whole.lr)


def test_named_scale_trains(tmp_path):
    cfg = model_config("slm", "tiny")
    tcfg = replace(train_config("slm", "tiny"), checkpoint_fractions=(0.05,))
    tokens = np.random.default_rng(0).integers(0, cfg.vocab_size, 20_000).astype(np.uint16)
    (path,) = pretrain(cfg, tcfg, tokens, tmp_path, progress=False)
    assert read_meta(path)["flops"] == pytest.approx(tcfg.checkpoint_flops[0], rel=0.05)


def test_runs_are_cached(tmp_path):
    from lab.methods.store import ResultStore
    from lab.methods.runs import pretrain_run, specialize_run
    store = ResultStore(tmp_path / "r.sqlite")
    cfg = model_config("slm", "tiny")
    tokens = zipf_tokens(30_000, vocab=cfg.vocab_size)
    flops = train_config("slm", "tiny").checkpoint_flops[:2]
    paths = pretrain_run("slm", "tiny", tokens, valid=tokens[:2_000], budget_flops=flops, store=store,
                         progress=False)
    stamp = (paths[1] / "meta.json").stat().st_mtime_ns
    assert pretrain_run("slm", "tiny", tokens, budget_flops=flops, store=store, progress=False) == paths
    assert (paths[1] / "meta.json").stat().st_mtime_ns == stamp
    domain = zipf_tokens(12_000, vocab=cfg.vocab_size, seed=5)
    args = (paths[1], "slm", "tiny", "legal", domain[:1_000], domain[2_000:7_000], domain[7_000:])
    row = specialize_run(*args, store=store, progress=False)
    again = specialize_run(*args, store=store, progress=False)
    assert again["cached"] and not row["cached"]
    assert dataclasses.replace(again, cached=False) == row
    df = store.load()
    assert list(df["method"]) == ["slm", "slm", "slm"] and list(df["domain"]) == ["generic", "generic", "legal"]
    assert row["ppl_after"] <= row["ppl_before"] and row["specialize_flops"] == row["extra"]["flops_to_best"]
    assert row["pretrain_flops"] == read_meta(paths[1])["flops"] and df["ppl_before"].notna().all()


def test_pretrain_refuses_to_resume_another_config(tmp_path):
    from lab.errors import LabError
    cfg = TrainConfig(batch_size=4, warmup_steps=2)
    tokens = zipf_tokens(5_000)
    pretrain(CFG, cfg, tokens, tmp_path, budget_tokens=[5 * 4 * CFG.context], progress=False)
    with pytest.raises(LabError, match="another model or training config"):
        pretrain(CFG, replace(cfg, lr=1e-4), tokens, tmp_path, budget_tokens=[10 * 4 * CFG.context],
                 progress=False)


def test_progress_bars_follow_the_caller_and_tqdm_disable(monkeypatch):
    from lab.progress import hidden

    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert hidden(True) and hidden(False)
    monkeypatch.setenv("TQDM_DISABLE", "0")
    assert not hidden(True) and hidden(False)
    monkeypatch.delenv("TQDM_DISABLE")
    assert not hidden(True)
