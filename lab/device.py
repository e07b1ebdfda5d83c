"""Where training runs, and in which precision.

Device: CUDA, then Apple's MPS, then the CPU; `$LAB_DEVICE` (e.g. "cpu") overrides.

On a CPU under glibc the lab keeps freed memory in the process (`keep_freed_memory`);
`$LAB_ALLOCATOR=glibc` leaves glibc's defaults.

Precision "auto" uses bf16 autocast only where it is faster, so the rule is
fixed per device and model width rather than measured at run time (a measured
choice would make the same run give different numbers on different days):

- CUDA: bf16 when the GPU supports it (Ampere or later) and d_model >= 512.
  Narrower models at the lab's batch sizes are launch-bound and autocast's casts
  only add kernels. Training tokens/s in bf16 over fp32 on one H100 (batch of 8):
  0.90x for the default SLM (d=64), 0.82x for its LLM (d=176), 1.03x at 2 layers
  d=128, 0.78x at d=256, 0.69-0.96x at 4 layers d=256-512, 1.04x at d=768; with
  a batch of 64 at 4 layers, 0.98x at d=256 and 2.3x at d=512; the paper SLM
  (d=1024, 256 x 1024 tokens a step) 6.7x.
- MPS: fp32 (autocast coverage there is still partial).
- CPU: bf16 when the CPU has bf16 matrix instructions (AVX512-BF16 or AMX) and
  d_model >= 128. Narrower models spend their time outside matmuls (softmax over
  the vocabulary, norms, the optimizer), where bf16 only adds casts. Training
  tokens/s in bf16 over fp32, `benchmarks/bench_train.py` on a 2-core Xeon with
  AMX: with 2 threads 0.9x at d=64, 0.95x at 128, 1.3x at 176, 1.5x at 256
  and 352; with 1 thread 1.0x at d=64, 1.25x at 128, 1.2x at 176, 2x at 256+.
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import platform

import torch

from .errors import LabError

CPU_BF16_MIN_WIDTH = 128
CUDA_BF16_MIN_WIDTH = 512

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
MMAP_THRESHOLD = 32 * 2**20
TRIM_THRESHOLD = 256 * 2**20


def pick_device() -> torch.device:
    name = os.environ.get("LAB_DEVICE")
    device = torch.device(name) if name else (
        torch.device("cuda") if torch.cuda.is_available()
        else torch.device("mps") if torch.backends.mps.is_available() else torch.device("cpu"))
    if device.type == "cpu":
        keep_freed_memory()
    return device


@functools.lru_cache(maxsize=None)
def keep_freed_memory() -> bool:
    """Have glibc keep the memory a training step frees for the next step; True if it was set.

    A CPU step frees and allocates again the same activations of a few megabytes each. glibc's
    defaults hand blocks above 128 KiB back to the system with their own mmap until its dynamic
    threshold has grown past them, and give the heap's free top back once it exceeds twice that
    threshold, so every step faults its activations' pages in again: about 1,700 minor page faults
    (7 MB) a step for the default SLM. Serving blocks up to 32 MiB from the heap and keeping up to
    256 MiB of free top removes them all: in a fresh process the default SLM's step runs 1.2x faster,
    its LLM's 1.05x (`benchmarks/bench_allocator.py`), while over a long process glibc's own thresholds
    often grow to much the same effect. Results are bit for bit the same. Once per process, and only
    under glibc (musl and macOS have no `mallopt` of this kind); `$LAB_ALLOCATOR=glibc` opts out.
    """
    if os.environ.get("LAB_ALLOCATOR", "lab") == "glibc" or platform.system() != "Linux":
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return all(mallopt(param, value) == 1
               for param, value in ((M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD)))


@functools.lru_cache(maxsize=None)
def cpu_has_bf16() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def autocast_dtype(device: torch.device, d_model: int, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype for a model of width `d_model`, or None for plain fp32."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision != "auto":
        raise LabError(f"unknown precision {precision!r}: choose 'auto', 'fp32' or 'bf16'")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() and d_model >= CUDA_BF16_MIN_WIDTH else None
    if device.type == "cpu":
        return torch.bfloat16 if cpu_has_bf16() and d_model >= CPU_BF16_MIN_WIDTH else None
    return None


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def device_name(device: torch.device) -> str:
    """What the results store records as the device, e.g. "cuda:NVIDIA H100" or "cpu:...x2"."""
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    if device.type == "cpu":
        return f"cpu:{cpu_model()} x{torch.get_num_threads()}"
    return device.type


@functools.lru_cache(maxsize=None)
def cpu_model() -> str:
    """The CPU's model name, which names a CPU device in results and provenance."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
