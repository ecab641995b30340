"""The link-prediction LightningModule: a :class:`LinkPredictor` plus what recommend/transform need of training.

Built from explicit arguments (no config object), so it can be constructed and tested on its own; the task
maps the config to them. Its steps read the graph from the batch (see :mod:`sagelab.tasks.graph.data`):

* ``training_step`` -- full-graph BCE over the training edges and ``neg_ratio`` uniform negatives each, or the
  loss of a neighbour-sampled mini-batch;
* ``validation_step`` -- encode all nodes over the training graph and rank held-out edges against their fixed
  negatives (``val/*``); the final evaluation (``trainer.validate``) also scores the test edges (``test/*``);
* ``predict_step`` -- the node embeddings and the scores of the validation edges (the HPO latency probe).

The fitted feature encoding, node ids and names are the module's ``extra_state``
(:class:`~sagelab.tasks.graph.trained.GraphState`): plain data, so the checkpoint loads with
``torch.load(weights_only=True)``, and into :class:`~sagelab.tasks.graph.trained.TrainedGraph` for inference.
"""

from __future__ import annotations

from typing import Any, Sequence

import lightning as L
import numpy as np
import torch

from sagelab.tasks.graph.data import Payload
from sagelab.tasks.graph.pipeline import PreparedGraph
from sagelab.tasks.graph.trained import GraphState, build_predictor
from sagelab.tasks.graph.training import embed, evaluate_edges, full_graph_loss, minibatch_loss, score_edges


class LinkPredictionModule(GraphState, L.LightningModule):
    """LinkPredictor + the fitted feature encoding and node ids (saved in the checkpoint)."""

    def __init__(
        self,
        in_dim: int,
        num_nodes: int,
        *,
        arch: str,
        hidden_dim: int,
        num_layers: int,
        dropout: float,
        aggregator: str,
        scorer: str,
        id_embedding: int = 0,
        neg_ratio: int = 1,
        hits_at: Sequence[int] = (20,),
        lr: float = 0.01,
        weight_decay: float = 0.0,
        bias: bool = True,
    ) -> None:
        """The network's shape (``arch`` .. ``id_embedding``), the training objective (``neg_ratio`` uniform
        negatives per positive), the evaluation (Hits@K for each of ``hits_at``) and Adam's settings."""
        super().__init__()
        self.model = build_predictor(in_dim, num_nodes, arch=arch, hidden_dim=hidden_dim, num_layers=num_layers,
                                     dropout=dropout, aggregator=aggregator, scorer=scorer, id_embedding=id_embedding,
                                     bias=bias)
        self.neg_ratio, self.hits_at = neg_ratio, [int(k) for k in hits_at]
        self.lr, self.weight_decay = lr, weight_decay
        self.graph_state: dict[str, Any] = {}

    # -- steps ----------------------------------------------------------------------------
    def _graph(self, data: PreparedGraph) -> tuple[Any, torch.Tensor]:
        graph, x = data.dgl_graph("train", self.model.needs_self_loops), data.x
        if x.device != self.device:  # accelerators only; CPU runs use the shared tensors as they are
            graph, x = graph.to(self.device), x.to(self.device)
        return graph, x

    def _edges(self, edges: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(edges, device=self.device)

    def training_step(self, batch: Payload, batch_idx: int) -> torch.Tensor:
        # DGL's sparse kernels have no bf16 path on CPU: keep message passing in fp32 under any autocast
        with torch.autocast(device_type=self.device.type, enabled=False):
            if batch.kind == "full":
                graph, x = self._graph(batch.value)
                edges = self._edges(batch.value.split.train)
                loss = full_graph_loss(self.model, graph, x, edges, self.neg_ratio)
                size = len(edges)
            else:
                input_nodes, pair, neg, blocks, inputs = batch.value
                if self.device.type != "cpu":
                    input_nodes, pair, neg, inputs = (t.to(self.device) for t in (input_nodes, pair, neg, inputs))
                    blocks = [b.to(self.device) for b in blocks]
                loss = minibatch_loss(self.model, (input_nodes, pair, neg, blocks), inputs)
                size = pair.num_edges()
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        return loss

    def embeddings(self, data: PreparedGraph, x: torch.Tensor | None = None) -> torch.Tensor:
        """Every node's embedding over the training graph (eval mode, fp32); ``x`` replaces the node features
        ``data.x`` (same shape), e.g. with one property shuffled for permutation importance."""
        graph, features = self._graph(data)
        if x is not None:
            features = x.to(features.device)
        with torch.autocast(device_type=self.device.type, enabled=False):
            return embed(self.model, graph, features)

    def validation_step(self, batch: Payload, batch_idx: int) -> None:
        from lightning.pytorch.trainer.states import TrainerFn

        data: PreparedGraph = batch.value
        h = self.embeddings(data)
        splits = [("val", data.split.val, data.val_negatives)]
        if self.trainer.state.fn == TrainerFn.VALIDATING:  # the final evaluation, not a mid-training check
            splits.append(("test", data.split.test, data.test_negatives))
        for name, positives, negatives in splits:
            if len(positives) == 0:
                continue
            with torch.autocast(device_type=self.device.type, enabled=False):
                metrics = evaluate_edges(self.model, h, self._edges(positives), self._edges(negatives), self.hits_at)
            self.log_dict({f"{name}/{k}": v for k, v in metrics.items()}, prog_bar=name == "val", batch_size=1)

    def predict_step(self, batch: Payload, batch_idx: int = 0) -> dict[str, torch.Tensor]:
        """On the evaluation batch: ``embeddings`` (num_nodes, hidden) and ``scores``, the logits of the
        validation edges (``sigmoid`` gives link probabilities). Needs no trainer."""
        data: PreparedGraph = batch.value
        h = self.embeddings(data)
        with torch.autocast(device_type=self.device.type, enabled=False):
            scores = score_edges(self.model, h, self._edges(data.split.val))
        return {"embeddings": h, "scores": scores}

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)

