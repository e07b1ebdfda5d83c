"""BSD fortune cookies: `%`-separated quotes, one file per category."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from .text import pack

_SEPARATOR = re.compile(r"^%[ \t]*$", re.M)
_OVERSTRIKE = re.compile(r".\x08", re.S)  # "_\bx" underlines and "x\bx" bolds for a teletype
_SKIP = {"ascii-art"}  # pictures, not text


def fortunes(root: Path) -> Iterator[tuple[str, str, str]]:
    """Blocks of a few KB of quotes, tagged with their category (law, medicine, science, ...)."""
    folder = root / "usr/share/games/fortunes"
    for path in sorted(folder.iterdir()):
        # `.dat` files are strfile indexes; `.u8` names are symlinks to the same texts.
        if path.is_symlink() or not path.is_file() or path.suffix or path.name in _SKIP:
            continue
        text = _OVERSTRIKE.sub("", path.read_bytes().decode("utf-8", errors="replace"))
        quotes = [q.strip("\n") for q in _SEPARATOR.split(text) if q.strip()]
        for k, block in enumerate(pack(quotes, 4000)):
            yield f"{path.name}/{k}", "\n\n".join(block), path.name
