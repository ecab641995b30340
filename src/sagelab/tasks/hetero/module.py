"""LightningModules of the heterogeneous family: link prediction on one edge type, classification of one node type.

Built from explicit arguments (no config object); the whole graph is the batch of every split (the node
family's :class:`~sagelab.tasks.nodes.data.NodeDataModule`, which only wraps the prepared data):

* :class:`HeteroLinkModule` -- encode every node over the training graph, binary cross-entropy of the target type's
  training edges against ``neg_ratio`` negatives each (same head, a uniform tail of the tail type); validation and
  test rank each held-out edge against its fixed negatives (``<split>/auc``, ``mrr``, ``hits_at_K``: the graph
  family's :func:`~sagelab.tasks.graph.metrics.link_metrics`, so the figures mean what they mean there);
* :class:`HeteroNodeModule` -- the node family's steps (:class:`~sagelab.tasks.nodes.module.NodeSteps`) on the
  target type: cross-entropy on its training nodes; ``<split>/loss``, ``accuracy`` and ``macro_f1`` from
  torchmetrics.

What the outputs mean (node types, relations, target, classes) is plain ``extra_state``, so checkpoints load with
``torch.load(weights_only=True)``. Message passing runs in fp32 under any autocast (DGL's sparse kernels have no
CPU bf16 path).
"""

from __future__ import annotations

from typing import Any, Sequence

import lightning as L
import numpy as np
import torch

from sagelab.tasks.graph.data import Payload
from sagelab.tasks.graph.metrics import link_metrics
from sagelab.tasks.graph.trained import PlainState, plain
from sagelab.tasks.graph.training import bce_loss, evaluating
from sagelab.tasks.hetero.nn import HeteroEncoder, HeteroLinkPredictor
from sagelab.tasks.hetero.prepare import HeteroPrepared
from sagelab.tasks.nodes.module import NodeSteps


class _HeteroModule(PlainState, L.LightningModule):
    """What both modules share: the encoder over the prepared graph, plain extra_state, Adam."""

    model: HeteroEncoder

    def __init__(self, lr: float, weight_decay: float) -> None:
        super().__init__()
        self.lr, self.weight_decay = lr, weight_decay
        self.graph_state: dict[str, Any] = {}

    def set_graph_state(self, state: dict[str, Any]) -> None:
        self.graph_state = plain(state)

    def encode(self, data: HeteroPrepared) -> torch.Tensor:
        """Every node's vector (flattened order) over the message-passing graph."""
        graph, x = data.dgl_graph(self.model.graph_flavour), data.x
        if self.device.type != "cpu":  # accelerators only; CPU runs use the shared tensors as they are
            graph, x = graph.to(self.device), {t: v.to(self.device) for t, v in x.items()}
        with torch.autocast(device_type=self.device.type, enabled=False):
            return self.model(graph, x)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)


class HeteroLinkModule(_HeteroModule):
    """Link prediction on the target edge type of a heterogeneous graph."""

    def __init__(self, dims: dict[str, int], counts: dict[str, int], relations: Sequence[str],
                 offsets: Sequence[int], *,
                 arch: str, hidden_dim: int, num_layers: int, dropout: float, scorer: str = "dot", num_bases: int = 0,
                 aggregator: str = "mean", id_embedding: int = 0, neg_ratio: int = 1, hits_at: Sequence[int] = (20,),
                 lr: float = 0.01, weight_decay: float = 0.0, bias: bool = True) -> None:
        """``dims`` / ``counts``: feature width and node count per type, in the flattened graph's order;
        ``offsets``: where the target edge type's head and tail types start in it."""
        super().__init__(lr, weight_decay)
        self.model = HeteroLinkPredictor(dims, counts, relations, scorer=scorer, arch=arch, hidden=hidden_dim,
                                         layers=num_layers, dropout=dropout, num_bases=num_bases,
                                         aggregator=aggregator, id_embedding=id_embedding, bias=bias)
        self.offsets = (int(offsets[0]), int(offsets[1]))
        self.neg_ratio, self.hits_at = neg_ratio, [int(k) for k in hits_at]

    def _pairs(self, edges: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        pairs = torch.as_tensor(edges, device=self.device)
        return pairs[:, 0], pairs[:, 1]

    def training_step(self, batch: Payload, batch_idx: int) -> torch.Tensor:
        data: HeteroPrepared = batch.value
        assert data.split is not None and data.target_edge is not None
        heads, tails = self._pairs(data.split.train)
        num_tails = data.graph.num_nodes(data.target_edge[2])
        h = self.encode(data)
        neg_heads = heads.repeat_interleave(self.neg_ratio)
        neg_tails = torch.randint(0, num_tails, (neg_heads.shape[0],), device=self.device)
        with torch.autocast(device_type=self.device.type, enabled=False):
            loss = bce_loss(self.model.score(h, heads, tails, self.offsets),
                            self.model.score(h, neg_heads, neg_tails, self.offsets))
        self.log("train/loss", loss, prog_bar=True, batch_size=len(heads))
        return loss

    def _evaluate(self, data: HeteroPrepared, split: str) -> None:
        assert data.split is not None
        positives = getattr(data.split, split)
        if len(positives) == 0:
            return
        with evaluating(self.model):
            h = self.encode(data)
            heads, tails = self._pairs(positives)
            negatives = torch.as_tensor(data.negatives[split], device=self.device)
            k = negatives.shape[1]
            pos = self.model.score(h, heads, tails, self.offsets)
            neg = self.model.score(h, heads.repeat_interleave(k), negatives.reshape(-1), self.offsets).reshape(-1, k)
        metrics = link_metrics(pos, neg, self.hits_at)
        self.log_dict({f"{split}/{k}": v for k, v in metrics.items()}, prog_bar=split == "val", batch_size=1)

    def validation_step(self, batch: Payload, batch_idx: int) -> None:
        self._evaluate(batch.value, "val")

    def test_step(self, batch: Payload, batch_idx: int) -> None:
        self._evaluate(batch.value, "test")

    def predict_step(self, batch: Payload, batch_idx: int = 0) -> dict[str, torch.Tensor]:
        """Every node's embedding and the logits of the validation edges; needs no trainer."""
        data: HeteroPrepared = batch.value
        assert data.split is not None
        with evaluating(self.model):
            h = self.encode(data)
            heads, tails = self._pairs(data.split.val)
            return {"embeddings": h, "scores": self.model.score(h, heads, tails, self.offsets)}


class HeteroNodeModule(NodeSteps, _HeteroModule):
    """Classification of the nodes of one type of a heterogeneous graph."""

    def __init__(self, dims: dict[str, int], counts: dict[str, int], relations: Sequence[str], offset: int,
                 num_classes: int, *,
                 arch: str, hidden_dim: int, num_layers: int, dropout: float, num_bases: int = 0,
                 aggregator: str = "mean", id_embedding: int = 0, lr: float = 0.01, weight_decay: float = 0.0,
                 bias: bool = True) -> None:
        """``offset``: where the target type's nodes start in the flattened graph; the last layer has
        ``num_classes`` outputs."""
        super().__init__(lr, weight_decay)
        self.model = HeteroEncoder(dims, counts, relations, arch=arch, hidden=hidden_dim, layers=num_layers,
                                   dropout=dropout, num_bases=num_bases, aggregator=aggregator,
                                   id_embedding=id_embedding, out_dim=num_classes, bias=bias)
        self.offset, self.num_classes = int(offset), num_classes

    def logits(self, data: HeteroPrepared) -> torch.Tensor:
        """Class logits of every node of the target type."""
        assert data.target_node_type is not None
        h = self.encode(data)
        return h[self.offset: self.offset + data.graph.num_nodes(data.target_node_type)]

    def predict_step(self, batch: Payload, batch_idx: int = 0) -> torch.Tensor:
        """Class logits of every node of the target type; needs no trainer."""
        with evaluating(self.model):
            return self.logits(batch.value)

    def predictions(self, data: HeteroPrepared) -> list[Any]:
        """Every target-type node's predicted class value."""
        classes = self.graph_state.get("classes") or list(range(self.num_classes))
        return [classes[i] for i in self.predict_step(Payload("eval", data)).argmax(-1).tolist()]
