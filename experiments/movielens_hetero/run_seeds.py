"""MovieLens as a heterogeneous graph: R-GCN against a type-blind GraphSAGE, same inputs, split and budget, per seed.

    .venv/bin/python experiments/movielens_hetero/run_seeds.py --seeds 0 1 2 -- instance.threads=2

Four settings, each one ``python run.py`` per seed (ordinary MLflow runs under experiments
``hetero_link_prediction`` / ``hetero_node_classification``):

* link prediction of ``user -rated-> movie`` (``task=hetero_link_prediction``) with ``model=rgcn`` and
  ``model=graphsage``;
* node classification of a movie's first-listed genre (``task=hetero_node_classification``, its genre edges out of
  the graph) with the same two models.

The seed sets both the split (``task.split.seed``) and the model's initialisation (``seed``), so each seed is one
paired comparison on the same held-out edges or movies. Both models get the same typed inputs (the family's per-type
projection and id embeddings), width, depth, dropout, optimiser and epochs; only message passing differs (a weight
per relation vs one for all edges). Runs go one after another (two shared cores); each run's metrics come from the
summary table the runner prints, and every finished run is appended to ``results.jsonl`` beside this script, so an
interrupted sweep resumes where it stopped (``--fresh`` starts over). The CPU is printed first.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results.jsonl"
sys.path.insert(0, str(ROOT / "experiments"))

from seed_runs import cpu_model, run_one as run_command  # noqa: E402

SETTINGS = {  # name -> (task, model, the metrics reported)
    "link_rgcn": ("hetero_link_prediction", "rgcn", ("test/auc", "test/mrr", "test/hits_at_20")),
    "link_graphsage": ("hetero_link_prediction", "graphsage", ("test/auc", "test/mrr", "test/hits_at_20")),
    "genre_rgcn": ("hetero_node_classification", "rgcn", ("test/accuracy", "test/macro_f1")),
    "genre_graphsage": ("hetero_node_classification", "graphsage", ("test/accuracy", "test/macro_f1")),
}
SHARED = ["model.hidden_dim=64", "model.num_layers=2", "model.dropout=0.2", "checkpoint.every_n_steps=0"]


def run_one(setting: str, seed: int, epochs: int, overrides: list[str]) -> dict[str, float]:
    task, model, _ = SETTINGS[setting]
    return run_command([f"task={task}", f"model={model}", f"seed={seed}", f"task.split.seed={seed}",
                        f"trainer.max_epochs={epochs}", *SHARED, *overrides], f"{setting} seed {seed}")


def summary(rows: list[dict]) -> list[str]:
    """One markdown table row per setting: mean ± std over the seeds of each reported metric and of the time."""
    lines = []
    for setting, (task, model, keys) in SETTINGS.items():
        done = [r for r in rows if r["setting"] == setting]
        if not done:
            continue
        cells = []
        for key in (*keys, "train_time_s"):
            values = [r["metrics"][key] for r in done if key in r["metrics"]]
            spread = f" ± {statistics.stdev(values):.4f}" if len(values) > 1 else ""
            cells.append(f"{key} {statistics.mean(values):.4f}{spread}")
        lines.append(f"| {task} | {model} | {len(done)} ({', '.join(str(r['seed']) for r in done)}) | "
                     + " | ".join(cells) + " |")
    return lines


def majority(seed: int) -> float:
    """Test accuracy of always answering the training movies' most common genre (the split of ``seed``): the floor
    a genre classifier must clear. No training; the same split as the runs (task.split.seed=seed, fractions 0.2)."""
    import torch

    from sagelab.tasks.graph.hetero_graph import read_hetero_csv
    from sagelab.tasks.hetero.prepare import prepare_nodes

    folder = ROOT / "data" / "graph" / "movielens"
    data = prepare_nodes(read_hetero_csv(folder / "nodes.csv", folder / "edges.csv"), {}, "name", "movie", "genre",
                         [["movie", "has_genre", "genre"]], 0.2, 0.2, seed)
    train, test = data.y[data.masks["train"]], data.y[data.masks["test"]]
    return float((test == torch.bincount(train).argmax()).double().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--fresh", action="store_true", help="forget results.jsonl and run everything again")
    parser.add_argument("overrides", nargs="*", help="config overrides passed to run.py (after --)")
    args = parser.parse_args()
    if args.fresh and RESULTS.exists():
        RESULTS.unlink()
    rows = [json.loads(line) for line in RESULTS.read_text().splitlines()] if RESULTS.exists() else []
    print(f"CPU: {cpu_model()}; epochs {args.epochs}; overrides: {' '.join(args.overrides)}", flush=True)
    started = time.monotonic()
    for seed in args.seeds:
        for setting in args.settings:
            if any(r["setting"] == setting and r["seed"] == seed and r["epochs"] == args.epochs for r in rows):
                continue
            metrics = run_one(setting, seed, args.epochs, args.overrides)
            row = {"setting": setting, "seed": seed, "epochs": args.epochs, "overrides": args.overrides,
                   "cpu": cpu_model(), "metrics": metrics}
            rows.append(row)
            with RESULTS.open("a") as handle:
                handle.write(json.dumps(row) + "\n")
            keys = SETTINGS[setting][2]
            print(f"{setting} seed {seed}: " + "  ".join(f"{k}={metrics[k]:.4f}" for k in keys if k in metrics)
                  + f"  train {metrics.get('train_time_s', 0):.0f} s, command {metrics['command_s']:.0f} s", flush=True)
    print("\n".join(summary([r for r in rows if r["epochs"] == args.epochs])))
    floors = [majority(seed) for seed in args.seeds]
    print(f"majority-genre test accuracy per seed {args.seeds}: {', '.join(f'{f:.4f}' for f in floors)}")
    print(f"this sweep: {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
