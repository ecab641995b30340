"""The node-task LightningModule: the graph family's :class:`GnnEncoder` with one output per class (classification)
or one output (regression).

Built from explicit arguments (no config object). Steps read the graph from the batch
(:mod:`sagelab.tasks.nodes.data`):

* ``training_step`` -- encode every node; cross-entropy (classification) or the mean squared error of the
  standardised target (regression) over the training nodes (``train/loss``);
* ``validation_step`` / ``test_step`` -- the same encoding in eval mode, scored on that split's nodes, all from
  torchmetrics: ``<split>/loss``, ``<split>/accuracy`` (micro: the share of nodes right) and
  ``<split>/macro_f1`` (the unweighted mean of per-class F1, so small classes count); for regression
  ``<split>/mae``, ``<split>/rmse`` and ``<split>/r2`` in the target's own units;
* ``predict_step`` -- the class logits, or the predicted values, of every node (the HPO latency probe).

The class values (or the target's mean and standard deviation) and node ids are the module's ``extra_state``
(plain data), so a checkpoint says what its outputs mean and loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from typing import Any, Sequence

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics.functional import mean_absolute_error, mean_squared_error, r2_score
from torchmetrics.functional.classification import multiclass_accuracy, multiclass_f1_score

from sagelab.tasks.graph.data import Payload
from sagelab.tasks.graph.nn import GnnEncoder
from sagelab.tasks.graph.trained import PlainState, plain
from sagelab.tasks.nodes import DECAY, OBJECTIVES
from sagelab.tasks.nodes.prepare import PreparedNodes


class NodeSteps(PlainState):
    """The steps of a node task whose batch is the whole prepared graph (``data.masks``, ``data.y``): a loss on the
    training nodes, loss and metrics on the validation or test nodes. The module gives ``logits(data)`` and
    ``num_classes``; this is classification (cross-entropy, accuracy, macro-F1), and regression overrides
    :meth:`_loss` and :meth:`_metrics`. Shared by the node family and the heterogeneous one."""

    num_classes: int

    def _nodes(self, data: Any, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        index = data.masks[split].to(self.device)
        return index, data.y.to(self.device)[index]

    def _loss(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs, target)

    def _metrics(self, outputs: torch.Tensor, target: torch.Tensor, split: str) -> dict[str, torch.Tensor]:
        preds = outputs.argmax(-1)
        return {f"{split}/accuracy": multiclass_accuracy(preds, target, self.num_classes, average="micro"),
                f"{split}/macro_f1": multiclass_f1_score(preds, target, self.num_classes, average="macro")}

    def training_step(self, batch: Payload, batch_idx: int) -> torch.Tensor:
        index, target = self._nodes(batch.value, "train")
        loss = self._loss(self.logits(batch.value)[index], target)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(index))
        return loss

    def _evaluate(self, batch: Payload, split: str) -> None:
        index, target = self._nodes(batch.value, split)
        if len(index) == 0:
            return
        outputs = self.logits(batch.value)[index]
        self.log_dict({f"{split}/loss": self._loss(outputs, target), **self._metrics(outputs, target, split)},
                      prog_bar=split == "val", batch_size=len(index))

    def validation_step(self, batch: Payload, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: Payload, batch_idx: int) -> None:
        self._evaluate(batch, "test")


class NodeClassificationModule(NodeSteps, L.LightningModule):
    """GnnEncoder (last layer = class logits or one value) + what its outputs mean (saved in the checkpoint)."""

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
        objective: str = "classification",
        scale: tuple[float, float] = (0.0, 1.0),
        bias: bool = True,
    ) -> None:
        """The network's shape (``arch`` .. ``id_embedding``; the last of ``num_layers`` layers outputs
        ``num_classes`` logits) and Adam's settings; ``decay="first"`` puts the weight decay on the first layer
        (and id embedding) only, as the GCN paper's code does, ``"all"`` on every parameter. ``objective=
        "regression"``: one output, trained on targets standardised by ``scale`` (mean, standard deviation);
        ``num_classes`` is then ignored."""
        super().__init__()
        if decay not in DECAY or objective not in OBJECTIVES:
            raise ValueError(f"decay is {decay!r}, objective {objective!r}; use {DECAY} and {OBJECTIVES}")
        self.regression, self.scale = objective == "regression", (float(scale[0]), float(scale[1]))
        out_dim = 1 if self.regression else num_classes
        self.model = GnnEncoder(in_dim, num_nodes, arch=arch, hidden=hidden_dim, layers=num_layers, dropout=dropout,
                                aggregator=aggregator, id_embedding=id_embedding, out_dim=out_dim, bias=bias)
        self.num_classes, self.lr, self.weight_decay, self.decay = num_classes, lr, weight_decay, decay
        self.graph_state: dict[str, Any] = {}

    # -- what a checkpoint must say about its outputs ------------------------------------
    def set_graph_state(self, classes: Sequence[Any], node_ids: Sequence[str]) -> None:
        self.graph_state = plain({"classes": list(classes), "scale": list(self.scale), "node_ids": list(node_ids)})

    # -- steps ----------------------------------------------------------------------------
    def logits(self, data: PreparedNodes) -> torch.Tensor:
        """The raw outputs of every node (class logits, or standardised values); message passing in fp32 (DGL's
        sparse kernels have no CPU bf16 path)."""
        graph, x = data.dgl_graph(self.model.needs_self_loops), data.x
        if x.device != self.device:  # accelerators only; CPU runs use the shared tensors as they are
            graph, x = graph.to(self.device), x.to(self.device)
        with torch.autocast(device_type=self.device.type, enabled=False):
            return self.model(graph, x)

    def values(self, outputs: torch.Tensor) -> torch.Tensor:
        """Regression outputs in the target's own units."""
        return outputs.squeeze(-1) * self.scale[1] + self.scale[0]

    def _loss(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.regression:
            return F.mse_loss(outputs.squeeze(-1), (target - self.scale[0]) / self.scale[1])
        return super()._loss(outputs, target)

    def _metrics(self, outputs: torch.Tensor, target: torch.Tensor, split: str) -> dict[str, torch.Tensor]:
        if not self.regression:
            return super()._metrics(outputs, target, split)
        values = self.values(outputs)
        metrics = {f"{split}/mae": mean_absolute_error(values, target),
                   f"{split}/rmse": mean_squared_error(values, target, squared=False)}
        if len(target) > 1:  # R^2 needs a variance
            metrics[f"{split}/r2"] = r2_score(values, target)
        return metrics

    def predict_step(self, batch: Payload, batch_idx: int = 0) -> torch.Tensor:
        """Class logits (num_nodes, num_classes), or values (num_nodes,), of every node; needs no trainer."""
        outputs = self.logits(batch.value)
        return self.values(outputs) if self.regression else outputs

    def predictions(self, data: PreparedNodes) -> list[Any]:
        """Every node's predicted class value (or number), in eval mode."""
        self.eval()
        with torch.no_grad():
            outputs = self.logits(data)
        if self.regression:
            return [float(v) for v in self.values(outputs)]
        classes = self.graph_state.get("classes") or list(range(outputs.shape[-1]))
        return [classes[i] for i in outputs.argmax(-1).tolist()]

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
