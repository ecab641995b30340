"""The Lightning pair for link prediction: a DataModule over edges and a module around LinkPredictor.

* Full-graph training (``task.sampling=full``) is one batch per epoch: the batch is the whole
  training graph, the step encodes every node and scores all training edges plus ``neg_ratio``
  uniform negatives each.
* Neighbour sampling (``task.sampling=neighbor``) iterates over training edges in batches of
  ``optim.batch_size``; each batch is sampled by DGL's edge-prediction sampler (fanouts per layer,
  uniform negatives, the batch's own edges excluded from its blocks).
* Validation encodes all nodes over the training graph and ranks held-out edges against their fixed
  negatives. The final ``trainer.validate`` (the runner's evaluation) also scores the test edges.

Batches are wrapped in :class:`Payload` so that Lightning hands them over untouched (it would
otherwise copy every DGL block with ``.to(device)`` each step); the module moves them itself when the
device is not the CPU.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig

from sagelab.tasks.graph.features import FeatureEncoder
from sagelab.tasks.graph.nn import LinkPredictor
from sagelab.tasks.graph.pipeline import PreparedGraph
from sagelab.tasks.graph.training import (
    EdgeBatchCollator,
    edge_sampler,
    evaluate_edges,
    full_graph_loss,
    minibatch_loss,
    reverse_edge_ids,
)


class Payload:
    """An opaque batch (not a tuple, dataclass or tensor) that Lightning does not try to move."""

    __slots__ = ("kind", "value")

    def __init__(self, kind: str, value: Any = None) -> None:
        self.kind, self.value = kind, value


class _Wrap:
    def __init__(self, kind: str, collate: Any = None) -> None:
        self.kind, self.collate = kind, collate

    def __call__(self, items: list[Any]) -> Payload:
        return Payload(self.kind, self.collate(items) if self.collate else None)


class LinkDataModule(L.LightningDataModule):
    def __init__(self, cfg: DictConfig, data: PreparedGraph) -> None:
        super().__init__()
        self.cfg, self.data = cfg, data
        self.self_loops = cfg.model.arch == "gcn"

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        task = self.cfg.task
        if task.sampling == "full":
            return torch.utils.data.DataLoader([0], batch_size=1, collate_fn=_Wrap("full"))
        num_edges = len(self.data.split.train)
        graph = self.data.dgl_graph("train", self.self_loops)
        layers = int(self.cfg.model.num_layers)
        fanouts = [int(f) for f in task.fanouts][:layers]
        fanouts += fanouts[-1:] * (layers - len(fanouts))  # a shorter list repeats its last entry
        sampler = edge_sampler(fanouts, int(task.neg_ratio),
                               reverse_edge_ids(num_edges, self.data.num_nodes, self.self_loops))
        generator = torch.Generator().manual_seed(int(self.cfg.seed))
        return torch.utils.data.DataLoader(
            torch.arange(num_edges), batch_size=int(self.cfg.optim.batch_size), shuffle=True, generator=generator,
            collate_fn=_Wrap("sampled", EdgeBatchCollator(graph, sampler)), num_workers=int(self.cfg.data.num_workers),
        )

    def val_dataloader(self) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader([0], batch_size=1, collate_fn=_Wrap("eval"))


class LinkPredictionModule(L.LightningModule):
    """LinkPredictor + the fitted feature encoding and node ids (saved in the checkpoint)."""

    def __init__(self, cfg: DictConfig, in_dim: int, num_nodes: int) -> None:
        super().__init__()
        self.cfg = cfg
        m = cfg.model
        self.model = LinkPredictor(
            in_dim, num_nodes, arch=str(m.arch), hidden=int(m.hidden_dim), layers=int(m.num_layers),
            dropout=float(m.dropout), aggregator=str(m.aggregator), scorer=str(m.scorer),
            id_embedding=int(cfg.task.id_embedding or 0),
        )
        self.graph_state: dict[str, Any] = {}

    # -- what recommend/transform need besides the weights --------------------------------
    def set_graph_state(self, features: dict[str, Any], node_ids: list[str], names: list[str]) -> None:
        self.graph_state = {"features": features, "node_ids": list(node_ids), "names": list(names)}

    def get_extra_state(self) -> dict[str, Any]:
        return self.graph_state

    def set_extra_state(self, state: Any) -> None:
        self.graph_state = dict(state or {})

    @property
    def node_ids(self) -> list[str]:
        return self.graph_state["node_ids"]

    def feature_encoder(self) -> FeatureEncoder:
        return FeatureEncoder.from_state(self.graph_state["features"])

    # -- training ---------------------------------------------------------------------
    @property
    def data(self) -> PreparedGraph:
        return self.trainer.datamodule.data

    def _graph(self) -> tuple[Any, torch.Tensor]:
        graph, x = self.data.dgl_graph("train", self.model.needs_self_loops), self.data.x
        if x.device != self.device:  # accelerators only; CPU runs use the shared tensors as they are
            graph, x = graph.to(self.device), x.to(self.device)
        return graph, x

    def training_step(self, batch: Payload, batch_idx: int) -> torch.Tensor:
        # DGL's sparse kernels have no bf16 path on CPU: keep message passing in fp32 under any autocast
        with torch.autocast(device_type=self.device.type, enabled=False):
            graph, x = self._graph()
            if batch.kind == "full":
                edges = torch.as_tensor(self.data.split.train, device=self.device)
                loss = full_graph_loss(self.model, graph, x, edges, int(self.cfg.task.neg_ratio))
                size = len(edges)
            else:
                input_nodes, pair, neg, blocks = batch.value
                if self.device.type != "cpu":
                    input_nodes, pair, neg = input_nodes.to(self.device), pair.to(self.device), neg.to(self.device)
                    blocks = [b.to(self.device) for b in blocks]
                loss = minibatch_loss(self.model, (input_nodes, pair, neg, blocks), x)
                size = pair.num_edges()
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        return loss

    def validation_step(self, batch: Payload, batch_idx: int) -> None:
        from lightning.pytorch.trainer.states import TrainerFn

        with torch.autocast(device_type=self.device.type, enabled=False):
            graph, x = self._graph()
            h = self.model(graph, x)  # Lightning has put the module in eval mode
            splits = [("val", self.data.split.val, self.data.val_negatives)]
            if self.trainer.state.fn == TrainerFn.VALIDATING:  # the final evaluation, not a mid-training check
                splits.append(("test", self.data.split.test, self.data.test_negatives))
            for name, positives, negatives in splits:
                if len(positives) == 0:
                    continue
                metrics = evaluate_edges(
                    self.model, h, torch.as_tensor(positives, device=self.device),
                    torch.as_tensor(negatives, device=self.device), list(self.cfg.task.hits_at),
                )
                self.log_dict({f"{name}/{k}": v for k, v in metrics.items()},
                              prog_bar=name == "val", batch_size=1)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        optim = self.cfg.optim
        return torch.optim.Adam(self.parameters(), lr=float(optim.lr), weight_decay=float(optim.weight_decay))
