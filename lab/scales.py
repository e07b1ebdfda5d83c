"""Named scales: how much data, which vocabulary, what set sizes.

`tiny` runs in seconds (tests, CI), `default` is the embedded default for a
laptop CPU, `paper` follows the paper's shapes and reads c4 and the Pile from
the Hugging Face hub. Model shapes per scale live with the model
(`lab.model`), which owns its configuration.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .errors import LabError


@dataclass(frozen=True)
class DataScale:
    name: str
    vocab_size: int
    context: int
    set_tokens: tuple[int, int, int]
    """Nested in-domain training-set sizes, the paper's 1M:8M:64M ratio."""
    valid_tokens: int
    test_tokens: int
    source_chars: int | None
    """Cap on characters read from each source (None: all of it)."""
    generic_share: float = 0.3
    """Share of each domain source's documents given to the generic corpus."""
    tokenizer_sample_chars: int = 40_000_000
    corpus: str = "embedded"
    """"embedded" (built from packages) or "hub" (c4 + Pile through `datasets`)."""
    seed: int = 0
    extra: dict = field(default_factory=dict)


SCALES: dict[str, DataScale] = {
    "tiny": DataScale(
        name="tiny", vocab_size=1024, context=64,
        set_tokens=(2_000, 16_000, 128_000), valid_tokens=16_000, test_tokens=16_000,
        source_chars=800_000, tokenizer_sample_chars=3_000_000,
    ),
    "default": DataScale(
        name="default", vocab_size=4096, context=128,
        set_tokens=(8_000, 64_000, 512_000), valid_tokens=40_000, test_tokens=40_000,
        source_chars=None,
    ),
    "paper": DataScale(
        name="paper", vocab_size=32_768, context=1024,
        set_tokens=(1_000_000, 8_000_000, 64_000_000), valid_tokens=1_000_000,
        test_tokens=1_000_000, source_chars=None, corpus="hub",
        tokenizer_sample_chars=400_000_000,
    ),
}


def get_scale(name: str) -> DataScale:
    try:
        return SCALES[name]
    except KeyError:
        raise LabError(f"unknown scale {name!r}: choose one of {', '.join(SCALES)}") from None
