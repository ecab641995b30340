"""A trained link predictor as inference needs it: the network and its graph state, without Lightning.

``mode=transform`` and ``mode=recommend`` only embed and rank; importing Lightning (and the torchmetrics and
transformers it pulls in) would be most of such a command's time. :class:`TrainedGraph` holds the same
``model`` and ``extra_state`` as :class:`~sagelab.tasks.graph.module.LinkPredictionModule`, so the training
checkpoint's ``state_dict`` loads into it as it is. :class:`GraphState` is the part both share: the fitted
feature encoding, node ids and names, kept as plain data so the checkpoint loads with ``weights_only=True``.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

import numpy as np
import torch

from sagelab.tasks.graph.features import FeatureEncoder
from sagelab.tasks.graph.nn import LinkPredictor


def build_predictor(in_dim: int, num_nodes: int, *, arch: str, hidden_dim: int, num_layers: int, dropout: float,
                    aggregator: str, scorer: str, id_embedding: int = 0, bias: bool = True) -> LinkPredictor:
    """The network of the module's shape arguments (the names the task config and the module use)."""
    return LinkPredictor(in_dim, num_nodes, arch=arch, hidden=hidden_dim, layers=num_layers, dropout=dropout,
                         aggregator=aggregator, scorer=scorer, id_embedding=id_embedding, bias=bias)


class PlainState:
    """A graph module's ``extra_state``: what its outputs mean, as plain data (every graph family uses it)."""

    graph_state: dict[str, Any]

    def get_extra_state(self) -> dict[str, Any]:
        return self.graph_state

    def set_extra_state(self, state: Any) -> None:
        self.graph_state = dict(state or {})


class GraphState(PlainState):
    """What recommend/transform need besides the weights, saved as the module's ``extra_state``."""

    def set_graph_state(self, features: dict[str, Any], node_ids: Sequence[str], names: Sequence[str]) -> None:
        self.graph_state = plain({"features": features, "node_ids": list(node_ids), "names": list(names)})

    @property
    def node_ids(self) -> list[str]:
        return self.graph_state["node_ids"]

    def feature_encoder(self) -> FeatureEncoder:
        return FeatureEncoder.from_state(self.graph_state["features"])


class TrainedGraph(GraphState, torch.nn.Module):
    """``model`` + graph state, loaded from a link-prediction checkpoint's ``state_dict``; eval mode."""

    def __init__(self, in_dim: int, num_nodes: int, **shape: Any) -> None:
        super().__init__()
        self.model = build_predictor(in_dim, num_nodes, **shape)
        self.graph_state = {}
        self.eval()


def plain(value: Any) -> Any:
    """``value`` as JSON-able plain data (numpy arrays and scalars become lists and numbers), so that a
    checkpoint holding it unpickles with ``weights_only=True``; anything else is refused here, not at load."""

    def convert(item: Any) -> Any:
        if isinstance(item, (np.ndarray, np.generic)):
            return item.tolist()
        raise TypeError(f"{type(item).__name__} is not plain data; the checkpoint could not be loaded safely")

    return json.loads(json.dumps(value, default=convert))
