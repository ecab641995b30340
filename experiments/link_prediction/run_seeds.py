"""Run ``python run.py task=link_prediction ...`` over seeds and print mean ± std of the final metrics.

    .venv/bin/python experiments/link_prediction/run_seeds.py --seeds 0 1 2 3 4 -- task.dataset=cora model=gcn

Each seed sets both the model initialisation (``seed``) and the edge split with its evaluation
negatives (``task.split.seed``), so the spread covers both. Every run is an ordinary MLflow run under
experiment ``link_prediction``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from seed_runs import cpu_model, line, print_summary, run_one  # noqa: E402

KEYS = ("test/auc", "test/mrr", "test/hits_at_20", "val/auc", "train_time_s", "wall_time_s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("overrides", nargs="*", help="config overrides passed to run.py (after --)")
    args = parser.parse_args()
    print(f"CPU: {cpu_model()}; overrides: {' '.join(args.overrides)}")
    results = []
    for seed in args.seeds:
        overrides = ["task=link_prediction", f"seed={seed}", f"task.split.seed={seed}", *args.overrides]
        results.append(run_one(overrides, f"seed {seed}"))
        print(line(f"seed {seed}", results[-1], KEYS), flush=True)
    print_summary(results, KEYS)


if __name__ == "__main__":
    main()
