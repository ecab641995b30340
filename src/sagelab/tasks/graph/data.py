"""The link-prediction DataModule: batches over the training edges, one evaluation batch.

* Full-graph training (``sampling="full"``) is one batch per epoch: the batch is the prepared graph itself;
  the module encodes every node and scores all training edges plus ``neg_ratio`` uniform negatives each.
* Neighbour sampling (``sampling="neighbor"``) iterates over training edges in batches of ``batch_size``;
  each batch is sampled by DGL's edge-prediction sampler (one fanout per layer, uniform negatives, the
  batch's own edges excluded from its blocks) and carries the input features of its nodes.
* The evaluation batch is the prepared graph: the module encodes all nodes over the training graph and
  ranks the held-out edges against their fixed negatives.

Batches are wrapped in :class:`Payload` so that Lightning hands them over untouched (it would otherwise
copy every DGL block with ``.to(device)`` each step); the module moves them itself when the device is
not the CPU. A batch holds everything its step reads, so the module needs no trainer to predict.
"""

from __future__ import annotations

from typing import Any, Sequence

import lightning as L
import torch

from sagelab.tasks.graph import SAMPLING
from sagelab.tasks.graph.pipeline import PreparedGraph
from sagelab.tasks.graph.training import EdgeBatchCollator, edge_sampler, reverse_edge_ids, seed_sampling


class Payload:
    """An opaque batch (not a tuple, dataclass or tensor) that Lightning does not try to move.

    ``kind`` is ``full`` or ``eval`` (``value``: the :class:`PreparedGraph`) or ``sampled`` (``value``:
    ``(input_nodes, pair_graph, neg_pair_graph, blocks, input_features)``).
    """

    __slots__ = ("kind", "value")

    def __init__(self, kind: str, value: Any = None) -> None:
        self.kind, self.value = kind, value


class _Whole:
    """``collate_fn`` of the one-item loaders: the prepared graph as a batch of ``kind``."""

    def __init__(self, kind: str, data: PreparedGraph) -> None:
        self.kind, self.data = kind, data

    def __call__(self, items: list[Any]) -> Payload:
        return Payload(self.kind, self.data)


class _Sampled:
    """``collate_fn`` over training-edge ids: a sampled mini-batch with its nodes' input features."""

    def __init__(self, collate: EdgeBatchCollator, x: torch.Tensor) -> None:
        self.collate, self.x = collate, x

    def __call__(self, items: list[Any]) -> Payload:
        input_nodes, pair, neg, blocks = self.collate(items)
        return Payload("sampled", (input_nodes, pair, neg, blocks, self.x[input_nodes]))


class LinkDataModule(L.LightningDataModule):
    def __init__(
        self,
        data: PreparedGraph,
        *,
        sampling: str = "full",
        fanouts: Sequence[int] = (10, 10),
        self_loops: bool = False,
        neg_ratio: int = 1,
        batch_size: int = 1024,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        """``fanouts``: neighbours sampled per layer, one entry per layer (``sampling="neighbor"``);
        ``self_loops``: the message-passing graph carries one per node (GCN)."""
        super().__init__()
        if sampling not in SAMPLING:
            raise ValueError(f"sampling is {sampling!r}; use full or neighbor")
        self.data = data
        self.sampling, self.fanouts, self.self_loops = sampling, [int(f) for f in fanouts], self_loops
        self.neg_ratio, self.batch_size, self.seed, self.num_workers = neg_ratio, batch_size, seed, num_workers

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        if self.sampling == "full":
            return self._whole("full")
        num_edges = len(self.data.split.train)
        graph = self.data.dgl_graph("train", self.self_loops)
        sampler = edge_sampler(self.fanouts, self.neg_ratio,
                               reverse_edge_ids(num_edges, self.data.num_nodes, self.self_loops))
        generator = torch.Generator().manual_seed(self.seed)
        seed_sampling(self.seed)
        return torch.utils.data.DataLoader(
            torch.arange(num_edges), batch_size=self.batch_size, shuffle=True, generator=generator,
            collate_fn=_Sampled(EdgeBatchCollator(graph, sampler), self.data.x), num_workers=self.num_workers,
        )

    def val_dataloader(self) -> torch.utils.data.DataLoader:
        return self._whole("eval")

    def _whole(self, kind: str) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader([0], batch_size=1, collate_fn=_Whole(kind, self.data))
