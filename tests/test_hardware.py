"""trainer.precision=auto and instance.threads=auto decide from what the machine has, and say why."""

from __future__ import annotations

import pytest

from sagelab import hardware

AVX2_EPYC = frozenset({"avx", "avx2", "fma", "f16c"})
AVX512_NO_BF16 = AVX2_EPYC | {"avx512f", "avx512bw", "avx512vl"}
SAPPHIRE_RAPIDS = AVX512_NO_BF16 | {"avx512_bf16", "amx_bf16", "amx_tile"}


@pytest.mark.parametrize(
    ("flags", "expected", "reason"),
    [
        (AVX2_EPYC, "32-true", "no native bf16"),
        (AVX512_NO_BF16, "32-true", "no native bf16"),
        (AVX2_EPYC | {"avx512_bf16"}, "bf16-mixed", "avx512_bf16"),
        (SAPPHIRE_RAPIDS, "bf16-mixed", "amx_bf16, avx512_bf16"),
    ],
)
def test_auto_precision_follows_the_cpu_flags(monkeypatch, flags, expected, reason):
    monkeypatch.setattr(hardware, "cpu_flags", lambda: flags)
    choice = hardware.auto_precision("cpu")
    assert choice.value == expected and reason in choice.reason


def test_a_configured_precision_is_kept_whatever_the_cpu(monkeypatch):
    monkeypatch.setattr(hardware, "cpu_flags", lambda: AVX2_EPYC)
    assert hardware.resolve_precision("bf16-mixed", "cpu").value == "bf16-mixed"


def test_gpu_without_bf16_gets_fp16_autocast(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert hardware.auto_precision("gpu").value == "16-mixed"


def test_threads_auto_follow_the_available_cores_split_over_processes(monkeypatch):
    monkeypatch.setattr(hardware, "available_cores", lambda: 8)
    assert hardware.resolve_threads("auto", 2).value == "4"
    assert hardware.resolve_threads(3, 2).value == "1"
    assert hardware.resolve_threads("auto", 16).value == "1"
