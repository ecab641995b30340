"""task=hetero_link_prediction / hetero_node_classification with model=rgcn (and the type-blind graphsage) on the tiny
shop export of ``test_hetero_graph``: trained through the runner's dispatch, as ``python run.py`` would."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from omegaconf import DictConfig

from conftest import dispatch_cfg
from sagelab.config import ConfigError
from test_hetero_graph import shop_graph


def shop(folder: Path) -> list[str]:
    """Overrides that train on a fresh shop export in ``folder``."""
    return on(*shop_graph(folder))


def on(nodes: Path, edges: Path) -> list[str]:
    """Overrides that read the export ``nodes`` / ``edges`` as ``task.dataset=csv``."""
    return ["task.dataset=csv", f"task.datasets.csv.nodes={nodes}", f"task.datasets.csv.edges={edges}",
            "task.datasets.csv.name_property=null", "+task.features.shop.city.type=category",
            "checkpoint.every_n_steps=0", "seed=0"]


NODES = ["task=hetero_node_classification", "task.target_node_type=item", "task.target=kind", "task.drop_edges=[]",
         "task.split.val=0.25", "task.split.test=0.25"]
LINKS = ["task=hetero_link_prediction", "task.target_edge=[user,bought,item]", "task.eval_negs=5",
         "task.split.val=0.15", "task.split.test=0.15"]


def test_rgcn_classifies_items_through_the_reverse_relation(make_cfg: Callable[..., DictConfig],
                                                            tmp_path: Path) -> None:
    """An item's kind is its shop's city, one hop against the sold_by direction: only rev_sold_by carries it."""
    from sagelab.tasks.hetero.task import HeteroNodeClassificationTask

    overrides = [*NODES, *shop(tmp_path / "shop"), "model=rgcn", "model.hidden_dim=16", "model.num_bases=2",
                 "trainer.max_epochs=30", "optim.lr=0.05", "model.dropout=0.0"]
    metrics = dispatch_cfg(make_cfg(*overrides))
    assert {"val/accuracy", "val/macro_f1", "test/accuracy", "test/macro_f1", "test/loss"} <= set(metrics)
    assert metrics["test/accuracy"] == 1.0 and metrics["val/accuracy"] == 1.0, metrics  # 3 + 3 items, chance 1/3
    state = torch.load(tmp_path / "ckpt" / "final.ckpt", weights_only=True)["state_dict"]
    assert state["_extra_state"]["classes"] == ["k0", "k1", "k2"]
    assert ["shop", "rev_sold_by", "item"] in state["_extra_state"]["relations"]
    # num_bases=2 < 6 relations: every layer combines two shared bases instead of a weight per relation
    assert state["model.convs.0.basis.w_comp"].shape == (6, 2) and "model.convs.0.weight" not in state
    task = HeteroNodeClassificationTask(make_cfg(*overrides))
    assert task.prepared().describe()["message_passing"]["item,sold_by,shop"] == 12
    again = dispatch_cfg(make_cfg(*overrides, "mode=evaluate", f"checkpoint.load={tmp_path / 'ckpt' / 'final.ckpt'}"))
    assert again["val/accuracy"] == pytest.approx(metrics["val/accuracy"])


@pytest.mark.parametrize("model", ["rgcn", "graphsage"])
def test_link_prediction_on_one_edge_type(make_cfg: Callable[..., DictConfig], tmp_path: Path, model: str) -> None:
    metrics = dispatch_cfg(make_cfg(*LINKS, *shop(tmp_path / "shop"), f"model={model}", "model.hidden_dim=16",
                                    "trainer.max_epochs=30", "optim.lr=0.02", "model.dropout=0.0"))
    assert {"val/auc", "val/mrr", "val/hits_at_20", "test/auc", "test/mrr"} <= set(metrics)
    # users buy the items of their own kind and hold the same kind's items: structure a GNN reads (chance is 0.5)
    assert metrics["test/auc"] > 0.7, metrics


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["task.target_edge=[item,bought,user]"], "task.target_edge"),
        (["task.drop_edges=[[user,bought,item]]"], "task.drop_edges"),
        (["+task.features.store.city.type=category"], "task.features.store"),
        (["+task.features.shop.town.type=category"], "task.features.shop.town"),
        (["model.num_bases=-1"], "model.num_bases"),
    ],
)
def test_config_errors_name_the_key(make_cfg: Callable[..., DictConfig], tmp_path: Path, overrides: list[str],
                                    key: str) -> None:
    from sagelab.tasks.hetero.task import HeteroLinkPredictionTask

    with pytest.raises(ConfigError) as caught:
        task = HeteroLinkPredictionTask(make_cfg(*LINKS, *shop(tmp_path / "shop"), "model=rgcn", *overrides))
        task.validate()
        task.prepared()
    assert caught.value.key == key, caught.value


def test_homogeneous_tasks_refuse_rgcn(make_cfg: Callable[..., DictConfig]) -> None:
    from sagelab.tasks.graph.task import LinkPredictionTask

    with pytest.raises(ConfigError, match="'rgcn' is a rgcn model; task link_prediction takes gnn models"):
        LinkPredictionTask(make_cfg("task=link_prediction", "model=rgcn")).validate()


@pytest.mark.slow  # a run.py subprocess (~25 s here under load); the message and line are checked in process above
def test_a_bad_label_is_one_line_from_run_py(run_cli: Callable[..., Any], tmp_path: Path) -> None:
    nodes, edges = shop_graph(tmp_path / "shop", extra_nodes="x1,user;admin,,,\n")
    done = run_cli(*NODES, *on(nodes, edges), "model=rgcn")
    assert "Traceback" not in done.stderr and done.returncode == 2, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("sagelab: bad config:")]
    assert errors == [f"sagelab: bad config: {nodes}: line 29: vertex ~label 'user;admin' is not one name "
                      "(letters, digits, _ and -; multi-label vertices are not supported)."], done.stderr[-3000:]


def test_typed_inputs_take_any_valid_label_and_featureless_types() -> None:
    """Labels that name ModuleDict methods (items, keys) are fine; a featureless type gets an id embedding, or with
    id_embedding=0 one vector shared by all its nodes."""
    from sagelab.tasks.hetero.nn import TypedInputs

    torch.manual_seed(0)
    x = {"items": torch.ones(3, 2), "keys": torch.zeros(4, 0)}
    for id_embedding in (5, 0):
        inputs = TypedInputs({"items": 2, "keys": 0}, {"items": 3, "keys": 4}, hidden=8, id_embedding=id_embedding)
        out = inputs(x)
        assert out.shape == (7, 8)
        assert torch.allclose(out[0], out[2])  # equal features, equal inputs
        assert torch.allclose(out[3], out[6]) == (id_embedding == 0)  # featureless: per-node ids, or one vector
