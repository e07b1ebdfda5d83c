"""Byte-level BPE, trained on the generic training split and saved with the data.

Byte-level means any input, including text that was not valid UTF-8 and was
decoded with replacement characters, maps to tokens without an unknown token.
Documents are joined in token streams with the end-of-text token, id 0.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable, Sequence

from tokenizers import Tokenizer as _HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from .. import atomic
from ..errors import LabError

EOT = "<|endoftext|>"


class Tokenizer:
    def __init__(self, hf: _HFTokenizer, sha256: str):
        self.hf = hf
        self.sha256 = sha256
        self.eot_id = hf.token_to_id(EOT)
        self.vocab_size = hf.get_vocab_size()

    @classmethod
    def load(cls, path: str | Path) -> "Tokenizer":
        path = Path(path)
        if not path.exists():
            raise LabError(f"no tokenizer at {path}: build the corpus first with `python -m lab data build`")
        data = path.read_bytes()
        try:
            hf = _HFTokenizer.from_str(data.decode("utf-8"))
        except Exception as e:
            raise LabError(f"{path} is not a readable tokenizer ({e}); delete it and rebuild with "
                           "`python -m lab data build --force`") from None
        return cls(hf, hashlib.sha256(data).hexdigest())

    def encode(self, text: str) -> list[int]:
        return self.hf.encode(text).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        # The fast variant skips character offsets, which nothing here uses: 1.6x faster.
        return [e.ids for e in self.hf.encode_batch_fast(list(texts))]

    def decode(self, ids: Iterable[int]) -> str:
        return self.hf.decode(list(map(int, ids)), skip_special_tokens=False)


def train_tokenizer(texts: Iterable[str], vocab_size: int, path: str | Path) -> Tokenizer:
    """Train byte-level BPE and write it atomically to `path`."""
    hf = _HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    hf.train_from_iterator(texts, trainer=trainer)
    atomic.write_text(path, hf.to_str())
    return Tokenizer.load(path)
