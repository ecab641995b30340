"""Cora node classification with the GCN paper's recipe over several seeds: mean ± std of the test accuracy.

    .venv/bin/python experiments/cora_node_classification/run_seeds.py --seeds 0 1 2 3 4 -- instance.threads=1

Each seed is one ``python run.py task=node_classification seed=<s>`` (an ordinary MLflow run under experiment
``node_classification``); the standard Planetoid split is fixed, so the spread is the model initialisation and
dropout. The CPU is printed first, since times depend on it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from seed_runs import cpu_model, line, print_summary, run_one  # noqa: E402

KEYS = ("test/accuracy", "test/macro_f1", "val/accuracy", "train_time_s", "wall_time_s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("overrides", nargs="*", help="config overrides passed to run.py (after --)")
    args = parser.parse_args()
    print(f"CPU: {cpu_model()}; overrides: {' '.join(args.overrides)}")
    started = time.monotonic()
    results = []
    for seed in args.seeds:
        results.append(run_one(["task=node_classification", f"seed={seed}", *args.overrides], f"seed {seed}"))
        print(line(f"seed {seed}", results[-1], KEYS), flush=True)
    print_summary(results, (*KEYS, "command_s"))
    print(f"all {len(results)} seeds: {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
