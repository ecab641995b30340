"""An updated export: ``mode=transform`` (what changed, embeddings for new nodes), ``mode=recommend`` for a node
that exists only in the update, and ``mode=retrain`` warm-started from a previous run.

A 20-person synthetic graph written here (no text property, so no sentence model loads) trains for a few epochs
once per module; its update adds a node, changes one, removes one, and adds and removes edges.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from omegaconf import DictConfig, OmegaConf

from conftest import ROOT, TINY, cli_env, compose_config, dispatch_cfg, mlflow_runs, private_store
from sagelab.config import ConfigError

GROUPS = ["chess", "golf", "jazz", "hiking"]
HEADER = ["~id", "~label", "name:String", "age:Int", "group:String"]


def people(n: int = 20) -> list[list[str]]:
    return [[f"n{i}", "person", f"P{i}", str(20 + i), GROUPS[i % 4]] for i in range(n)]


def friendships(n: int = 20) -> list[tuple[str, str]]:
    """Each person knows the next two of the same group (a ring per group) and one of the next group."""
    pairs = set()
    for i in range(n):
        for j in (i + 4, i + 8, i + 1):
            a, b = sorted((f"n{i}", f"n{j % n}"))
            pairs.add((a, b))
    return sorted(pairs)


def write_export(folder: Path, nodes: list[list[str]], edges: list[tuple[str, str]]) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "nodes.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([HEADER, *nodes])
    with (folder / "edges.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([["~id", "~from", "~to", "~label"],
                                      *([f"e{k}", a, b, "knows"] for k, (a, b) in enumerate(edges))])
    return folder / "nodes.csv", folder / "edges.csv"


def dataset(nodes: Path, edges: Path) -> list[str]:
    return ["task.dataset=csv", f"task.datasets.csv.nodes={nodes}", f"task.datasets.csv.edges={edges}"]


BASE = ["task=link_prediction", "model=graphsage", "model.dropout=0.0", "optim.lr=0.01",
        "trainer.gradient_clip_val=null", "checkpoint.every_n_steps=0", "task.eval_negs=5", "task.k=3"]


# the previous run's settings that retrain inherits (BASE and the test's own overrides leave them unset)
TRAINED_WITH = ["model.hidden_dim=16", "task.id_embedding=4", "optim.weight_decay=0.001"]


class Update:
    """The base export, its update and what the update did, with a run trained on the base."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        nodes, edges = people(), friendships()
        self.base = write_export(tmp / "base", nodes, edges)
        changed = [row[:] for row in nodes[:-1]]  # n19 removed, with its edges
        changed[3][4] = "jazz"  # n3 changes group
        changed.append(["n20", "person", "Newcomer", "30", "padel"])  # only in the update, with a group unseen before
        kept = [e for e in edges if "n19" not in e and e != ("n0", "n4")]
        self.added = [("n1", "n20"), ("n20", "n5"), ("n0", "n10")]
        self.removed_edges = len(edges) - len(kept)
        self.update = write_export(tmp / "update", changed, kept + self.added)
        self.metrics, self.run_id = run(self.cfg("ckpt-train", *dataset(*self.base), "trainer.max_epochs=3",
                                                 *TRAINED_WITH))

    def cfg(self, name: str, *overrides: str) -> DictConfig:
        cfg = compose_config(*BASE, *overrides, f"checkpoint.dir={self.tmp / name}", tmp=self.tmp)
        return cfg

    def transform_overrides(self) -> list[str]:
        """The update and the base run's checkpoint, for mode=transform / recommend on the base config."""
        return [f"task.transform.nodes={self.update[0]}", f"task.transform.edges={self.update[1]}",
                f"checkpoint.load={self.run_id}", "model.hidden_dim=16", "task.id_embedding=4"]

    def artifact(self, run_id: str, name: str) -> Any:
        import mlflow

        local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=name, dst_path=str(self.tmp / "dl"),
                                                    tracking_uri=f"sqlite:///{self.tmp}/mlflow.db")
        return json.loads(Path(local).read_text()) if name.endswith(".json") else local


def run(cfg: DictConfig) -> tuple[dict[str, float], str]:
    metrics = dispatch_cfg(cfg)
    runs = mlflow_runs(Path(cfg.output_dir).parent, "link_prediction").sort_values("start_time", ascending=False)
    return metrics, str(runs.iloc[0]["run_id"])


@pytest.fixture(scope="module")
def update(tmp_path_factory: pytest.TempPathFactory) -> Update:
    return Update(tmp_path_factory.mktemp("retrain"))


def test_transform_logs_what_changed_and_recommends_for_a_new_node(update: Update) -> None:
    transform = update.transform_overrides()
    metrics, run_id = run(update.cfg("ckpt-train", *dataset(*update.base), "mode=transform", *transform))
    counts = {k: metrics[f"transform/{k}"] for k in ("new_nodes", "removed_nodes", "changed_nodes", "new_edges",
                                                         "removed_edges")}
    assert counts == {"new_nodes": 1, "removed_nodes": 1, "changed_nodes": 1, "new_edges": len(update.added),
                      "removed_edges": update.removed_edges}
    changes = update.artifact(run_id, "transform/changes.json")
    assert changes["new_nodes"] == ["n20"] and changes["removed_nodes"] == ["n19"]
    assert changes["changed_nodes"] == {"n3": ["group"]}
    shifts = [m["l2"] for m in changes["moved_most"]]
    assert shifts == sorted(shifts, reverse=True) and shifts[0] > 0  # n3 changed: something moved
    assert metrics["transform/max_shift"] == pytest.approx(shifts[0])
    mapping = update.artifact(run_id, "embeddings/mapping.json")
    embeddings = np.load(update.artifact(run_id, "embeddings/embeddings.npy"))
    assert mapping["node_ids"][-1] == "n20" and embeddings.shape == (20, 16) and np.isfinite(embeddings[-1]).all()
    answers = update.artifact(run_id, "transform_recommendations.json")
    assert [a["node"]["id"] for a in answers] == ["n20", "n3"]  # new, then changed nodes

    # recommend for the node that exists only in the update, from the same checkpoint, without a transform run
    metrics, run_id = run(update.cfg("ckpt-train", *dataset(*update.base), "mode=recommend", "task.node=Newcomer",
                                     *transform))
    answer = update.artifact(run_id, "recommendations.json")
    names = [r["name"] for r in answer["recommendations"]]
    assert answer["node"] == {"id": "n20", "name": "Newcomer"} and metrics["recommend/new_node"] == 1.0
    assert len(names) == 3 and not set(names) & {"Newcomer", "P1", "P5"}  # itself and its friends excluded


def test_recommend_as_a_command_starts_without_lightning(update: Update) -> None:
    """A mode that only embeds and ranks loads the network alone: Lightning (and the torchmetrics and transformers
    it imports) would be most of the command's time. Same answer as the in-process run above."""
    transform = update.transform_overrides()
    args = [*TINY, *private_store(update.tmp), *BASE, *dataset(*update.base), "mode=recommend", "task.node=Newcomer",
            *transform, f"checkpoint.dir={update.tmp / 'ckpt-cli'}"]
    done = subprocess.run([sys.executable, "-X", "importtime", str(ROOT / "run.py"), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env=cli_env())
    assert done.returncode == 0, done.stderr[-2000:]
    imported = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "torch" in imported and "mlflow" in imported  # the log is complete
    assert not {"lightning", "torchmetrics", "transformers"} & imported
    assert "recommend/new_node" in done.stdout and "Newcomer" in done.stdout


def test_retrain_starts_from_the_previous_weights_and_hyperparameters(update: Update) -> None:
    import torch

    from sagelab.tasks.graph.task import LinkPredictionTask

    cfg = update.cfg("ckpt-retrain", *dataset(*update.update), "mode=retrain", f"checkpoint.load={update.run_id}",
                     "optim.lr=0.005", "trainer.max_epochs=2")
    task = LinkPredictionTask(cfg)
    task.validate()  # inherits from the previous run
    assert cfg.model.hidden_dim == 16 and cfg.task.id_embedding == 4  # taken from the previous run
    assert cfg.optim.weight_decay == 0.001
    assert cfg.optim.lr == 0.005  # the command line wins
    module = task.module()  # what the trainer gets: step 0
    before = torch.load(Path(update.tmp / "ckpt-train" / "final.ckpt"), weights_only=True)["state_dict"]
    after = module.state_dict()
    for name, tensor in before.items():
        if name not in ("_extra_state", "model.id_embedding.weight"):
            assert torch.equal(after[name], tensor), name
    old_rows, new_rows = before["model.id_embedding.weight"], after["model.id_embedding.weight"]
    old_ids, new_ids = before["_extra_state"]["node_ids"], module.node_ids
    assert new_rows.shape == (20, 4) and "n19" not in new_ids
    for j, node in enumerate(new_ids):
        expected = old_rows[old_ids.index(node)] if node in old_ids else old_rows.mean(0)
        assert torch.allclose(new_rows[j], expected), node
    # the previous run's held-out edges stay held out (the split carried over)
    ids = task.prepared().graph.node_ids
    train = {tuple(sorted((ids[a], ids[b]))) for a, b in task.prepared().split.train.tolist()}
    for part in ("val", "test"):
        held = {tuple(sorted((old_ids[a], old_ids[b]))) for a, b in _base_split(update, part)}
        assert held and not held & train

    metrics, run_id = run(cfg)  # the whole command: trains and logs what changed
    assert metrics["retrain/new_nodes"] == 1 and metrics["retrain/removed_nodes"] == 1
    import mlflow

    record = mlflow.MlflowClient(f"sqlite:///{update.tmp}/mlflow.db").get_run(run_id)
    assert record.data.tags["sagelab.warm_start"] == update.run_id
    assert record.data.params["model.hidden_dim"] == "16" and record.data.params["optim.lr"] == "0.005"

    # evaluating the retrained run on its graph scores the split it trained with, not a re-drawn one
    evaluating = LinkPredictionTask(update.cfg("ckpt-retrain", *dataset(*update.update), "mode=evaluate",
                                               f"checkpoint.load={run_id}", *TRAINED_WITH))
    evaluating.validate()
    for part in ("train", "val", "test"):
        assert np.array_equal(getattr(evaluating.prepared().split, part), getattr(task.prepared().split, part))

    # a retraining of the retrained run still keeps the first run's held-out edges out of training
    again = write_export(update.tmp / "again", [*people(19), ["n20", "person", "Newcomer", "30", "padel"],
                                                ["n21", "person", "Later", "44", "golf"]],
                         [*friendships(19), *update.added, ("n21", "n2")])
    second = LinkPredictionTask(update.cfg("ckpt-again", *dataset(*again), "mode=retrain", f"checkpoint.load={run_id}"))
    second.validate()
    ids = second.prepared().graph.node_ids
    train = {tuple(sorted((ids[a], ids[b]))) for a, b in second.prepared().split.train.tolist()}
    for part in ("val", "test"):
        held = {tuple(sorted((old_ids[a], old_ids[b]))) for a, b in _base_split(update, part)}
        assert not held & train

    # the retrained model answers on its own graph; it keeps the encoding it started from ("padel" is OTHER),
    # which refitting on the update would not reproduce (five groups there)
    metrics, run_id = run(update.cfg("ckpt-retrain", *dataset(*update.update), "mode=recommend", "task.node=Newcomer",
                                     f"checkpoint.load={run_id}", "model.hidden_dim=16", "task.id_embedding=4"))
    assert metrics["recommend/count"] == 3


def _base_split(update: Update, part: str) -> list[tuple[int, int]]:
    from sagelab.tasks.graph.pipeline import load_graph
    from sagelab.tasks.graph.split import split_edges

    graph = load_graph({"format": "csv", "nodes": str(update.base[0]), "edges": str(update.base[1])})
    split = split_edges(graph.src, graph.dst, graph.num_nodes, 0.05, 0.10, 0)
    return getattr(split, part).tolist()


def test_retrain_refuses_weights_of_another_shape(update: Update) -> None:
    from sagelab.tasks.graph.task import LinkPredictionTask

    cfg = update.cfg("ckpt-other", *dataset(*update.update), "mode=retrain", f"checkpoint.load={update.run_id}",
                     "model.hidden_dim=8")
    task = LinkPredictionTask(cfg)
    task.validate()
    with pytest.raises(ConfigError, match=r"weights do not fit this model: model\.convs\.0\.") as err:
        task.module()
    assert err.value.key == "checkpoint.load"


def test_retrain_needs_a_run(update: Update) -> None:
    from sagelab.tasks.graph.task import LinkPredictionTask

    cfg = update.cfg("ckpt-none", *dataset(*update.update), "mode=retrain")
    with pytest.raises(ConfigError) as err:
        LinkPredictionTask(cfg).validate()
    assert err.value.key == "checkpoint.load"
    cfg = update.cfg("ckpt-none", *dataset(*update.update), "mode=retrain", f"checkpoint.load={update.tmp / 'nope.ckpt'}")
    with pytest.raises(ConfigError, match="names no MLflow run"):
        LinkPredictionTask(cfg).validate()
    cfg = update.cfg("ckpt-none", *dataset(*update.base), "mode=retrain", f"checkpoint.load={update.run_id}",
                     f"task.transform.nodes={update.update[0]}")
    with pytest.raises(ConfigError, match="mode=retrain trains on task.dataset"):
        LinkPredictionTask(cfg).validate()


def test_inherit_respects_the_command_line() -> None:
    from sagelab.tasks.graph.retrain import inherit

    cfg = OmegaConf.create({"model": {"name": "graphsage", "hidden_dim": 128}, "optim": {"lr": 0.01, "batch_size": 8},
                            "task": {"name": "link_prediction", "id_embedding": 0, "split": {"val": 0.05, "seed": 0}}})
    previous = OmegaConf.create({"model": {"name": "graphsage", "hidden_dim": 64}, "optim": {"lr": 0.002, "batch_size": 8},
                                 "task": {"name": "link_prediction", "id_embedding": 8, "split": {"val": 0.1, "seed": 3}}})
    changed = inherit(cfg, previous, ["task", "model", "optim.lr", "task.split"])
    assert cfg.model.hidden_dim == 64 and cfg.task.id_embedding == 8  # model= names the same model: inherited
    assert cfg.optim.lr == 0.01 and cfg.task.split.val == 0.05  # set on the command line: kept
    assert changed == {"model.hidden_dim": (128, 64), "task.id_embedding": (0, 8)}
    other = OmegaConf.create({"model": {"name": "gcn", "hidden_dim": 128}, "optim": {}, "task": {"name": "link_prediction"}})
    assert "model.hidden_dim" not in inherit(other, previous, ["model"])  # another model chosen: the command wins
