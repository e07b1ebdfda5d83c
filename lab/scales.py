"""Every per-scale number of the lab, resolved once into a `Scale` that is passed down.

`tiny` is a smoke scale of minutes (tests, CI), `default` is the embedded default for a
laptop CPU, `paper` follows the paper's shapes and reads c4 and the Pile from
the Hugging Face hub. A `Scale` holds the data (corpus, vocabulary, context,
in-domain set sizes), the model shapes, the pretraining and fine-tuning
recipes, the cluster and expert counts of the methods, and the study's curves.
The components build their own configs from it (`lab.nn.model.model_config`,
`lab.training.train.train_config`, `lab.training.finetune.finetune_config`);
no other module asks which scale it is.

Call `get_scale` once where a name comes in (the command line, a notebook's
parameter) and pass the `Scale` on; functions that take a scale accept either
and resolve names the same way.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .errors import LabError


@dataclass(frozen=True)
class Shapes:
    """Both models of a scale: the LLM keeps the SLM's depth, context and heads and is wider."""
    n_layer: int
    n_head: int
    slm_width: int
    llm_width: int


@dataclass(frozen=True)
class PretrainRecipe:
    """The pretraining numbers that differ by scale (the rest are `TrainConfig`'s defaults)."""
    slm_tokens: int
    """Largest pretraining budget, in tokens of the scale's SLM; the LLM gets the same FLOPs."""
    warmup_steps: int
    batch_size: int = 8
    micro_batch: int = 0
    slm_lr: float = 3e-3
    llm_lr: float = 3e-3
    eval_every: int = 500
    eval_tokens: int = 65_536
    save_every: int = 2_000


@dataclass(frozen=True)
class FinetuneRecipe:
    """Fine-tuning: sequences per batch, validation tokens per evaluation, the fewest steps the
    cap allows, and the learning rate on the smallest set as a share of the pretraining rate."""
    batch_size: int
    eval_tokens: int
    min_steps: int
    lr_share: float


@dataclass(frozen=True)
class Scale:
    name: str
    vocab_size: int
    context: int
    set_tokens: tuple[int, int, int]
    """Nested in-domain training-set sizes, the paper's 1M:8M:64M ratio."""
    valid_tokens: int
    test_tokens: int
    source_chars: int | None
    """Cap on characters read from each source (None: all of it)."""
    shapes: Shapes
    pretrain: PretrainRecipe
    finetune: FinetuneRecipe
    cluster_ks: tuple[int, ...]
    """k-means sizes clustered (and cached) together. The paper used 4-1024 (k=16 for mixtures,
    32 for hyper-networks, 1024 for importance sampling); smaller corpora hold fewer windows
    per cluster."""
    mixture_experts: int
    """SLM-mix's experts. The paper's main results use 16; so does `default`, whose experts each see
    1/16 of the SLM's 72M tokens (docs/regime.md, section 6)."""
    mixture_ablation: tuple[int, ...]
    """Expert counts of the mixture ablation (the paper's Figure 11), among `cluster_ks`."""
    hypernet: tuple[int, int, int]
    """SLM-hn's (k experts, code size m, bank size h). The paper's main results use k = 32;
    k must be one of `cluster_ks` to avoid re-clustering."""
    hypernet_ablation: tuple[int, ...]
    """Expert counts of the hyper-network ablation (the paper's Figure 7), at the scale's bank size."""
    importance_k: int
    """SLM-is's clusters (the paper used 1024)."""
    importance_budget: float = 0.25
    """SLM-is's default specialization budget (training on the resampled stream), as a share of the
    SLM's largest pretraining FLOPs: the paper's SLM-is gets 130 of the SLM's 530 GPU-hours."""
    importance_sets: tuple[int, ...] | None = None
    """The study's set sizes SLM-is trains on (indices into `set_tokens`; None: the curve sets).
    The paper's decision rule (finding 8) is about the middle and large sets."""
    curve_sets: tuple[int, ...] = (0, 1)
    """The study's set sizes specialized from every checkpoint (indices into `set_tokens`): the paper's Figure 4
    draws all three. The largest set's curve costs most (its fine-tunes run longest), so only `paper`
    draws it by default; `lab study --curve-sets` adds it at any scale."""
    curve_fractions: tuple[float, ...] | None = None
    """The checkpoint shares those curves use (None: every checkpoint)."""
    study_domains: tuple[str, ...] | None = None
    """The domains the study and the notebooks cover unless told (None: every domain of the corpus)."""
    generic_share: float = 0.3
    """Share of each domain source's documents given to the generic corpus."""
    tokenizer_sample_chars: int = 40_000_000
    corpus: str = "embedded"
    """"embedded" (built from packages) or "hub" (c4 + Pile through `datasets`)."""
    seed: int = 0
    extra: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return self.name


SCALES: dict[str, Scale] = {
    "tiny": Scale(
        name="tiny", vocab_size=1024, context=64,
        set_tokens=(2_000, 16_000, 128_000), valid_tokens=16_000, test_tokens=16_000,
        source_chars=800_000, tokenizer_sample_chars=3_000_000,
        shapes=Shapes(n_layer=2, n_head=2, slm_width=32, llm_width=88),
        # 2M SLM tokens (about 20 s): pretraining must dwarf the largest in-domain set
        # (128k tokens), or training on that set alone beats pretraining and every
        # finding reverses even in the tests.
        pretrain=PretrainRecipe(slm_tokens=2_000_000, warmup_steps=50, eval_tokens=8_192, save_every=0),
        # The smallest set's 0.1 is what the tests were measured with.
        finetune=FinetuneRecipe(batch_size=8, eval_tokens=16_384, min_steps=100, lr_share=0.1),
        cluster_ks=(4, 16), mixture_experts=4, mixture_ablation=(4, 16),
        hypernet=(4, 4, 4), hypernet_ablation=(4, 16), importance_k=4,
        # The tests keep three of the five checkpoints on the curves, and SLM-is on the smallest set.
        curve_fractions=(1 / 16, 1 / 4, 1.0), importance_sets=(0,),
        # Two domains (those the tests study) keep `SCALE=tiny bash scripts/main.sh` a smoke run of minutes.
        study_domains=("code", "legal"),
    ),
    "default": Scale(
        name="default", vocab_size=1024, context=128,
        set_tokens=(8_000, 64_000, 512_000), valid_tokens=40_000, test_tokens=40_000,
        source_chars=None,
        shapes=Shapes(n_layer=2, n_head=4, slm_width=48, llm_width=112),
        # 72M SLM tokens: the SLM (111k parameters) sees 650 per parameter and the LLM (431k
        # parameters, 3.7x the SLM's FLOPs per token), at equal FLOPs, 45: the paper's regime,
        # chosen among shapes by `benchmarks/bench_shapes.py` (docs/regime.md, section 6).
        pretrain=PretrainRecipe(slm_tokens=72_000_000, warmup_steps=200),
        # Measured by `benchmarks/bench_finetune_lr.py` on the fully pretrained SLM: 0.01-0.03x its
        # pretraining rate is best on 8k tokens, 0.1x on 64k, 0.1-0.3x on 512k, and on SLM-mix's,
        # SLM-hn's and SLM-is's specialization the same; SLM-d's student takes 0.3x on 64k (docs/regime.md,
        # section 7).
        finetune=FinetuneRecipe(batch_size=8, eval_tokens=32_768, min_steps=200, lr_share=0.03),
        cluster_ks=(4, 8, 16, 32, 64, 256), mixture_experts=16, mixture_ablation=(4, 8, 16),
        hypernet=(32, 8, 8), hypernet_ablation=(4, 8, 16, 32, 64), importance_k=16,
        # SLM-is on the sets where the paper states its decision rule: a run per domain and set costs
        # a quarter of the SLM's pretraining, and the smallest set's would add about half an hour.
        importance_sets=(1, 2),
    ),
    "paper": Scale(
        name="paper", vocab_size=32_768, context=1024,
        set_tokens=(1_000_000, 8_000_000, 64_000_000), valid_tokens=1_000_000,
        test_tokens=1_000_000, source_chars=None, corpus="hub",
        tokenizer_sample_chars=400_000_000,
        shapes=Shapes(n_layer=7, n_head=16, slm_width=1024, llm_width=2816),
        # Paper shapes on a GPU: GPT-3's learning rates for its 125M and 760M models, a
        # 256 x 1024-token batch, 10B SLM tokens (the paper went to about 180B).
        pretrain=PretrainRecipe(slm_tokens=10_000_000_000, warmup_steps=2000, batch_size=256, micro_batch=16,
                                slm_lr=6e-4, llm_lr=2.5e-4, eval_every=1000, eval_tokens=1_048_576, save_every=500),
        finetune=FinetuneRecipe(batch_size=64, eval_tokens=1_048_576, min_steps=200, lr_share=0.01),
        cluster_ks=(4, 16, 32, 64, 256, 1024), mixture_experts=16, mixture_ablation=(4, 16, 64),
        hypernet=(32, 16, 16), hypernet_ablation=(4, 16, 32, 64, 256), importance_k=1024,
        importance_sets=(0, 1, 2), curve_sets=(0, 1, 2),
    ),
}


def get_scale(scale: str | Scale) -> Scale:
    """The `Scale` of a name (a `Scale` is returned as it is)."""
    if isinstance(scale, Scale):
        return scale
    try:
        return SCALES[scale]
    except (KeyError, TypeError):
        raise LabError(f"unknown scale {scale!r}: choose one of {', '.join(SCALES)}") from None
