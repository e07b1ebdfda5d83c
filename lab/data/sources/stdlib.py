"""The running interpreter's standard library as a code corpus: one document per module file."""
from __future__ import annotations

import hashlib
import platform
import sysconfig
from pathlib import Path
from typing import Iterator

from .base import Source

# Test suites are mostly fixtures; idlelib and turtledemo are applications, not library code.
_SKIP_DIRS = {"test", "tests", "idle_test", "idlelib", "turtledemo", "site-packages", "dist-packages",
              "__pycache__"}
_MAX_BYTES = 200_000  # the few larger files are generated tables or one-off monoliths
_GENERATED = b"Python Character Mapping Codec"  # encodings/cp*.py: byte tables written by gencodec.py


def module_files(root: Path) -> list[Path]:
    files = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if _SKIP_DIRS.intersection(rel.parts[:-1]) or path.stat().st_size > _MAX_BYTES:
            continue
        files.append(path)
    return files


def pystdlib(root: Path) -> Iterator[tuple[str, str, str]]:
    for path in module_files(root):
        data = path.read_bytes()
        if _GENERATED not in data[:2000]:
            yield path.relative_to(root).as_posix(), data.decode("utf-8", errors="replace"), ""


class StdlibSource(Source):
    """Nothing to download: the files sit next to the interpreter running the lab."""

    kind = "stdlib"

    def __init__(self, name: str = "pystdlib"):
        super().__init__(name, "python", pystdlib)

    @property
    def root(self) -> Path:
        return Path(sysconfig.get_path("stdlib"))

    def fetch(self) -> None:
        pass

    def locations(self) -> list[Path]:
        return [self.root]

    def info(self) -> dict:
        h = hashlib.sha256()
        for path in module_files(self.root):
            h.update(path.relative_to(self.root).as_posix().encode() + b"\0" + path.read_bytes())
        return {"package": self.package, "version": platform.python_version(), "kind": self.kind,
                "archive_sha256": h.hexdigest()}
