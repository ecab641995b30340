"""What this machine runs fast: the precision and thread count a run uses when the config says ``auto``.

A default baked from one machine is wrong on the next: bf16 autocast is the fastest setting on a CPU with
AMX or AVX-512-BF16 and ~60x slower per matmul on an AVX2-only one (0.7 vs 43 GFLOP/s on a 2-core EPYC),
fp16 autocast is ~400x slower than fp32 on any CPU. So ``trainer.precision=auto`` picks from what the
hardware does natively, and the runner prints the choice and its reason and tags the run with it.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterator

NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


@dataclass(frozen=True)
class Choice:
    value: str
    reason: str


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags the kernel reports (empty where /proc/cpuinfo does not exist)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


@lru_cache(maxsize=1)
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown CPU"


def cpu_bf16_flags() -> list[str]:
    return [flag for flag in NATIVE_BF16_FLAGS if flag in cpu_flags()]


def auto_precision(accelerator: str) -> Choice:
    """bf16-mixed where bf16 is native (CUDA bf16, CPU AMX/AVX-512-BF16), 16-mixed on older GPUs, else 32-true."""
    if accelerator == "gpu":
        import torch

        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return Choice("bf16-mixed", f"{torch.cuda.get_device_name(0)} supports bf16")
        return Choice("16-mixed", "this GPU has no bf16; fp16 autocast with a loss scaler")
    native = cpu_bf16_flags()
    if native:
        return Choice("bf16-mixed", f"{cpu_model()} has native bf16 ({', '.join(native)})")
    return Choice("32-true", f"{cpu_model()} has no native bf16 (no AMX/AVX-512-BF16): bf16 would be emulated")


def resolve_precision(configured: str, accelerator: str) -> Choice:
    if configured != "auto":
        return Choice(configured, "set in the config")
    return auto_precision(accelerator)


def available_cores() -> int:
    """Cores this process may run on: CPU affinity, capped by a cgroup v2/v1 CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    quota = _cgroup_quota()
    return max(1, min(cores, quota) if quota else cores)


def _cgroup_quota() -> int | None:
    try:
        text = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if text and text[0] != "max":
            return max(1, int(int(text[0]) / int(text[1])))
    except (OSError, ValueError, IndexError):
        pass
    try:
        quota = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        if quota > 0 and period > 0:
            return max(1, quota // period)
    except (OSError, ValueError):
        pass
    return None


@contextmanager
def inference(precision: str) -> Iterator[None]:
    """Answering requests at the run's precision: no autograd, and autocast when it is mixed (``bf16-*`` or
    ``16-mixed``), as Lightning's own predict loop would. Tokens are answered at the same dtype the model was
    validated at, and on a CPU with AMX the batched matmuls run as bf16 tiles."""
    import torch

    dtype = torch.bfloat16 if precision.startswith("bf16") else torch.float16 if precision.startswith("16") else None
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.inference_mode(), torch.autocast(device, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        yield


def resolve_threads(configured: object, processes: int) -> Choice:
    """Threads per process: ``instance.threads`` (a number, or auto = available cores) split over processes."""
    if configured == "auto":
        total, why = available_cores(), "auto: available cores"
    else:
        total, why = int(configured), "instance.threads"
    return Choice(str(max(1, total // max(1, processes))), f"{why} = {total}, {processes} process(es)")


def describe() -> str:
    """One line for benchmark and log headers: the CPU, its bf16 support and what ``auto`` picks here."""
    native = cpu_bf16_flags()
    choice = auto_precision("cpu")
    return (f"{cpu_model()}, {available_cores()} core(s) available, native bf16: "
            f"{', '.join(native) if native else 'no (AVX2/AVX-512 without BF16/AMX)'}; "
            f"trainer.precision=auto -> {choice.value}")
