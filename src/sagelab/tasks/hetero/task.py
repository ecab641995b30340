"""GNNs on heterogeneous property graphs: link prediction on one edge type, classification of one node type.

A Gremlin CSV export whose vertices and edges carry several ``~label`` values is read as a typed graph
(:func:`~sagelab.tasks.graph.hetero_graph.read_hetero_csv`) and trained by ``model=rgcn`` (R-GCN on DGL's
``RelGraphConv``, basis decomposition) or, as the type-blind baseline on the very same inputs and split, by
``model=graphsage`` / ``model=gcn``:

    python run.py task=hetero_link_prediction model=rgcn task.target_edge=[user,rated,movie]
    python run.py task=hetero_node_classification model=rgcn task.target_node_type=movie task.target=genre

* ``task=hetero_link_prediction``: ``task.target_edge`` (``[head type, relation, tail type]``, or a relation name
  that is unique) is split into train / val / test edges; validation logs ``val/auc``, ``val/mrr``,
  ``val/hits_at_K`` of that edge type, the runner scores ``test/*`` once after training.
* ``task=hetero_node_classification``: ``task.target`` is a property of the nodes of ``task.target_node_type``;
  ``val/accuracy``, ``val/macro_f1``, ``val/loss``, then ``test/*``.
* ``task.features.<node type>.<property>``: the graph family's property encodings, per node type;
  ``task.drop_edges``: edge types kept out of the message-passing graph (leakage: a movie's genre edges when its
  genre is the target).

This module is cheap: no torch or DGL until a hook runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from omegaconf import MISSING, DictConfig, OmegaConf

from sagelab.checks import below_one, each, fraction, non_negative, one_of, positive
from sagelab.config import ConfigError
from sagelab.schema import check_values, checked, typed
from sagelab.tasks.graph import SCORERS
from sagelab.tasks.graph.config import GraphDataConfig, GraphTask
from sagelab.tasks.graph.task import SplitConfig

if TYPE_CHECKING:
    from sagelab.context import TaskContext
    from sagelab.tasks.hetero.module import HeteroLinkModule, HeteroNodeModule
    from sagelab.tasks.hetero.prepare import HeteroPrepared
    from sagelab.tasks.nodes.data import NodeDataModule


@dataclass(kw_only=True)
class RgcnModelConfig:
    """``conf/model/rgcn.yaml``."""

    kind: str = MISSING
    name: str = MISSING
    arch: str = checked(MISSING, one_of("rgcn"))
    hidden_dim: int = checked(MISSING, positive)
    num_layers: int = checked(MISSING, positive)
    dropout: float = checked(MISSING, below_one)
    num_bases: int = checked(MISSING, non_negative)  # 0 (or >= the relation count): one weight per relation
    scorer: str = checked(MISSING, one_of(*SCORERS))
    bias: bool = True


@dataclass(kw_only=True)
class HeteroDataConfig(GraphDataConfig):
    """The graph keys of both heterogeneous tasks; ``features`` is per node type, then per property."""

    drop_edges: list[list[str]] = field(default_factory=list)  # edge types left out of message passing


@dataclass(kw_only=True)
class HeteroLinkConfig(HeteroDataConfig):
    target_edge: list[str] = MISSING  # [head type, relation, tail type], or [relation] when it is unique
    split: SplitConfig = field(default_factory=SplitConfig)
    neg_ratio: int = checked(MISSING, positive)
    eval_negs: int = checked(MISSING, positive)
    hits_at: list[int] = checked(MISSING, each(positive))


@dataclass(kw_only=True)
class RandomSplitConfig:
    val: float = checked(MISSING, fraction)  # fractions of the target type's labelled nodes
    test: float = checked(MISSING, fraction)
    seed: int = MISSING


@dataclass(kw_only=True)
class HeteroNodeConfig(HeteroDataConfig):
    target_node_type: str = MISSING
    target: str = MISSING  # a single-valued property of that node type: the class
    split: RandomSplitConfig = field(default_factory=RandomSplitConfig)


class HeteroTask(GraphTask):
    """What both heterogeneous tasks share: the model kinds, the typed dataset, the graph, the modules' shape."""

    model_kinds = ("rgcn", "gnn")
    lightning_modes = ("train", "evaluate")
    supports_multiprocess = False  # one full-graph step per epoch

    def __init__(self, cfg: DictConfig) -> None:
        super().__init__(cfg)
        self._prepared: HeteroPrepared | None = None

    @property
    def dataset(self) -> dict[str, Any]:
        """The selected ``task.datasets`` entry, ``task.features`` merged over its features per type and property."""
        from sagelab.tasks.hetero.prepare import merge_features

        name, datasets = str(self.cfg.task.dataset), self.cfg.task.datasets
        if name not in datasets:
            raise ConfigError("task.dataset", f"is {name!r}; allowed values are {', '.join(datasets)}.")
        spec = OmegaConf.to_container(datasets[name], resolve=True)
        spec["features"] = merge_features(spec.get("features"), OmegaConf.to_container(self.cfg.task.features,
                                                                                        resolve=True))
        return spec

    def validate(self) -> None:
        if self.cfg.model.get("kind") == "rgcn":
            check_values(typed(self.cfg.model, RgcnModelConfig, "model."), RgcnModelConfig, "model.")
        super().validate()

    def check(self) -> None:
        self.check_graph()
        if self.dataset.get("format") != "csv":
            raise ConfigError(f"task.datasets.{self.cfg.task.dataset}.format", "a heterogeneous graph is read from a "
                              "Gremlin CSV export (format: csv); a Planetoid set has one node type.")

    def graph(self) -> Any:
        from sagelab.tasks.graph.hetero_graph import read_hetero_csv

        spec = self.dataset
        return read_hetero_csv(spec["nodes"], spec["edges"], separator=str(self.cfg.task.separator))

    def shape(self) -> dict[str, Any]:
        """The constructor arguments both modules take from the prepared graph and the config."""
        from sagelab.tasks.hetero.prepare import relation_name

        data, model, optim = self.prepared(), self.cfg.model, self.cfg.optim
        return dict(
            dims={t: int(data.x[t].shape[1]) for t in data.ntypes},
            counts={t: data.graph.num_nodes(t) for t in data.ntypes},
            relations=[relation_name(e) for e in data.relations()],
            arch=str(model.arch), hidden_dim=int(model.hidden_dim), num_layers=int(model.num_layers),
            dropout=float(model.dropout), num_bases=int(model.get("num_bases", 0)),
            aggregator=str(model.get("aggregator", "mean")), id_embedding=int(self.cfg.task.id_embedding or 0),
            lr=float(optim.lr), weight_decay=float(optim.weight_decay), bias=bool(model.get("bias", True)),
        )

    def state(self) -> dict[str, Any]:
        data = self.prepared()
        return {"node_types": data.ntypes, "relations": [list(e) for e in data.relations()],
                "node_ids": {t: data.graph.nodes[t].node_ids for t in data.ntypes}}

    def prepared(self) -> HeteroPrepared:
        raise NotImplementedError

    def datamodule(self) -> NodeDataModule:
        from sagelab.tasks.nodes.data import NodeDataModule

        return NodeDataModule(self.prepared())  # type: ignore[arg-type]  # the whole graph, wrapped: any data

    def on_evaluated(self, context: TaskContext, module: Any, metrics: dict[str, float]) -> None:
        context.tracker.log_dict(self.prepared().describe(), "graph.json")


class HeteroLinkPredictionTask(HeteroTask):
    config_class = HeteroLinkConfig

    def prepared(self) -> HeteroPrepared:
        """Read, encode and split the configured graph once per process."""
        if self._prepared is None:
            from sagelab.tasks.hetero.prepare import prepare_links

            spec, task = self.dataset, self.cfg.task
            self._prepared = prepare_links(
                self.graph(), spec["features"], spec.get("name_property"), list(task.target_edge),
                [list(e) for e in task.drop_edges], float(task.split.val), float(task.split.test),
                int(task.eval_negs), int(task.split.seed))
        return self._prepared

    def module(self) -> HeteroLinkModule:
        from sagelab.tasks.hetero.module import HeteroLinkModule

        data, task = self.prepared(), self.cfg.task
        assert data.target_edge is not None
        head, _, tail = data.target_edge
        module = HeteroLinkModule(
            offsets=(data.offset(head), data.offset(tail)), scorer=str(self.cfg.model.scorer),
            neg_ratio=int(task.neg_ratio), hits_at=[int(k) for k in task.hits_at], **self.shape())
        module.set_graph_state({**self.state(), "target_edge": list(data.target_edge)})
        return module


class HeteroNodeClassificationTask(HeteroTask):
    config_class = HeteroNodeConfig

    def check(self) -> None:
        super().check()
        split = self.cfg.task.split
        if float(split.val) + float(split.test) >= 1:
            raise ConfigError("task.split", f"val {split.val} + test {split.test} leave no training nodes; keep "
                              "their sum below 1.")

    def prepared(self) -> HeteroPrepared:
        """Read, encode and split the configured graph once per process."""
        if self._prepared is None:
            from sagelab.tasks.hetero.prepare import prepare_nodes

            spec, task = self.dataset, self.cfg.task
            self._prepared = prepare_nodes(
                self.graph(), spec["features"], spec.get("name_property"), str(task.target_node_type),
                str(task.target), [list(e) for e in task.drop_edges], float(task.split.val), float(task.split.test),
                int(task.split.seed))
        return self._prepared

    def module(self) -> HeteroNodeModule:
        from sagelab.tasks.hetero.module import HeteroNodeModule

        data = self.prepared()
        assert data.target_node_type is not None
        module = HeteroNodeModule(offset=data.offset(data.target_node_type), num_classes=len(data.classes),
                                  **self.shape())
        module.set_graph_state({**self.state(), "target_node_type": data.target_node_type,
                                "classes": list(data.classes)})
        return module

    def on_evaluated(self, context: TaskContext, module: Any, metrics: dict[str, float]) -> None:
        super().on_evaluated(context, module, metrics)
        data = self.prepared()
        assert data.target_node_type is not None
        split_of = {int(n): name for name, index in data.masks.items() for n in index.tolist()}
        ids = data.graph.nodes[data.target_node_type].node_ids
        rows = [{"node": node, "predicted": p, "target": data.classes[t] if t >= 0 else None, "split": split_of.get(i)}
                for i, (node, p, t) in enumerate(zip(ids, module.predictions(data), data.y.tolist()))]
        context.tracker.log_dict(rows, f"{self.name}/predictions.json")
