"""Issue 17, must-show 3: an updated export answered by ``mode=transform`` / ``mode=recommend`` without retraining,
and ``mode=retrain`` reaching the original validation score in fewer epochs.

    PYTHONPATH=src .venv/bin/python experiments/graph_retrain/run.py --seeds 0 1 2
    PYTHONPATH=src .venv/bin/python experiments/graph_retrain/run.py --graph twitch --seeds 0 1 2 --no-scratch
    PYTHONPATH=src .venv/bin/python experiments/graph_retrain/run.py --seeds 0 --epochs 4 --out /tmp/smoke.json  # smoke run

Per seed, on a graph written as a Gremlin CSV export (Cora: ``words`` as a ``String[]`` of word indices; Twitch
ENGB: ``interests``, the liked games), both multi-hot encoded:

1. hold out 10 % of the nodes (seeded) with all their edges: ``base/`` is the export before, ``full/`` after;
2. **train** on ``base/`` (the settings of experiments/link_prediction: Cora GraphSAGE full-graph 200 epochs,
   Twitch GCN neighbour-sampled 20 epochs);
3. **transform** ``full/`` with that run's weights, and **recommend** for a held-out (new) node with
   ``task.transform.*`` -- timed as whole commands (process start to exit) and by the run's own ``wall_time_s``;
   beside them the *floor*: a process that only imports what such a command needs (sagelab's CLI, torch,
   MLflow with its SQL store, DGL) and exits as ``run.py`` does, the part of any command that no transform can
   make faster;
4. **retrain** on ``full/`` warm-started from the run (``checkpoint.load=<run id>``) for half the epochs; the
   epoch at which its ``val/auc`` first reaches the original run's final ``val/auc``;
5. for context (unless ``--no-scratch``), **scratch**: ``full/`` trained from scratch (its own split), same budget
   as step 2.

Every command is ``run.py`` as a user types it; runs go one at a time into a private MLflow store under
``--work`` (default: a temporary folder). The table is printed and written to ``results[-<graph>].json`` beside
this file.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from sagelab.hardware import cpu_model  # noqa: E402
from sagelab.tasks.graph.datasets import read_planetoid, read_twitch  # noqa: E402
from sagelab.tasks.graph.property_graph import Property, PropertyGraph, write_gremlin_csv  # noqa: E402

@dataclass(frozen=True)
class Workload:
    """A graph and the training commands' settings for it (those of experiments/link_prediction)."""

    read: Callable[[], PropertyGraph]
    gnn: list[str]
    features: list[str]
    epochs: int
    edge_label: str


def cora_graph() -> PropertyGraph:
    """Cora with ``words`` as a ``String[]`` of word indices (the CSV path has no dense vectors)."""
    cora = read_planetoid(ROOT / "data" / "graph" / "cora", "cora")
    listed = [[str(w) for w in np.flatnonzero(row)] for row in cora.properties["words"].values]
    return PropertyGraph(cora.node_ids, cora.labels, {"words": Property("words", "string", multi=True, values=listed)},
                         cora.src, cora.dst, "cora")


COMMON = ["task=link_prediction", "trainer.precision=32-true", "trainer.gradient_clip_val=null",
          "optim.weight_decay=0", "instance=local_cpu1", "trainer.enable_progress_bar=false", "checkpoint.every_n_steps=0"]
WORKLOADS = {
    "cora": Workload(cora_graph, [*COMMON, "model=graphsage", "optim.lr=0.01"],
                     ["task.datasets.csv.name_property=null", "+task.features.words={type:category,max_categories:1500}"],
                     epochs=200, edge_label="cites"),
    # GPL-3.0: read by path from ../shared/data, written only under --work (never into the project)
    "twitch": Workload(lambda: read_twitch(ROOT.parent / "shared" / "data" / "graph" / "twitch"),
                       [*COMMON, "model=gcn", "optim.lr=0.001", "task.sampling=neighbor", "task.fanouts=[10,10]",
                        "optim.batch_size=1024"],
                       ["task.datasets.csv.name_property=null",
                        "+task.features.interests={type:category,max_categories:500}", "+task.features.target={type:none}"],
                       epochs=20, edge_label="follows"),
}
#: what every transform / recommend command pays besides its work: the imports, and leaving as run.py does
FLOOR = ("import sagelab.cli, torch, mlflow, mlflow.store.tracking.sqlalchemy_store; "
         "from sagelab.tasks.graph.dgl_shim import import_dgl; import_dgl(); sagelab.cli.exit_process(0)")


def held_out_exports(graph: PropertyGraph, folder: Path, seed: int, edge_label: str,
                     holdout: float = 0.1) -> tuple[Path, Path, list[str]]:
    """``base/`` (the graph minus a seeded ``holdout`` share of its nodes and their edges) and ``full/`` as
    Gremlin CSV; the held-out node ids that have an edge."""
    rng = np.random.default_rng(seed)
    held = set(rng.choice(graph.num_nodes, int(round(holdout * graph.num_nodes)), replace=False).tolist())
    keep = [i for i in range(graph.num_nodes) if i not in held]
    new_index = {old: new for new, old in enumerate(keep)}
    edge_kept = [k for k, (s, d) in enumerate(zip(graph.src.tolist(), graph.dst.tolist())) if s not in held and d not in held]
    props = {name: Property(p.name, p.kind, p.multi, [p.values[i] for i in keep]) for name, p in graph.properties.items()}
    base = PropertyGraph([graph.node_ids[i] for i in keep], [graph.labels[i] for i in keep], props,
                         np.array([new_index[s] for s in graph.src[edge_kept].tolist()], np.int64),
                         np.array([new_index[d] for d in graph.dst[edge_kept].tolist()], np.int64), "base")
    paths = {}
    for name, version in (("base", base), ("full", graph)):
        paths[name] = folder / name
        write_gremlin_csv(version, paths[name] / "nodes.csv", paths[name] / "edges.csv", edge_label=edge_label)
    degree = np.bincount(np.concatenate([graph.src, graph.dst]), minlength=graph.num_nodes)
    connected = [graph.node_ids[i] for i in sorted(held) if degree[i] > 0]
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


def floor_seconds() -> float:
    """Seconds of a process that only imports what a transform / recommend command needs and exits as run.py does
    (no config, no run)."""
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", FLOOR], cwd=ROOT, check=True, capture_output=True,
                   env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    return time.monotonic() - started


def one_seed(seed: int, work: Path, load: Workload, epochs: int, scratch: bool) -> dict[str, float]:
    base, full, new_nodes = held_out_exports(load.read(), work / f"exports-{seed}", seed, load.edge_label)
    data = lambda folder: ["task.dataset=csv", f"task.datasets.csv.nodes={folder}/nodes.csv",  # noqa: E731
                           f"task.datasets.csv.edges={folder}/edges.csv", *load.features]
    gnn = [*load.gnn, f"seed={seed}", f"task.split.seed={seed}"]
    trained, run_id, train_s = run([*gnn, *data(base), f"trainer.max_epochs={epochs}"], work, f"train-{seed}")
    update = [f"task.transform.nodes={full}/nodes.csv", f"task.transform.edges={full}/edges.csv",
              f"checkpoint.load={run_id}"]
    floor_s = floor_seconds()
    transformed, _, transform_s = run([*gnn, *data(base), "mode=transform", *update], work, f"transform-{seed}")
    recommended, _, recommend_s = run([*gnn, *data(base), "mode=recommend", f"task.node={new_nodes[0]}",
                                       *update], work, f"recommend-{seed}")
    assert recommended["recommend/new_node"] == 1.0 and recommended["recommend/count"] > 0
    half = epochs // 2
    retrained, retrain_id, retrain_s = run([*gnn, *data(full), "mode=retrain", f"checkpoint.load={run_id}",
                                            f"trainer.max_epochs={half}"], work, f"retrain-{seed}")
    target = trained["val/auc"]
    row = {
        "seed": seed, "new_nodes": transformed["transform/new_nodes"], "new_edges": transformed["transform/new_edges"],
        "train_s": train_s, "train_wall_s": trained["wall_time_s"], "train_time_s": trained["train_time_s"],
        "floor_s": floor_s, "transform_s": transform_s, "transform_wall_s": transformed["wall_time_s"],
        "recommend_s": recommend_s, "recommend_wall_s": recommended["wall_time_s"],
        "val_auc": target, "test_auc": trained["test/auc"],
        "retrain_epoch": first_epoch_reaching(work, retrain_id, target) or float("nan"),
        "retrain_epoch1_val_auc": val_curve(work, retrain_id)[0], "retrain_val_auc": retrained["val/auc"],
        "retrain_test_auc": retrained["test/auc"], "retrain_s": retrain_s,
    }
    if scratch:
        fresh, scratch_id, _ = run([*gnn, *data(full), f"trainer.max_epochs={epochs}"], work, f"scratch-{seed}")
        row |= {"scratch_epoch": first_epoch_reaching(work, scratch_id, target) or float("nan"),
                "scratch_val_auc": fresh["val/auc"]}
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--graph", choices=sorted(WORKLOADS), default="cora")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=None, help="the original training's epochs (default: the "
                        "graph's; smoke runs: fewer)")
    parser.add_argument("--no-scratch", dest="scratch", action="store_false",
                        help="skip training from scratch on the updated export (context only)")
    parser.add_argument("--out", type=Path, default=None, help="default: results.json (Cora), results-<graph>.json")
    parser.add_argument("--work", type=Path, default=None, help="folder for exports, runs and checkpoints")
    args = parser.parse_args()
    load = WORKLOADS[args.graph]
    epochs = args.epochs or load.epochs
    work = args.work or Path(tempfile.mkdtemp(prefix="graph-retrain-"))
    print(f"CPU: {cpu_model()}; work folder {work}", flush=True)
    rows = []
    for seed in args.seeds:
        rows.append(one_seed(seed, work, load, epochs, args.scratch))
        print(json.dumps(rows[-1]), flush=True)
    cols = [("seed", "seed"), ("new nodes", "new_nodes"), ("train s", "train_s"), ("transform s", "transform_s"),
            ("recommend s", "recommend_s"), ("floor s", "floor_s"), ("rec/train", None), ("val AUC", "val_auc"),
            (f"retrain epochs to it (of {epochs})", "retrain_epoch"), ("retrain val AUC", "retrain_val_auc")]
    cols += [("scratch epochs to it", "scratch_epoch")] if args.scratch else []
    print("\n| " + " | ".join(c for c, _ in cols) + " |\n|" + "---|" * len(cols))
    for r in rows:
        cells = [f"{r['recommend_s'] / r['train_s']:.1%}" if key is None else
                 f"{r[key]:.4f}" if "auc" in key else f"{r[key]:.1f}" if key.endswith("_s") else f"{r[key]:g}"
                 for _, key in cols]
        print("| " + " | ".join(cells) + " |")
    for key in ("train_s", "floor_s", "transform_s", "recommend_s", "retrain_epoch", "val_auc", "retrain_val_auc"):
        values = [r[key] for r in rows]
        print(f"{key}: {statistics.mean(values):.4f}" + (f" ± {statistics.stdev(values):.4f}" if len(values) > 1 else ""))
    out = args.out or Path(__file__).with_name("results.json" if args.graph == "cora" else f"results-{args.graph}.json")
    out.write_text(json.dumps({"cpu": cpu_model(), "graph": args.graph, "epochs": epochs, "rows": rows}, indent=1))
    print(f"written {out}")


if __name__ == "__main__":
    main()
