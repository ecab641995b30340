"""The node-classification LightningModule: the graph family's :class:`GnnEncoder` with one output per class.

Built from explicit arguments (no config object). Steps read the graph from the batch
(:mod:`sagelab.tasks.nodes.data`):

* ``training_step`` -- encode every node, cross-entropy over the training nodes (``train/loss``);
* ``validation_step`` / ``test_step`` -- the same encoding in eval mode, scored on that split's nodes:
  ``<split>/loss``, ``<split>/accuracy`` (micro: the share of nodes right) and ``<split>/macro_f1`` (the
  unweighted mean of per-class F1, so small classes count), both from torchmetrics;
* ``predict_step`` -- the class logits of every node (the HPO latency probe calls it).

The class values and node ids are the module's ``extra_state`` (plain data), so a checkpoint says what its
outputs mean and loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from typing import Any, Sequence

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics.functional.classification import multiclass_accuracy, multiclass_f1_score

from sagelab.tasks.graph.data import Payload
from sagelab.tasks.graph.module import plain
from sagelab.tasks.graph.nn import GnnEncoder
from sagelab.tasks.nodes import DECAY
from sagelab.tasks.nodes.prepare import PreparedNodes


class NodeClassificationModule(L.LightningModule):
    """GnnEncoder (last layer = class logits) + the class values and node ids (saved in the checkpoint)."""

    def __init__(
        self,
        in_dim: int,
        num_nodes: int,
        num_classes: int,
        *,
        arch: str,
        hidden_dim: int,
        num_layers: int,
        dropout: float,
        aggregator: str,
        id_embedding: int = 0,
        lr: float = 0.01,
        weight_decay: float = 5e-4,
        decay: str = "first",
    ) -> None:
        """The network's shape (``arch`` .. ``id_embedding``; the last of ``num_layers`` layers outputs
        ``num_classes`` logits) and Adam's settings; ``decay="first"`` puts the weight decay on the first layer
        (and id embedding) only, as the GCN paper's code does, ``"all"`` on every parameter."""
        super().__init__()
        self.model = GnnEncoder(in_dim, num_nodes, arch=arch, hidden=hidden_dim, layers=num_layers, dropout=dropout,
                                aggregator=aggregator, id_embedding=id_embedding, out_dim=num_classes)
        if decay not in DECAY:
            raise ValueError(f"decay is {decay!r}; use {' or '.join(DECAY)}")
        self.num_classes, self.lr, self.weight_decay, self.decay = num_classes, lr, weight_decay, decay
        self.graph_state: dict[str, Any] = {}

    # -- what a checkpoint must say about its outputs ------------------------------------
    def set_graph_state(self, classes: Sequence[Any], node_ids: Sequence[str]) -> None:
        self.graph_state = plain({"classes": list(classes), "node_ids": list(node_ids)})

    def get_extra_state(self) -> dict[str, Any]:
        return self.graph_state

    def set_extra_state(self, state: Any) -> None:
        self.graph_state = dict(state or {})

    # -- steps ----------------------------------------------------------------------------
    def logits(self, data: PreparedNodes) -> torch.Tensor:
        """Class logits of every node; message passing in fp32 (DGL's sparse kernels have no CPU bf16 path)."""
        graph, x = data.dgl_graph(self.model.needs_self_loops), data.x
        if x.device != self.device:  # accelerators only; CPU runs use the shared tensors as they are
            graph, x = graph.to(self.device), x.to(self.device)
        with torch.autocast(device_type=self.device.type, enabled=False):
            return self.model(graph, x)

    def _nodes(self, data: PreparedNodes, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        index = data.masks[split].to(self.device)
        return index, data.y.to(self.device)[index]

    def training_step(self, batch: Payload, batch_idx: int) -> torch.Tensor:
        index, target = self._nodes(batch.value, "train")
        loss = F.cross_entropy(self.logits(batch.value)[index], target)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(index))
        return loss

    def _evaluate(self, batch: Payload, split: str) -> None:
        index, target = self._nodes(batch.value, split)
        if len(index) == 0:
            return
        logits = self.logits(batch.value)[index]
        preds = logits.argmax(-1)
        self.log_dict({
            f"{split}/loss": F.cross_entropy(logits, target),
            f"{split}/accuracy": multiclass_accuracy(preds, target, self.num_classes, average="micro"),
            f"{split}/macro_f1": multiclass_f1_score(preds, target, self.num_classes, average="macro"),
        }, prog_bar=split == "val", batch_size=len(index))

    def validation_step(self, batch: Payload, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: Payload, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def predict_step(self, batch: Payload, batch_idx: int = 0) -> torch.Tensor:
        """Class logits (num_nodes, num_classes) of every node; needs no trainer."""
        return self.logits(batch.value)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        if self.decay == "all":
            return torch.optim.Adam(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        first = [*self.model.convs[0].parameters()]
        if self.model.id_embedding is not None:
            first += [*self.model.id_embedding.parameters()]
        chosen = {id(p) for p in first}
        rest = [p for p in self.parameters() if id(p) not in chosen]
        return torch.optim.Adam([{"params": first, "weight_decay": self.weight_decay},
                                 {"params": rest, "weight_decay": 0.0}], lr=self.lr)
