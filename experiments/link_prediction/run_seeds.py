"""Run ``python run.py task=link_prediction ...`` over seeds and print mean ± std of the final metrics.

    .venv/bin/python experiments/link_prediction/run_seeds.py --seeds 0 1 2 3 4 -- task.dataset=cora model=gcn

Each seed sets both the model initialisation (``seed``) and the edge split with its evaluation
negatives (``task.split.seed``), so the spread covers both. Runs go one after another (this machine
has two shared cores); every run is an ordinary MLflow run under experiment ``link_prediction``.
The metrics are read from the summary table the runner prints at the end of each command.
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
KEYS = ("test/auc", "test/mrr", "test/hits_at_20", "val/auc", "train_time_s", "wall_time_s")
ROW = re.compile(r"^\s+(\S+)\s+(-?[0-9.]+(?:e-?\d+)?)\s*$")


def run_one(overrides: list[str], seed: int) -> dict[str, float]:
    command = [sys.executable, str(ROOT / "run.py"), "task=link_prediction", f"seed={seed}", f"task.split.seed={seed}",
               "trainer.enable_progress_bar=false", *overrides]
    started = time.monotonic()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"seed {seed} failed:\n{done.stderr[-3000:]}")
    metrics = {m.group(1): float(m.group(2)) for line in done.stdout.splitlines() if (m := ROW.match(line))}
    print(f"seed {seed}: " + "  ".join(f"{k}={metrics[k]:.4f}" for k in KEYS if k in metrics)
          + f"  ({time.monotonic() - started:.0f} s)", flush=True)
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("overrides", nargs="*", help="config overrides passed to run.py (after --)")
    args = parser.parse_args()
    print("overrides:", " ".join(args.overrides))
    results = [run_one(args.overrides, seed) for seed in args.seeds]
    for key in KEYS:
        values = [r[key] for r in results if key in r]
        if len(values) > 1:
            print(f"{key:<16} {statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}  (n={len(values)})")


if __name__ == "__main__":
    main()
