"""Where a result came from: the code's revision and the machine it ran on, written into the
files a reader is meant to trust without rerunning them (the published findings)."""
from __future__ import annotations

import os
import platform
import subprocess

from .device import cpu_model
from .paths import REPO


def revision() -> str:
    """The repository's commit, with "+changes" when the working tree differs from it, or
    "unknown" outside a git checkout."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
    try:
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", "lab", "notebooks")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+changes" if dirty else "")


def machine() -> dict:
    """The machine in words: CPU model, cores this process may use, memory, and GPUs if any."""
    import torch

    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
    except (ValueError, OSError, AttributeError):
        memory = None
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    return {"cpu": cpu_model(), "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else os.cpu_count(), "memory_gib": None if memory is None else round(memory, 1), "gpus": gpus,
            "system": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
            "torch": torch.__version__}
