"""LoRA fine-tuning (peft): fewer trained weights, FLOPs by their formula, its own cache key, one-line refusals."""
import pytest

from lab import methods
from lab.cli import main
from lab.errors import LabError
from lab.methods.base import finetune_flops
from lab.nn import costs
from lab.nn.model import model_config, param_count_formula

SCALE = "tiny"
RANK = 4


def test_lora_trains_fewer_weights_and_its_row_follows_the_formula(tiny_corpus, one_thread):
    n = tiny_corpus.scale.set_tokens[0]
    cfg = model_config("slm", SCALE)
    full = methods.specialize("slm", "medicine", n, SCALE, progress=False)
    lora = methods.specialize("slm", "medicine", n, SCALE, progress=False, lora_rank=RANK)
    assert not lora["cached"] and lora.cache_key != full.cache_key  # its own cache key
    assert methods.specialize("slm", "medicine", n, SCALE, progress=False, lora_rank=RANK)["cached"]
    e, f = lora["extra"], full["extra"]
    assert e["lora_rank"] == RANK and f["lora_rank"] == 0
    assert e["trained_params"] == costs.lora_params(cfg, RANK) < f["trained_params"] == param_count_formula(cfg)
    # Specialization FLOPs are the LoRA step's, by the formula, up to the kept weights.
    tokens_per_step = e["tokens_to_best"] / max(e["best_step"], 1)
    assert e["best_step"] > 0
    assert lora["specialize_flops"] == pytest.approx(e["tokens_to_best"] * costs.lora_train_flops_per_token(cfg, RANK))
    assert e["flops"] == pytest.approx(e["steps"] * tokens_per_step * costs.lora_train_flops_per_token(cfg, RANK))
    # The adapters are merged: the deployed model is the plain SLM, at its inference cost.
    assert lora["inference_flops_per_token"] == full["inference_flops_per_token"]
    assert lora["ppl_after"] < lora["ppl_before"] == pytest.approx(full["ppl_before"])
    # A study prices a LoRA step below a full one, by the same formula.
    assert finetune_flops("slm", SCALE, n, lora_rank=RANK) < finetune_flops("slm", SCALE, n)


def test_every_method_that_fine_tunes_takes_a_rank_or_says_why_not():
    takers = {name for name, m in methods.METHODS.items() if m.option("lora_rank")}
    assert takers >= {"slm", "llm", "slm-d", "slm-is", "slm-mix", "slm-hn"}
    # The rate benchmark sweeps every one of them (`benchmarks/bench_finetune_lr.py`).
    assert {name for name, m in methods.METHODS.items() if m.option("lr_scale")} == takers
    with pytest.raises(LabError, match="slm-nopt cannot take lora_rank: it trains every weight from random"):
        methods.get("slm-nopt").check_options({"lora_rank": RANK})
    with pytest.raises(LabError, match=r"slm-mix: --lora-rank -2: give a rank of 0 \(full fine-tuning\) or more"):
        methods.get("slm-mix").check_options({"lora_rank": -2})


@pytest.mark.parametrize("argv, message", [
    (("--method", "slm", "--lora-rank", "-1"), "slm: --lora-rank -1: give a rank of 0"),
    (("--method", "slm-nopt", "--lora-rank", "8"), "slm-nopt cannot take lora_rank"),
])
def test_bad_ranks_are_one_line_at_the_command_line(tiny_corpus, capsys, argv, message):
    rc = main(["specialize", "--domain", "legal", "--set-tokens", "2000", "--scale", SCALE, *argv])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1 and message in err, err
