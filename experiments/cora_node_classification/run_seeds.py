"""Cora node classification with the GCN paper's recipe over several seeds: mean ± std of the test accuracy.

    .venv/bin/python experiments/cora_node_classification/run_seeds.py --seeds 0 1 2 3 4 -- instance.threads=1

Each seed is one ``python run.py task=node_classification seed=<s>`` (an ordinary MLflow run under experiment
``node_classification``); the standard Planetoid split is fixed, so the spread is the model initialisation and
dropout. Runs go one after another (this machine has two shared cores). Metrics are read from the summary table
the runner prints at the end of each command; the CPU is printed first, since times depend on it.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KEYS = ("test/accuracy", "test/macro_f1", "val/accuracy", "train_time_s", "wall_time_s")
ROW = re.compile(r"^\s+(\S+)\s+(-?[0-9.]+(?:e-?\d+)?)\s*$")
sys.path.insert(0, str(ROOT / "src"))

from sagelab.hardware import cpu_model  # noqa: E402


def run_one(overrides: list[str], seed: int) -> dict[str, float]:
    command = [sys.executable, str(ROOT / "run.py"), "task=node_classification", f"seed={seed}",
               "trainer.enable_progress_bar=false", *overrides]
    started = time.monotonic()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"seed {seed} failed:\n{done.stderr[-3000:]}")
    metrics = {m.group(1): float(m.group(2)) for line in done.stdout.splitlines() if (m := ROW.match(line))}
    metrics["command_s"] = time.monotonic() - started
    print(f"seed {seed}: " + "  ".join(f"{k}={metrics[k]:.4f}" for k in KEYS if k in metrics)
          + f"  ({metrics['command_s']:.0f} s)", flush=True)
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("overrides", nargs="*", help="config overrides passed to run.py (after --)")
    args = parser.parse_args()
    print(f"CPU: {cpu_model()}; overrides: {' '.join(args.overrides)}")
    started = time.monotonic()
    results = [run_one(args.overrides, seed) for seed in args.seeds]
    for key in (*KEYS, "command_s"):
        values = [r[key] for r in results if key in r]
        if len(values) > 1:
            print(f"{key:<16} {statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}  (n={len(values)})")
    print(f"all {len(results)} seeds: {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
