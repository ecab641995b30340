"""From a dataset description to tensors ready for training: read, encode, split, sample negatives.

A dataset description is a plain mapping (``task.datasets.<name>`` in the config)::

    {format: csv, nodes: path/nodes.csv, edges: path/edges.csv, name_property: name,
     convert_from: null, features: {interests: {type: category}}}
    {format: planetoid, path: data/graph/cora, name: cora, features: {words: {type: numerical, norm: row}}}

``convert_from`` (csv only) names a Twitch/MUSAE folder that is converted to ``nodes``/``edges`` on
first use, so Twitch reaches the model through the same property-graph CSV path as any export.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from sagelab.config import ConfigError
from sagelab.tasks.graph.features import FeatureEncoder, resolve_specs
from sagelab.tasks.graph.property_graph import PropertyGraph, read_gremlin_csv
from sagelab.tasks.graph.split import EdgeSplit, sample_eval_negatives, split_edges

FORMATS = ("csv", "planetoid")


def check_dataset(spec: Mapping[str, Any], key: str) -> None:
    """Cheap checks (no reads): known format, required paths set and present."""
    fmt = spec.get("format")
    if fmt not in FORMATS:
        raise ConfigError(f"{key}.format", f"is {fmt!r}; allowed values are {', '.join(FORMATS)}.")
    if fmt == "planetoid":
        if not spec.get("path") or not Path(str(spec["path"])).is_dir():
            raise ConfigError(f"{key}.path", f"the Planetoid folder '{spec.get('path')}' does not exist.")
        return
    source = spec.get("convert_from")
    for part in ("nodes", "edges"):
        value = spec.get(part)
        if not value:
            raise ConfigError(f"{key}.{part}", "is required for format csv (a Gremlin-format CSV file).")
        if not source and not Path(str(value)).exists():
            raise ConfigError(f"{key}.{part}", f"the file '{value}' does not exist.")
    if source and not Path(str(source)).is_dir():
        raise ConfigError(f"{key}.convert_from", f"the folder '{source}' does not exist.")


def load_graph(spec: Mapping[str, Any], separator: str = ";", labels: bool = False) -> PropertyGraph:
    """Read the graph a dataset description names (converting Twitch to CSV first if asked); ``labels``: a
    Planetoid set's class labels and standard split too (node classification)."""
    if spec["format"] == "planetoid":
        from sagelab.tasks.graph.datasets import read_planetoid

        return read_planetoid(spec["path"], spec.get("name") or "cora", labels=labels)
    nodes, edges = Path(str(spec["nodes"])), Path(str(spec["edges"]))
    if spec.get("convert_from") and not (nodes.exists() and edges.exists()):
        from sagelab.tasks.graph.datasets import convert_twitch

        if nodes.parent != edges.parent:
            raise ConfigError("task.datasets", "convert_from needs nodes and edges in the same folder.")
        convert_twitch(spec["convert_from"], nodes.parent, separator=separator)
    return read_gremlin_csv(nodes, edges, separator=separator)


@dataclass
class PreparedGraph:
    """Everything training and evaluation read: features, split, fixed evaluation negatives."""

    graph: PropertyGraph
    encoder: FeatureEncoder
    x: Any  # torch.Tensor (num_nodes, dim)
    split: EdgeSplit
    names: list[str]
    val_negatives: np.ndarray
    test_negatives: np.ndarray
    _graphs: dict[tuple[str, bool], Any] = field(default_factory=dict, repr=False)

    @property
    def num_nodes(self) -> int:
        return self.graph.num_nodes

    def all_edges(self) -> np.ndarray:
        return np.stack([self.graph.src, self.graph.dst], axis=1)

    def dgl_graph(self, which: str, self_loops: bool) -> Any:
        """``which="train"``: the message-passing graph of training edges; ``"all"``: every known edge."""
        key = (which, self_loops)
        if key not in self._graphs:
            from sagelab.tasks.graph.training import message_passing_graph

            edges = self.split.train if which == "train" else self.all_edges()
            self._graphs[key] = message_passing_graph(edges, self.num_nodes, self_loops)
        return self._graphs[key]

    def describe(self) -> dict[str, Any]:
        return {
            "nodes": self.num_nodes,
            "edges": self.graph.num_edges,
            "feature_dim": int(self.x.shape[1]),
            **{f"{k}_edges": v for k, v in self.split.sizes().items()},
            "features": [f"{p}:{t}:{d}" for p, t, d in self.encoder.dims() if t != "none"],
        }


def prepare(
    graph: PropertyGraph,
    features: Mapping[str, Any] | None,
    name_property: str | None,
    val: float,
    test: float,
    eval_negs: int,
    seed: int,
    *,
    encoder: FeatureEncoder | None = None,
    split: EdgeSplit | None = None,
) -> PreparedGraph:
    """Fit the feature encoding, split the edges with ``seed`` and draw the evaluation negatives.

    A warm-started retraining passes the earlier run's fitted ``encoder`` (its weights expect that layout) and a
    ``split`` that keeps the earlier held-out edges held out."""
    import torch

    if encoder is None:
        encoder = FeatureEncoder.fit(graph, resolve_specs(graph, features, name_property))
    x = torch.from_numpy(encoder.transform(graph))
    if split is None:
        split = split_edges(graph.src, graph.dst, graph.num_nodes, val, test, seed)
    everything = np.stack([graph.src, graph.dst], axis=1)
    negatives = [
        sample_eval_negatives(part, everything, graph.num_nodes, eval_negs, seed + offset)
        if len(part)
        else np.zeros((0, eval_negs), np.int64)
        for offset, part in ((1, split.val), (2, split.test))
    ]
    return PreparedGraph(
        graph=graph,
        encoder=encoder,
        x=x,
        split=split,
        names=graph.display_names(name_property),
        val_negatives=negatives[0],
        test_negatives=negatives[1],
    )
