"""From a dataset description to what a node task trains on: features, a target per node, node masks.

* **Target**: any single-valued node property (``task.target``); for classification its distinct values,
  sorted, are the classes, for regression it must be numeric (trained standardised by the training nodes' mean
  and standard deviation, reported in its own units). A node without a value is unlabelled (in no mask). A
  Planetoid set's ``label`` is its one-hot class (:func:`~sagelab.tasks.graph.datasets.read_planetoid` with
  ``labels=True``). The target is never encoded as a feature: that would hand the model the answer.
* **Split**: ``planetoid`` -- the release's standard split (train = the first ``len(y)`` nodes, 140 on Cora;
  validation the next 500; test the 1,000 test indices, as in Kipf & Welling 2017); ``random`` -- labelled
  nodes shuffled with a seed into validation and test fractions, the rest trains.
* **Graph**: every edge in both directions (+ a self-loop per node for GCN); in the transductive setting the
  model aggregates over the whole graph and only the targets are held out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from sagelab.config import ConfigError
from sagelab.tasks.graph.features import FeatureEncoder, resolve_specs
from sagelab.tasks.graph.property_graph import PropertyGraph


@dataclass
class PreparedNodes:
    """Everything training and evaluation read: features, class targets, node masks."""

    graph: PropertyGraph
    encoder: FeatureEncoder
    x: Any  # torch.Tensor (num_nodes, dim) float32
    y: Any  # torch.Tensor (num_nodes,): int64 class (-1 = unlabelled), or float32 value (NaN = unlabelled)
    classes: list[Any]  # empty for regression
    masks: dict[str, Any]  # "train" / "val" / "test" -> torch.Tensor of node indices
    scale: tuple[float, float] = (0.0, 1.0)  # regression: the training targets' mean and standard deviation
    _graphs: dict[bool, Any] = field(default_factory=dict, repr=False)

    @property
    def num_nodes(self) -> int:
        return self.graph.num_nodes

    def dgl_graph(self, self_loops: bool) -> Any:
        """The message-passing graph: every edge both ways (+ self-loops for GCN), built once."""
        if self_loops not in self._graphs:
            from sagelab.tasks.graph.training import message_passing_graph

            edges = np.stack([self.graph.src, self.graph.dst], axis=1)
            self._graphs[self_loops] = message_passing_graph(edges, self.num_nodes, self_loops)
        return self._graphs[self_loops]

    def describe(self) -> dict[str, Any]:
        return {
            "nodes": self.num_nodes,
            "edges": self.graph.num_edges,
            "feature_dim": int(self.x.shape[1]),
            "classes": [str(c) for c in self.classes],
            "target_mean_std": list(self.scale) if not self.classes else None,
            **{f"{name}_nodes": int(len(index)) for name, index in self.masks.items()},
            "featureless_nodes": int(self.graph.meta.get("featureless_nodes", 0)),
            "features": [f"{p}:{t}:{d}" for p, t, d in self.encoder.dims() if t != "none"],
        }


def class_targets(graph: PropertyGraph, target: str) -> tuple[np.ndarray, list[Any]]:
    """Class index per node (-1 where the target is missing) and the sorted class values."""
    values = list(_target_property(graph, target).values)
    classes = sorted({v for v in values if v is not None})
    if len(classes) < 2:
        raise ConfigError("task.target", f"{target!r} has {len(classes)} distinct value(s); classification "
                          "needs at least 2.")
    index = {c: i for i, c in enumerate(classes)}
    return np.array([-1 if v is None else index[v] for v in values], dtype=np.int64), classes


def _target_property(graph: PropertyGraph, target: str) -> Any:
    if target not in graph.properties:
        raise ConfigError("task.target", f"the graph ({graph.source}) has no property {target!r}; its properties "
                          f"are {', '.join(graph.properties) or 'none'}.")
    prop = graph.properties[target]
    if prop.multi or prop.kind == "vector":
        raise ConfigError("task.target", f"{target!r} is {prop.type_string}; a target is one value per node.")
    return prop


def numeric_targets(graph: PropertyGraph, target: str) -> np.ndarray:
    """The target's value per node as float32, NaN where it is missing."""
    prop = _target_property(graph, target)
    if prop.kind not in ("int", "float"):
        raise ConfigError("task.target", f"{target!r} is {prop.type_string}; regression needs an Int or Double "
                          "property.")
    return np.array([np.nan if v is None else float(v) for v in prop.values], dtype=np.float32)


def node_split(graph: PropertyGraph, labelled_mask: np.ndarray, kind: str, val: float, test: float,
               seed: int) -> dict[str, np.ndarray]:
    """Train / val / test node indices, labelled nodes only (see the module docstring)."""
    if kind == "planetoid":
        standard = graph.meta.get("planetoid_split")
        if standard is None:
            raise ConfigError("task.split.kind", f"planetoid is the split of a Planetoid data set; the graph "
                              f"({graph.source}) has none: use task.split.kind=random.")
        parts = {name: np.asarray(index, dtype=np.int64) for name, index in standard.items()}
        parts = {name: index[labelled_mask[index]] for name, index in parts.items()}
    else:
        labelled = np.flatnonzero(labelled_mask)
        order = np.random.default_rng(seed).permutation(labelled)
        n_val, n_test = round(val * len(order)), round(test * len(order))
        parts = {"val": np.sort(order[:n_val]), "test": np.sort(order[n_val:n_val + n_test]),
                 "train": np.sort(order[n_val + n_test:])}
    if len(parts["train"]) == 0:
        raise ConfigError("task.split", f"leaves no labelled training node ({int(labelled_mask.sum())} labelled).")
    return parts


def prepare_nodes(graph: PropertyGraph, features: Mapping[str, Any] | None, name_property: str | None,
                  target: str, split: str, val: float, test: float, seed: int,
                  objective: str = "classification") -> PreparedNodes:
    """Targets, split, then the feature encoding with the target left out."""
    import torch

    if objective == "regression":
        y, classes = numeric_targets(graph, target), []
        labelled = ~np.isnan(y)
    else:
        y, classes = class_targets(graph, target)
        labelled = y >= 0
    given = dict(features or {})
    if (given.get(target) or {}).get("type", "none") != "none":
        raise ConfigError(f"task.features.{target}", f"{target!r} is the target (task.target); encoding it as a "
                          "feature would give the answer away: leave it out or set type: none.")
    given[target] = {"type": "none"}
    encoder = FeatureEncoder.fit(graph, resolve_specs(graph, given, name_property))
    masks = node_split(graph, labelled, split, val, test, seed)
    scale = (0.0, 1.0)
    if objective == "regression":
        train = y[masks["train"]].astype(np.float64)
        scale = (float(train.mean()), float(train.std()) or 1.0)
    return PreparedNodes(
        graph=graph, encoder=encoder, x=torch.from_numpy(encoder.transform(graph)), y=torch.from_numpy(y),
        classes=classes, masks={name: torch.from_numpy(index) for name, index in masks.items()}, scale=scale,
    )
