"""The node-classification DataModule: the whole graph is the one batch of every split.

Transductive full-graph training (as in the GCN paper): each epoch is one step that encodes every node and
takes the loss on the training nodes; validation and test encode the same graph and score their own nodes.
The batch is the :class:`PreparedNodes` itself, wrapped in the graph family's opaque ``Payload`` so that
Lightning does not try to move it; ``has_test_split`` makes the runner score the test nodes once, after
training (``test/*``), on data no validation round or HPO trial selected on.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from sagelab.tasks.graph.data import Payload
from sagelab.tasks.nodes.prepare import PreparedNodes


class _Whole:
    """``collate_fn`` of the one-item loaders: the prepared graph as a batch for ``split``."""

    def __init__(self, split: str, data: PreparedNodes) -> None:
        self.split, self.data = split, data

    def __call__(self, items: list[Any]) -> Payload:
        return Payload(self.split, self.data)


class NodeDataModule(L.LightningDataModule):
    has_test_split = True

    def __init__(self, data: PreparedNodes) -> None:
        super().__init__()
        self.data = data

    def _whole(self, split: str) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader([0], batch_size=1, collate_fn=_Whole(split, self.data))

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        return self._whole("train")

    def val_dataloader(self) -> torch.utils.data.DataLoader:
        return self._whole("val")

    def test_dataloader(self) -> torch.utils.data.DataLoader:
        return self._whole("test")

    def predict_dataloader(self) -> torch.utils.data.DataLoader:
        return self._whole("val")
