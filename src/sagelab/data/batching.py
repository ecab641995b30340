"""Batches for transformer fine-tuning: dynamic padding, length grouping, DDP shards, exact resume.

Padding every example to ``max_length`` (run_glue.py's default) spends most of the
compute on pad tokens; this module pads each batch only to its longest member and,
optionally, groups examples of similar length (HF's ``group_by_length``) so even
that padding is small. The batch sampler also does the work Lightning's
``DistributedSampler`` would (one shard per rank), and can skip the batches a
checkpoint already consumed, so a resumed run sees exactly the batches an
uninterrupted one would.
"""

from __future__ import annotations

import math
from typing import Any, Iterator, Sequence

import torch
from torch.utils.data import Sampler

from sagelab.models import MODEL_INPUTS

MEGABATCH_FACTOR = 50  # as HF's get_length_grouped_indices: sort within windows of 50 batches


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Yields lists of indices: shuffled per epoch, optionally length-grouped, sharded by rank.

    Ranks are dealt whole batches of the single-process order: rank ``r`` runs batches
    ``r, r + world, ...``. Each example is therefore computed in exactly the batch (same
    companions, same padded shape) it has in a 1-process run, so distributed evaluation
    is bit-identical to single-process evaluation. ``even_shards`` (training) pads the
    batch list so every rank runs the same number of steps; evaluation leaves it off so
    no example is counted twice, and shrinks the batch size when there are fewer
    batches than ranks, since every rank must take part.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        *,
        shuffle: bool,
        group_by_length: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        even_shards: bool = True,
    ) -> None:
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.group_by_length = group_by_length
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.even_shards = even_shards
        self.epoch = 0
        self._skip = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at each epoch start: reshuffles deterministically."""
        self.epoch = epoch

    def skip_next(self, n_batches: int) -> None:
        """Drop the first ``n_batches`` of the next iteration (they were consumed before a resume)."""
        self._skip = n_batches

    def _batches(self, order: list[int]) -> list[list[int]]:
        n = len(order)
        generator = torch.Generator().manual_seed(self.seed + self.epoch + 1)
        if self.group_by_length:
            window = self.batch_size * MEGABATCH_FACTOR
            order = [
                i
                for start in range(0, n, window)
                for i in sorted(order[start : start + window], key=lambda j: -self.lengths[j])
            ]
        batches = [order[i : i + self.batch_size] for i in range(0, n, self.batch_size)]
        if self.group_by_length and self.shuffle:
            perm = torch.randperm(len(batches), generator=generator).tolist()
            batches = [batches[i] for i in perm]
        return batches

    def _shard(self) -> list[list[int]]:
        n = len(self.lengths)
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(n, generator=generator).tolist() if self.shuffle else list(range(n))
        batches = self._batches(order)
        if self.world_size > 1 and self.even_shards and len(batches) % self.world_size:
            batches += batches[: self.world_size - len(batches) % self.world_size]
        return batches[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[list[int]]:
        skip, self._skip = self._skip, 0
        yield from self._shard()[skip:]

    def __len__(self) -> int:
        n_batches = math.ceil(len(self.lengths) / self.batch_size)
        if self.even_shards:
            return math.ceil(n_batches / self.world_size)
        return len(range(self.rank, n_batches, self.world_size))


def pad_collate(pad_token_id: int, pad_keys: tuple[str, ...] = MODEL_INPUTS):
    """A collate_fn that pads the token fields of a batch of dicts to the batch's longest member."""

    def collate(features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        longest = max(len(f["input_ids"]) for f in features)
        batch: dict[str, torch.Tensor] = {}
        for key in features[0]:
            values = [f[key] for f in features]
            if key in pad_keys:
                fill = pad_token_id if key == "input_ids" else 0
                batch[key] = torch.tensor([list(v) + [fill] * (longest - len(v)) for v in values])
            elif isinstance(values[0], (int, float, bool)) or torch.is_tensor(values[0]):
                batch[key] = torch.tensor(values)
        return batch

    return collate


def make_loader(
    dataset: Any,
    lengths: Sequence[int],
    batch_size: int,
    *,
    pad_token_id: int,
    train: bool,
    group_by_length: bool,
    seed: int,
    num_workers: int = 0,
) -> torch.utils.data.DataLoader:
    """A DataLoader over a tokenized dataset, sharded for the current process group."""
    rank, world = 0, 1
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    if not train and math.ceil(len(lengths) / batch_size) < world:  # every rank needs a batch
        batch_size = max(1, math.ceil(len(lengths) / world))
    sampler = LengthGroupedBatchSampler(
        lengths,
        batch_size,
        shuffle=train,
        group_by_length=group_by_length,
        seed=seed,
        rank=rank,
        world_size=world,
        even_shards=train,
    )
    # Its own generator: an iterator drawing its seed from the global RNG would make dropout depend on where
    # a checkpoint was taken (the draw falls before it in one run and after it in the resumed one).
    return torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, collate_fn=pad_collate(pad_token_id), num_workers=num_workers,
        generator=torch.Generator().manual_seed(seed),
    )
