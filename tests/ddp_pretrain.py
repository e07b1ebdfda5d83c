"""One pretraining run under torchrun, for tests/test_distributed.py (not a test itself).

    torchrun --nproc_per_node=2 tests/ddp_pretrain.py OUT_DIR STEPS [STEPS ...]

Trains the tiny SLM to a checkpoint at each number of STEPS through `lab.methods.runs.pretrain_run`
(the path of `python -m lab pretrain`), and rank 0 writes the loss of every step to OUT_DIR/losses.json.
"""
import json
import sys
from dataclasses import replace
from pathlib import Path

from lab.data.corpus import GENERIC, load_corpus
from lab.methods.runs import pretrain_run
from lab.nn.model import model_config
from lab.training import distributed
from lab.training.train import train_config


def main(out: Path, steps: list[int]) -> None:
    distributed.setup()
    corpus = load_corpus("tiny")
    cfg, tc = config()
    losses = []
    pretrain_run("slm", "tiny", corpus.tokens(GENERIC, "train"), valid=corpus.tokens(GENERIC, "validation"),
                 budget_flops=[s * flops_per_step(cfg, tc) for s in steps], train_cfg=tc,
                 callbacks={"on_batch_end": [lambda t: losses.append((t.step, t.loss))]}, progress=False)
    if distributed.is_main():
        out.mkdir(parents=True, exist_ok=True)
        (out / "losses.json").write_text(json.dumps(losses))
    distributed.teardown()


def config():
    """The tiny SLM with a short warm-up, a main-run save every 2 steps and a small evaluation."""
    return model_config("slm", "tiny"), replace(train_config("slm", "tiny"), warmup_steps=2, save_every=2,
                                                eval_every=0, eval_tokens=1024)


def flops_per_step(cfg, tc) -> float:
    from lab.nn import costs

    return costs.train_flops(cfg, tc.batch_size * cfg.context, 1)


if __name__ == "__main__":
    main(Path(sys.argv[1]), [int(s) for s in sys.argv[2:]])
