"""GLUE splits as a Lightning data module: read, tokenise, batch by length.

With ``data.holdout`` the validation split is a fixed slice of the training set and the task's own evaluation
files become the test split, scored once at the end (model selection never sees them).
"""

from __future__ import annotations

from typing import Any, Mapping

import lightning as L
import torch

from sagelab.config import ConfigError


class GlueDataModule(L.LightningDataModule):
    def __init__(self, *, backbone: Mapping[str, Any], source: str, fmt: str, text_fields: list[str],
                 num_labels: int, train_files: list[str], eval_files: list[str], hub_config: str | None = None,
                 hub_eval_split: str = "validation", data: Mapping[str, Any], batch_size: int,
                 eval_batch_size: int, seed: int) -> None:
        super().__init__()
        self.backbone, self.source, self.fmt, self.text_fields = backbone, source, fmt, text_fields
        self.num_labels = num_labels  # local files: labels outside the task's classes are refused by line
        self.train_files, self.eval_files = train_files, eval_files
        self.hub_config, self.hub_eval_split = hub_config, hub_eval_split
        self.data, self.batch_size, self.eval_batch_size, self.seed = data, batch_size, eval_batch_size, seed
        self.splits: dict[str, Any] = {}

    @property
    def has_test_split(self) -> bool:
        return self.data.get("holdout") is not None

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        from sagelab.models import load_tokenizer
        from sagelab.tasks.glue.formats import load_split

        data, fields = self.data, self.text_fields
        self.tokenizer = load_tokenizer(self.backbone)

        def tokenize(batch: dict[str, list]) -> dict[str, list]:
            return self.tokenizer(*[batch[f] for f in fields], truncation=True, max_length=int(data["max_length"]))

        train = load_split(self.source, self.fmt, self.train_files, self.hub_config, "train", self.num_labels)
        if data.get("train_limit"):
            train = train.select(range(min(int(data["train_limit"]), len(train))))
        evaluation = load_split(self.source, self.fmt, self.eval_files, self.hub_config, self.hub_eval_split,
                                self.num_labels)
        splits = {"train": train, "eval": evaluation}
        if self.has_test_split:
            splits["train"], splits["eval"] = holdout_split(train, data["holdout"], int(data["holdout_seed"]))
            splits["test"] = evaluation
        for split, dataset in splits.items():
            if split != "train" and data.get("eval_limit"):
                dataset = dataset.select(range(min(int(data["eval_limit"]), len(dataset))))
            dataset = dataset.map(tokenize, batched=True, remove_columns=fields, desc=f"tokenising {split}")
            if "label" in dataset.column_names:
                dataset = dataset.rename_column("label", "labels")
            self.splits[split] = dataset

    def _loader(self, split: str, train: bool) -> torch.utils.data.DataLoader:
        from sagelab.data.batching import make_loader

        dataset = self.splits[split]
        return make_loader(
            dataset, [len(ids) for ids in dataset["input_ids"]], self.batch_size if train else self.eval_batch_size,
            pad_token_id=self.tokenizer.pad_token_id, train=train, group_by_length=bool(self.data["group_by_length"]),
            seed=self.seed, num_workers=int(self.data["num_workers"]),
        )

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> torch.utils.data.DataLoader:
        return self._loader("eval", train=False)

    def test_dataloader(self) -> torch.utils.data.DataLoader:
        return self._loader("test", train=False)


def holdout_split(train: Any, holdout: float, seed: int) -> tuple[Any, Any]:
    """(rest, held out): a fixed random slice of ``holdout`` (fraction < 1, or count) of the training examples."""
    import numpy as np

    n = len(train)
    k = int(round(holdout * n)) if holdout < 1 else int(holdout)
    if not 0 < k < n:
        raise ConfigError("data.holdout", f"holds out {k} of {n} training examples; leave at least one on each side.")
    order = np.random.default_rng(seed).permutation(n)
    return train.select(np.sort(order[k:])), train.select(np.sort(order[:k]))
