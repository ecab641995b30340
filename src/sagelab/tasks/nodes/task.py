"""Node classification (and regression) with a GNN: every node of one graph gets a class, or a number, from its
features and neighbours.

The GCN paper's benchmark is the default: Cora's Planetoid files, its standard split (20 labelled nodes per
class train, 500 validate, 1,000 test), a 2-layer GCN with 16 hidden units, dropout 0.5, Adam at 0.01 with
weight decay 5e-4, 200 epochs on row-normalised bag-of-words features (Kipf & Welling 2017). Any
``task.datasets`` entry of the graph family works: a Planetoid set (its labels), or a Gremlin CSV export
whose property ``task.target`` holds the class, split at random (``task.split.kind=random``).

``task.objective=regression`` (``conf/task/node_regression.yaml``) predicts a numeric property instead, e.g.
a person's age in the example friendship graph.

* ``mode=train`` / ``evaluate`` go through the shared runner: validation logs ``val/accuracy``,
  ``val/macro_f1``, ``val/loss`` (regression: ``val/mae``, ``val/rmse``, ``val/r2``) each epoch; after
  training the runner scores the test nodes once (``test/*``); :meth:`on_evaluated` logs the graph's
  description and every node's prediction.

This module is cheap: no torch or DGL until a hook runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from omegaconf import MISSING, DictConfig

from sagelab.checks import fraction, one_of
from sagelab.config import ConfigError
from sagelab.schema import checked
from sagelab.tasks.graph.config import GraphDataConfig, GraphTask
from sagelab.tasks.nodes import DECAY, OBJECTIVES, SPLITS

if TYPE_CHECKING:
    from sagelab.context import TaskContext
    from sagelab.tasks.nodes.data import NodeDataModule
    from sagelab.tasks.nodes.module import NodeClassificationModule
    from sagelab.tasks.nodes.prepare import PreparedNodes


@dataclass(kw_only=True)
class NodeSplitConfig:
    kind: str = checked(MISSING, one_of(*SPLITS))  # planetoid: the release's split | random: the fractions below
    val: float = checked(MISSING, fraction)  # fractions of labelled nodes (kind=random)
    test: float = checked(MISSING, fraction)
    seed: int = MISSING


@dataclass(kw_only=True)
class NodeClassificationConfig(GraphDataConfig):
    objective: str = checked(MISSING, one_of(*OBJECTIVES))
    target: str = MISSING  # the node property holding the class (or, for regression, the number)
    split: NodeSplitConfig = field(default_factory=NodeSplitConfig)
    decay: str = checked(MISSING, one_of(*DECAY))  # optim.weight_decay on the first layer only, or on all


class NodeClassificationTask(GraphTask):
    config_class = NodeClassificationConfig
    lightning_modes = ("train", "evaluate")
    supports_multiprocess = False  # one full-graph step per epoch: nothing to spread over processes

    def __init__(self, cfg: DictConfig) -> None:
        super().__init__(cfg)
        self._prepared: PreparedNodes | None = None

    def check(self) -> None:
        task = self.cfg.task
        self.check_graph()
        if task.split.kind == "random" and float(task.split.val) + float(task.split.test) >= 1:
            raise ConfigError("task.split", f"val {task.split.val} + test {task.split.test} leave no training "
                              "nodes; keep their sum below 1.")
        if task.split.kind == "planetoid" and self.dataset.get("format") != "planetoid":
            raise ConfigError("task.split.kind", f"planetoid is the split of a Planetoid data set; "
                              f"task.dataset={task.dataset} is {self.dataset.get('format')}: use random.")

    # -- data and model: the config mapped to constructor arguments, here only --------------------
    def prepared(self) -> PreparedNodes:
        """Read, encode and split the configured graph once per process."""
        if self._prepared is None:
            from sagelab.tasks.graph.pipeline import load_graph
            from sagelab.tasks.nodes.prepare import prepare_nodes

            spec, task = self.dataset, self.cfg.task
            graph = load_graph(spec, separator=str(task.separator), labels=True)
            self._prepared = prepare_nodes(
                graph, spec["features"], spec.get("name_property"), str(task.target), str(task.split.kind),
                float(task.split.val), float(task.split.test), int(task.split.seed), str(task.objective),
            )
        return self._prepared

    def datamodule(self) -> NodeDataModule:
        from sagelab.tasks.nodes.data import NodeDataModule

        return NodeDataModule(self.prepared())

    def module(self) -> NodeClassificationModule:
        from sagelab.tasks.nodes.module import NodeClassificationModule

        data, model, task, optim = self.prepared(), self.cfg.model, self.cfg.task, self.cfg.optim
        module = NodeClassificationModule(
            int(data.x.shape[1]), data.num_nodes, len(data.classes), arch=str(model.arch),
            hidden_dim=int(model.hidden_dim), num_layers=int(model.num_layers), dropout=float(model.dropout),
            aggregator=str(model.aggregator), id_embedding=int(task.id_embedding or 0), lr=float(optim.lr),
            weight_decay=float(optim.weight_decay), decay=str(task.decay), objective=str(task.objective),
            scale=data.scale, bias=bool(model.get("bias", True)),
        )
        module.set_graph_state(data.classes, data.graph.node_ids)
        return module

    # -- after evaluation: what the graph was and what the model says of every node ----------
    def on_evaluated(self, context: TaskContext, module: Any, metrics: dict[str, float]) -> None:
        import math

        data = self.prepared()
        split_of = {int(n): name for name, index in data.masks.items() for n in index.tolist()}
        targets = [None if (t < 0 if data.classes else math.isnan(t)) else (data.classes[int(t)] if data.classes else t)
                   for t in data.y.tolist()]
        rows = [{"node": node, "predicted": p, "target": t, "split": split_of.get(i)}
                for i, (node, p, t) in enumerate(zip(data.graph.node_ids, module.predictions(data), targets))]
        context.tracker.log_dict(data.describe(), "graph.json")
        context.tracker.log_dict(rows, f"{self.name}/predictions.json")
