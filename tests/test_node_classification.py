"""Planetoid sets with gaps in the test index, and task=node_classification / node_regression on tiny graphs.

``planetoid_with_gaps`` writes a 22-node Planetoid file set (``ind.toy.*``) in the release's formats: pickled
scipy/numpy matrices, an adjacency dict, ``test.index``. Its test indices skip nodes 15 and 19, which are in no
feature file (as Citeseer's 15 are): they must load as zero rows and be unlabelled. Features carry the class
(node ``i`` is class ``i % 3``), so a few dozen full-graph epochs learn it.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from omegaconf import DictConfig

from conftest import dispatch_cfg
from sagelab.config import PROJECT_ROOT, ConfigError
from sagelab.tasks.graph.datasets import read_planetoid

CLASSES, KNOWN, NUM_NODES = 3, 12, 22
TEST_INDEX = [21, 12, 17, 14, 20, 13, 18, 16]  # unsorted, as in the releases; 15 and 19 are gaps
GAPS = [15, 19]
EXAMPLE = PROJECT_ROOT / "data" / "graph" / "example"


def features_of(node: int) -> np.ndarray:
    row = np.zeros(6, dtype=np.float32)
    row[node % CLASSES] = 1.0  # the class ...
    row[3 + (node // 3) % 3] = 1.0  # ... and a word unrelated to it
    return row


def one_hot(nodes: list[int]) -> np.ndarray:
    return np.eye(CLASSES, dtype=np.float32)[[n % CLASSES for n in nodes]]


def planetoid_with_gaps(folder: Path, name: str = "toy") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    known = list(range(KNOWN))
    parts = {
        "x": sp.csr_matrix(np.stack([features_of(n) for n in range(6)])),
        "y": one_hot(list(range(6))),
        "allx": sp.csr_matrix(np.stack([features_of(n) for n in known])),
        "ally": one_hot(known),
        "tx": sp.csr_matrix(np.stack([features_of(n) for n in TEST_INDEX])),
        "ty": one_hot(TEST_INDEX),
        # a ring over the nodes of each class, chords between classes; gap 15 has edges, gap 19 none
        "graph": {n: [m for m in range(NUM_NODES) if m != n and 19 not in (n, m)
                      and ((m - n) % CLASSES == 0 and abs(m - n) <= 6 or m - n == 1)]
                  for n in range(NUM_NODES)},
    }
    for part, value in parts.items():
        # protocol 4: Python 3's protocol 2 pickles bytes through _codecs.encode, which the reader refuses
        (folder / f"ind.{name}.{part}").write_bytes(pickle.dumps(value, protocol=4))
    (folder / f"ind.{name}.test.index").write_text("".join(f"{i}\n" for i in TEST_INDEX))
    return folder


def toy(folder: Path) -> list[str]:
    return ["task.dataset=cora", f"task.datasets.cora.path={folder}", "task.datasets.cora.name=toy"]


NODES = ["task=node_classification", "model=gcn", "checkpoint.every_n_steps=0"]


def test_gaps_in_the_test_index_are_featureless_unlabelled_rows(tmp_path: Path) -> None:
    graph = read_planetoid(planetoid_with_gaps(tmp_path / "toy"), "toy", labels=True)
    words, labels = graph.properties["words"].values, graph.properties["label"].values
    assert graph.num_nodes == NUM_NODES and words.shape == (NUM_NODES, 6)
    assert graph.meta["featureless_nodes"] == len(GAPS)
    for node in range(NUM_NODES):
        if node in GAPS:
            assert not words[node].any() and labels[node] is None
        else:  # tx row i sits at node TEST_INDEX[i]; every other row where allx put it
            assert np.array_equal(words[node], features_of(node)) and labels[node] == node % CLASSES
    split = graph.meta["planetoid_split"]
    assert (split["train"], split["val"], split["test"]) == (list(range(6)), list(range(6, 12)), sorted(TEST_INDEX))
    assert 15 in set(graph.src) | set(graph.dst)  # a gap keeps its edges; 19 has none
    assert 19 not in set(graph.src) | set(graph.dst)
    assert "label" not in read_planetoid(tmp_path / "toy", "toy").properties  # link prediction: no labels


def test_a_planetoid_set_with_gaps_trains_link_prediction(make_cfg: Callable[..., DictConfig], tmp_path: Path) -> None:
    folder = planetoid_with_gaps(tmp_path / "toy")
    metrics = dispatch_cfg(make_cfg("task=link_prediction", "model=gcn", *toy(folder), "trainer.max_epochs=2",
                                    "task.eval_negs=5", "task.split.val=0.1", "task.split.test=0.2",
                                    "checkpoint.every_n_steps=0"))
    assert 0.0 <= metrics["test/auc"] <= 1.0 and "val/mrr" in metrics


def test_node_classification_learns_the_toy_classes(make_cfg: Callable[..., DictConfig], tmp_path: Path) -> None:
    folder = planetoid_with_gaps(tmp_path / "toy")
    metrics = dispatch_cfg(make_cfg(*NODES, *toy(folder), "trainer.max_epochs=60", "model.dropout=0.1",
                                    "optim.lr=0.05", "seed=0"))
    assert {"val/accuracy", "val/macro_f1", "test/accuracy", "test/macro_f1", "test/loss"} <= set(metrics)
    assert metrics["test/accuracy"] >= 0.75, metrics  # 8 test nodes, chance is 1/3
    checkpoint = tmp_path / "ckpt" / "final.ckpt"  # weights_only: the classes travel as plain extra_state
    again = dispatch_cfg(make_cfg(*NODES, *toy(folder), "mode=evaluate", f"checkpoint.load={checkpoint}"))
    assert again["val/accuracy"] == pytest.approx(metrics["val/accuracy"])
    assert torch.load(checkpoint, weights_only=True)["state_dict"]["_extra_state"]["classes"] == [0, 1, 2]
    from sagelab.tasks.nodes.task import NodeClassificationTask

    described = NodeClassificationTask(make_cfg(*NODES, *toy(folder))).prepared().describe()
    assert (described["train_nodes"], described["val_nodes"], described["test_nodes"]) == (6, 6, 8)
    assert described["featureless_nodes"] == 2 and described["classes"] == ["0", "1", "2"]


def test_graphsage_and_a_random_split(make_cfg: Callable[..., DictConfig], tmp_path: Path) -> None:
    from sagelab.tasks.nodes.task import NodeClassificationTask

    folder = planetoid_with_gaps(tmp_path / "toy")
    cfg = make_cfg(*NODES, *toy(folder), "model=graphsage", "task.split.kind=random", "task.split.val=0.25",
                   "task.split.test=0.25", "task.split.seed=3", "trainer.max_epochs=2", "task.decay=all")
    masks = NodeClassificationTask(cfg).prepared().masks
    parts = {name: set(index.tolist()) for name, index in masks.items()}
    assert [len(parts[p]) for p in ("train", "val", "test")] == [10, 5, 5]  # 20 labelled nodes, gaps left out
    assert not (parts["train"] & parts["val"]) and not (parts["train"] & parts["test"])
    assert not set(GAPS) & set().union(*parts.values())
    assert "test/accuracy" in dispatch_cfg(cfg)


def test_node_regression_predicts_ages_in_years(make_cfg: Callable[..., DictConfig], tmp_path: Path) -> None:
    from sagelab.tasks.nodes.task import NodeClassificationTask

    cfg = make_cfg("task=node_regression", "model=gcn", "checkpoint.every_n_steps=0", "trainer.max_epochs=30", "seed=0")
    data = NodeClassificationTask(cfg).prepared()
    ages = data.y[data.masks["train"]].double()
    assert data.scale == pytest.approx((float(ages.mean()), float(ages.std(unbiased=False))))
    assert "age" not in {p for p, t, _ in data.encoder.dims() if t != "none"}  # the target is no feature
    metrics = dispatch_cfg(cfg)
    assert {"val/rmse", "val/mae", "val/r2", "test/rmse", "test/mae"} <= set(metrics)
    assert 0 < metrics["test/mae"] <= metrics["test/rmse"] < 40  # years, not standardised units
    with pytest.raises(ConfigError) as caught:  # a String target cannot be regressed
        NodeClassificationTask(make_cfg("task=node_regression", "model=gcn", "task.target=job")).prepared()
    assert caught.value.key == "task.target"


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["task.target=colour"], "task.target"),
        (["+task.features.label={type: category}"], "task.features.label"),
        (["task.dataset=csv", f"task.datasets.csv.nodes={EXAMPLE}/nodes.csv",
          f"task.datasets.csv.edges={EXAMPLE}/edges.csv", "task.target=age"], "task.split.kind"),
        (["task.split.kind=random", "task.split.val=0.5", "task.split.test=0.5"], "task.split"),
        (["task.split.kind=stratified"], "task.split.kind"),
        (["task.decay=some"], "task.decay"),
    ],
)
def test_config_errors_name_the_key(make_cfg: Callable[..., DictConfig], tmp_path: Path, overrides: list[str],
                                    key: str) -> None:
    from sagelab.tasks.nodes.task import NodeClassificationTask

    cfg = make_cfg(*NODES, *toy(planetoid_with_gaps(tmp_path / "toy")), *overrides)
    with pytest.raises(ConfigError) as caught:
        task = NodeClassificationTask(cfg)
        task.validate()
        task.prepared()
    assert caught.value.key == key, caught.value


@pytest.mark.parametrize(
    ("part", "content", "match"),
    [
        ("ally", pickle.dumps(np.zeros((3, 3)), protocol=4), r"ind.toy.ally: holds labels of shape \(3, 3\); "
                                                              r"expected \(12, 3\)"),
        ("y", pickle.dumps(np.zeros((13, 3)), protocol=4), r"ind.toy.y: has 13 rows, more than the 12 of allx"),
        ("test.index", b"12\n12\n13\n14\n16\n17\n18\n20\n", r"ind.toy.test.index: does not fit the features: "
                                                              r"8 test indices \(7 distinct\)"),
        ("test.index", b"2\n12\n13\n14\n16\n17\n18\n20\n", r"expected 8 distinct indices from 12 up"),
        ("y", None, r"ind.toy.y: the Planetoid file does not exist"),
    ],
)
def test_bad_label_and_index_files_are_named(tmp_path: Path, part: str, content: bytes | None, match: str) -> None:
    folder = planetoid_with_gaps(tmp_path / "toy")
    path = folder / f"ind.toy.{part}"
    if content is None:
        path.unlink()
    else:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=match):
        read_planetoid(folder, "toy", labels=True)


@pytest.mark.parametrize(
    ("task", "part", "damage", "expected"),
    [
        ("link_prediction", "tx", lambda b: b[: len(b) // 2], "ind.toy.tx: is not a readable Planetoid file ("),
        ("node_classification", "ty", lambda b: b"garbage" + b[7:], "ind.toy.ty: is not a readable Planetoid file"),
    ],
)
def test_a_damaged_file_is_one_line_naming_it(run_cli: Callable[..., Any], tmp_path: Path, task: str, part: str,
                                             damage: Callable[[bytes], bytes], expected: str) -> None:
    folder = planetoid_with_gaps(tmp_path / "toy")
    path = folder / f"ind.toy.{part}"
    path.write_bytes(damage(path.read_bytes()))
    done = run_cli(f"task={task}", "model=gcn", *toy(folder), "task.eval_negs=5" if task == "link_prediction" else
                   "trainer.max_epochs=1")
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.returncode == 2, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("sagelab: bad config:")]
    assert len(errors) == 1 and errors[0].startswith(f"sagelab: bad config: {path}: "), done.stderr[-3000:]
    assert expected in errors[0], errors
