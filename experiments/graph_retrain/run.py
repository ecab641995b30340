"""Issue 17, must-show 3: an updated export answered by ``mode=transform`` / ``mode=recommend`` without retraining,
and ``mode=retrain`` reaching the original validation score in fewer epochs.

    PYTHONPATH=src .venv/bin/python experiments/graph_retrain/run.py --seeds 0 1 2
    PYTHONPATH=src .venv/bin/python experiments/graph_retrain/run.py --seeds 0 --epochs 4 --out /tmp/smoke.json  # smoke run

Per seed, on Cora as a Gremlin CSV export (``words`` as a ``String[]`` of word indices, multi-hot encoded):

1. hold out 10 % of the nodes (seeded) with all their edges: ``base/`` is the export before, ``full/`` after;
2. **train** on ``base/`` (GraphSAGE, 200 epochs, the link-prediction defaults of experiments/link_prediction);
3. **transform** ``full/`` with that run's weights, and **recommend** for a held-out (new) node with
   ``task.transform.*`` -- timed as whole commands (process start to exit) and by the run's own ``wall_time_s``;
4. **retrain** on ``full/`` warm-started from the run (``checkpoint.load=<run id>``) for half the epochs; the
   epoch at which its ``val/auc`` first reaches the original run's final ``val/auc``;
5. for context, **scratch**: the same ``full/`` trained from scratch (its own split), same budget as step 2.

Every command is ``run.py`` as a user types it; runs go one at a time into a private MLflow store under
``--work`` (default: a temporary folder). The table is printed and written to ``results.json`` beside this file.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from sagelab.hardware import cpu_model  # noqa: E402
from sagelab.tasks.graph.datasets import read_planetoid  # noqa: E402
from sagelab.tasks.graph.property_graph import Property, PropertyGraph, write_gremlin_csv  # noqa: E402

EPOCHS = 200
GNN = ["task=link_prediction", "model=graphsage", "trainer.precision=32-true", "trainer.gradient_clip_val=null",
       "optim.lr=0.01", "optim.weight_decay=0", "instance=local_cpu1", "trainer.enable_progress_bar=false",
       "checkpoint.every_n_steps=0"]
FEATURES = ["task.datasets.csv.name_property=null", "+task.features.words={type:category,max_categories:1500}"]


def cora_exports(folder: Path, seed: int, holdout: float = 0.1) -> tuple[Path, Path, list[str]]:
    """``base/`` (Cora minus a seeded 10 % of its nodes and their edges) and ``full/`` as Gremlin CSV; the held-out
    node ids that have an edge."""
    cora = read_planetoid(ROOT / "data" / "graph" / "cora", "cora")
    words = cora.properties["words"].values
    listed = [[str(w) for w in np.flatnonzero(row)] for row in words]
    props = {"words": Property("words", "string", multi=True, values=listed)}
    full = PropertyGraph(cora.node_ids, cora.labels, props, cora.src, cora.dst, "cora")
    rng = np.random.default_rng(seed)
    held = set(rng.choice(cora.num_nodes, int(round(holdout * cora.num_nodes)), replace=False).tolist())
    keep = [i for i in range(cora.num_nodes) if i not in held]
    new_index = {old: new for new, old in enumerate(keep)}
    edge_kept = [k for k, (s, d) in enumerate(zip(cora.src.tolist(), cora.dst.tolist())) if s not in held and d not in held]
    base = PropertyGraph([cora.node_ids[i] for i in keep], [cora.labels[i] for i in keep],
                         {"words": Property("words", "string", multi=True, values=[listed[i] for i in keep])},
                         np.array([new_index[s] for s in cora.src[edge_kept].tolist()], np.int64),
                         np.array([new_index[d] for d in cora.dst[edge_kept].tolist()], np.int64), "cora-base")
    paths = {}
    for name, graph in (("base", base), ("full", full)):
        paths[name] = folder / name
        write_gremlin_csv(graph, paths[name] / "nodes.csv", paths[name] / "edges.csv", edge_label="cites")
    degree = np.bincount(np.concatenate([cora.src, cora.dst]), minlength=cora.num_nodes)
    connected = [cora.node_ids[i] for i in sorted(held) if degree[i] > 0]
    return paths["base"], paths["full"], connected


def run(args: list[str], work: Path, name: str) -> tuple[dict[str, float], str, float]:
    """``run.py <args>`` in a private store; (its final metrics, its MLflow run id, process seconds)."""
    store = [f"logger.tracking_uri=sqlite:///{work}/mlflow.db", f"logger.artifact_location={work}/artifacts",
             f"checkpoint.dir={work}/ckpt/{name}", f"hydra.run.dir={work}/hydra/{name}"]
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(ROOT / "run.py"), *args, *store], cwd=ROOT, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        sys.exit(f"{name} failed:\n{done.stderr[-3000:]}")
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{work}/mlflow.db")
    line = next(l for l in done.stdout.splitlines() if "MLflow run" in l)
    run_id = line.rsplit(" ", 1)[1]
    return dict(client.get_run(run_id).data.metrics), run_id, seconds


def val_curve(work: Path, run_id: str) -> list[float]:
    """The run's ``val/auc`` after each epoch (full-graph: one step per epoch), without the final evaluation's."""
    import mlflow

    history = mlflow.MlflowClient(f"sqlite:///{work}/mlflow.db").get_metric_history(run_id, "val/auc")
    return [value for _, value in sorted((m.step, m.value) for m in history)[:-1]]


def first_epoch_reaching(work: Path, run_id: str, target: float) -> int | None:
    """1-based epoch of the first per-epoch ``val/auc`` >= ``target``."""
    return next((k + 1 for k, value in enumerate(val_curve(work, run_id)) if value >= target), None)


def one_seed(seed: int, work: Path, epochs: int) -> dict[str, float]:
    base, full, new_nodes = cora_exports(work / f"exports-{seed}", seed)
    data = lambda folder: ["task.dataset=csv", f"task.datasets.csv.nodes={folder}/nodes.csv",  # noqa: E731
                           f"task.datasets.csv.edges={folder}/edges.csv", *FEATURES]
    seeds = [f"seed={seed}", f"task.split.seed={seed}"]
    trained, run_id, train_s = run([*GNN, *seeds, *data(base), f"trainer.max_epochs={epochs}"], work, f"train-{seed}")
    update = [f"task.transform.nodes={full}/nodes.csv", f"task.transform.edges={full}/edges.csv",
              f"checkpoint.load={run_id}"]
    transformed, _, transform_s = run([*GNN, *seeds, *data(base), "mode=transform", *update], work, f"transform-{seed}")
    recommended, _, recommend_s = run([*GNN, *seeds, *data(base), "mode=recommend", f"task.node={new_nodes[0]}",
                                       *update], work, f"recommend-{seed}")
    assert recommended["recommend/new_node"] == 1.0 and recommended["recommend/count"] > 0
    half = epochs // 2
    retrained, retrain_id, retrain_s = run([*GNN, *seeds, *data(full), "mode=retrain", f"checkpoint.load={run_id}",
                                            f"trainer.max_epochs={half}"], work, f"retrain-{seed}")
    scratch, scratch_id, scratch_s = run([*GNN, *seeds, *data(full), f"trainer.max_epochs={epochs}"], work,
                                         f"scratch-{seed}")
    target = trained["val/auc"]
    return {
        "seed": seed, "new_nodes": transformed["transform/new_nodes"], "new_edges": transformed["transform/new_edges"],
        "train_s": train_s, "train_wall_s": trained["wall_time_s"], "train_time_s": trained["train_time_s"],
        "transform_s": transform_s, "transform_wall_s": transformed["wall_time_s"],
        "recommend_s": recommend_s, "recommend_wall_s": recommended["wall_time_s"],
        "val_auc": target, "test_auc": trained["test/auc"],
        "retrain_epoch": first_epoch_reaching(work, retrain_id, target) or float("nan"),
        "retrain_epoch1_val_auc": val_curve(work, retrain_id)[0], "retrain_val_auc": retrained["val/auc"],
        "retrain_test_auc": retrained["test/auc"], "retrain_s": retrain_s,
        "scratch_epoch": first_epoch_reaching(work, scratch_id, target) or float("nan"),
        "scratch_val_auc": scratch["val/auc"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=EPOCHS, help="the original training's epochs (smoke runs: fewer)")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results.json"))
    parser.add_argument("--work", type=Path, default=None, help="folder for exports, runs and checkpoints")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="graph-retrain-"))
    print(f"CPU: {cpu_model()}; work folder {work}", flush=True)
    rows = []
    for seed in args.seeds:
        rows.append(one_seed(seed, work, args.epochs))
        print(json.dumps(rows[-1]), flush=True)
    cols = [("seed", "seed"), ("new nodes", "new_nodes"), ("train s", "train_s"), ("transform s", "transform_s"),
            ("recommend s", "recommend_s"), ("rec/train", None), ("val AUC", "val_auc"),
            (f"retrain epochs to it (of {args.epochs})", "retrain_epoch"), ("retrain val AUC", "retrain_val_auc"),
            ("scratch epochs to it", "scratch_epoch")]
    print("\n| " + " | ".join(c for c, _ in cols) + " |\n|" + "---|" * len(cols))
    for r in rows:
        cells = [f"{r['recommend_s'] / r['train_s']:.1%}" if key is None else
                 f"{r[key]:.4f}" if "auc" in key else f"{r[key]:.1f}" if key.endswith("_s") else f"{r[key]:g}"
                 for _, key in cols]
        print("| " + " | ".join(cells) + " |")
    for key in ("train_s", "transform_s", "recommend_s", "retrain_epoch", "val_auc", "retrain_val_auc"):
        values = [r[key] for r in rows]
        print(f"{key}: {statistics.mean(values):.4f}" + (f" ± {statistics.stdev(values):.4f}" if len(values) > 1 else ""))
    out = args.out
    out.write_text(json.dumps({"cpu": cpu_model(), "epochs": args.epochs, "rows": rows}, indent=1))
    print(f"written {out}")


if __name__ == "__main__":
    main()
