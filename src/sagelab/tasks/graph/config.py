"""What every graph task family shares before any data is read: the dataset keys of its ``task:`` block, the
``model:`` schema of the GNN encoders, and the dataset selection -- cheap (no torch, no DGL).

Link prediction (:mod:`.task`) and node classification (:mod:`sagelab.tasks.nodes`) both read graphs through
``task.dataset`` / ``task.datasets`` / ``task.features`` and encode them with ``model=gcn`` or
``model=graphsage``; this module is that common part, so neither family copies it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING, OmegaConf

from sagelab.checks import below_one, non_negative, one_of, positive
from sagelab.config import ConfigError
from sagelab.schema import TaskBlock, check_values, checked, typed
from sagelab.tasks.base import Task
from sagelab.tasks.graph import AGGREGATORS, ARCHS, SCORERS


@dataclass(kw_only=True)
class GraphDataConfig(TaskBlock):
    """The keys that pick and encode a graph: ``task.dataset`` names an entry of ``task.datasets``."""

    dataset: str = MISSING  # a key of datasets; checked with the dataset's own keys in check()
    datasets: dict[str, Any] = MISSING
    features: dict[str, Any] = field(default_factory=dict)
    separator: str = MISSING
    id_embedding: int = checked(MISSING, non_negative)


@dataclass(kw_only=True)
class GnnModelConfig:
    """``conf/model/{graphsage,gcn}.yaml``."""

    kind: str = MISSING
    name: str = MISSING
    arch: str = checked(MISSING, one_of(*ARCHS))
    hidden_dim: int = checked(MISSING, positive)
    num_layers: int = checked(MISSING, positive)
    dropout: float = checked(MISSING, below_one)
    aggregator: str = checked(MISSING, one_of(*AGGREGATORS))
    scorer: str = checked(MISSING, one_of(*SCORERS))
    bias: bool = True  # the layers' additive bias (node_classification: off, as in the GCN paper)


class GraphTask(Task):
    """A task on one graph read from ``task.datasets.<task.dataset>`` by a GNN of ``model.kind: gnn``."""

    model_kinds = ("gnn",)

    @property
    def dataset(self) -> dict[str, Any]:
        """The selected ``task.datasets`` entry with ``task.features`` merged over its features."""
        name = str(self.cfg.task.dataset)
        datasets = self.cfg.task.datasets
        if name not in datasets:
            raise ConfigError("task.dataset", f"is {name!r}; allowed values are {', '.join(datasets)}.")
        spec = OmegaConf.to_container(datasets[name], resolve=True)
        merged = dict(spec.get("features") or {})
        for prop, override in (OmegaConf.to_container(self.cfg.task.features, resolve=True) or {}).items():
            merged[prop] = {**(merged.get(prop) or {}), **(override or {})}
        spec["features"] = merged
        return spec

    def validate(self) -> None:
        if self.cfg.model.get("kind") == "gnn":  # another kind is refused by the base, naming the kinds it takes
            check_values(typed(self.cfg.model, GnnModelConfig, "model."), GnnModelConfig, "model.")
        super().validate()

    def check_graph(self) -> None:
        """The dataset entry's cheap checks (format, paths present), naming ``task.datasets.<name>...``."""
        from sagelab.tasks.graph.pipeline import check_dataset

        check_dataset(self.dataset, f"task.datasets.{self.cfg.task.dataset}")
