"""``task=link_prediction`` through the runner: config checks, train -> recommend -> transform on the example graph.

The example graph (32 people, 68 friendships) trains in seconds; the transform test adds a new user with
interests and two friends to the export and asks for her recommendations from the trained checkpoint.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest
from omegaconf import DictConfig

from conftest import dispatch_cfg, mlflow_runs
from sagelab.config import PROJECT_ROOT, ConfigError

EXAMPLE = PROJECT_ROOT / "data" / "graph" / "example"
HENRYS_FRIENDS = {"Terry", "Gary", "Alistair", "Mike", "Anna"}
BASE = [
    "task=link_prediction", "model=graphsage", "trainer.max_epochs=40", "optim.lr=0.01", "optim.weight_decay=0",
    "trainer.gradient_clip_val=null", "checkpoint.every_n_steps=0",
]
FAST = [*BASE, "model.dropout=0.2"]


def run(cfg: DictConfig) -> tuple[dict[str, float], str]:
    """The command as ``python run.py`` runs it (CLI dispatch); its metrics and MLflow run id."""
    metrics = dispatch_cfg(cfg)
    runs = mlflow_runs(Path(cfg.output_dir).parent, "link_prediction").sort_values("start_time", ascending=False)
    return metrics, str(runs.iloc[0]["run_id"])


def artifact(tmp_path: Path, run_id: str, name: str) -> Any:
    import mlflow

    local = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path=name, tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", dst_path=str(tmp_path / "dl")
    )
    return json.loads(Path(local).read_text()) if name.endswith(".json") else local


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["model=bert_tiny"], "model"),
        (["task.dataset=imdb"], "task.dataset"),
        (["task.sampling=random"], "task.sampling"),
        (["task.sampling=neighbor", "task.fanouts=[5,5,5]"], "task.fanouts"),
        (["model.scorer=cosine"], "model.scorer"),
        (["model.arch=gat"], "model.arch"),
        (["model.aggregator=max"], "model.aggregator"),
        (["model.dropout=1.0"], "model.dropout"),
        (["model.num_layers=0"], "model.num_layers"),
        (["task.k=0"], "task.k"),
        (["task.id_embedding=-1"], "task.id_embedding"),
        (["+task.foo=1"], "task.foo"),
        (["mode=recommend"], "task.node"),
        (["mode=transform"], "task.transform.nodes"),
        (["task.dataset=csv"], "task.datasets.csv.nodes"),
        (["task.datasets.cora.path=/nope", "task.dataset=cora"], "task.datasets.cora.path"),
        (["strategy=ddp", "instance=local_cpu2"], "strategy"),
    ],
)
def test_config_errors_name_the_key(make_cfg: Callable[..., DictConfig], overrides: list[str], key: str) -> None:
    from hydra.utils import get_class

    cfg = make_cfg(*BASE, *overrides)
    with pytest.raises(ConfigError) as err:
        get_class(str(cfg.task._target_))(cfg).validate()
    assert err.value.key == key


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("task.k=abc", "sagelab: bad config: task.k: wrong type: 'abc' is not a whole number."),
        ("task.foo=1", "sagelab: bad config: task.foo: no such key in task link_prediction (a typo?)."),
        ("+task.foo=1", "sagelab: bad config: task.foo: no such key in task link_prediction (a typo?)."),
        ("task.split.val=2", "sagelab: bad config: task.split.val: is a fraction (0..1), got 2.0."),
    ],
)
def test_command_line_type_and_key_errors(run_cli: Callable[..., Any], override: str, expected: str) -> None:
    done = run_cli("task=link_prediction", "mode=recommend", "task.node=Henry", override, tiny=False)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1] == expected
    assert "Traceback" not in done.stderr


def test_train_recommend_transform(make_cfg: Callable[..., DictConfig], tmp_path: Path) -> None:
    # -- train + evaluate: val/test metrics and the embedding artifacts --------------------
    metrics, run_id = run(make_cfg(*FAST))
    for key in ("val/auc", "val/mrr", "val/hits_at_20", "test/auc", "test/mrr", "test/hits_at_20"):
        assert 0.0 <= metrics[key] <= 1.0
    mapping = artifact(tmp_path, run_id, "embeddings/mapping.json")
    assert mapping["names"][:3] == ["Henry", "Bill", "Terry"]
    import numpy as np

    embeddings = np.load(artifact(tmp_path, run_id, "embeddings/embeddings.npy"))
    assert embeddings.shape == (32, 128)
    checkpoint = tmp_path / "ckpt" / "final.ckpt"
    assert checkpoint.exists()
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    import torch

    extra = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]["_extra_state"]
    assert extra["node_ids"][:2] == ["p1", "p2"] and extra["names"][0] == "Henry"
    assert [spec["property"] for spec in extra["features"]["specs"]] == ["name", "age", "interests", "job"]

    # -- recommend: k non-friends of Henry, best first ---------------------------------------
    metrics, run_id = run(make_cfg(*FAST, "mode=recommend", "task.node=Henry", "task.k=6", f"checkpoint.load={checkpoint}"))
    answer = artifact(tmp_path, run_id, "recommendations.json")
    names = [r["name"] for r in answer["recommendations"]]
    scores = [r["score"] for r in answer["recommendations"]]
    assert answer["node"] == {"id": "p1", "name": "Henry"}
    assert len(names) == 6 and not set(names) & (HENRYS_FRIENDS | {"Henry"})
    assert scores == sorted(scores, reverse=True) and all(0 < s < 1 for s in scores)
    assert metrics["recommend/count"] == 6

    with pytest.raises(ConfigError, match="'Henri' is neither a node id nor a node name.*Did you mean 'Henry'"):
        run(make_cfg(*FAST, "mode=recommend", "task.node=Henri", f"checkpoint.load={checkpoint}"))

    # -- transform: a new user with interests and two friends, no retraining ---------------------
    updated = tmp_path / "updated"
    updated.mkdir()
    shutil.copy(EXAMPLE / "edges.csv", updated / "edges.csv")
    shutil.copy(EXAMPLE / "nodes.csv", updated / "nodes.csv")
    with (updated / "nodes.csv").open("a", newline="") as handle:
        csv.writer(handle).writerow(["p33", "person", "Zoe", "30", "football;golf;padel", "golf instructor"])
    with (updated / "edges.csv").open("a", newline="") as handle:
        csv.writer(handle).writerows([["e900", "p33", "p1", "friend"], ["e901", "p2", "p33", "friend"]])
    transform = [f"task.transform.nodes={updated / 'nodes.csv'}", f"task.transform.edges={updated / 'edges.csv'}",
                 f"checkpoint.load={checkpoint}", "task.k=5"]
    metrics, run_id = run(make_cfg(*FAST, "mode=transform", *transform))
    assert metrics["transform/new_nodes"] == 1 and metrics["transform/nodes"] == 33
    answers = artifact(tmp_path, run_id, "transform_recommendations.json")
    assert [a["node"]["name"] for a in answers] == ["Zoe"]
    zoe = [r["name"] for r in answers[0]["recommendations"]]
    assert len(zoe) == 5 and not set(zoe) & {"Zoe", "Henry", "Bill"}
    refreshed = np.load(artifact(tmp_path, run_id, "embeddings/embeddings.npy"))
    assert refreshed.shape == (33, 128)
    assert hashlib.sha256(checkpoint.read_bytes()).hexdigest() == digest  # nothing was retrained

    # -- a changed schema is refused with the property named -----------------------------------
    text = (updated / "nodes.csv").read_text().replace("age:Int", "age:String", 1)
    (updated / "nodes.csv").write_text(text)
    with pytest.raises(ConfigError, match="property 'age' is string; the model was trained with int"):
        run(make_cfg(*FAST, "mode=transform", *transform))


def test_feature_overrides_merge_over_the_dataset_preset(make_cfg: Callable[..., DictConfig]) -> None:
    from sagelab.tasks.graph.task import LinkPredictionTask

    cfg = make_cfg(*BASE, "+task.features.interests.max_categories=5", "+task.features.job.type=none")
    features = LinkPredictionTask(cfg).dataset["features"]
    assert features["interests"] == {"max_categories": 5}
    assert features["job"] == {"type": "none"}  # the preset's text encoding is switched off
    assert features["age"]["type"] == "bucket_numerical"  # untouched preset entries stay
