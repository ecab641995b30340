"""NER manifests as a Lightning data module: read, cut into tokenised windows, batch by length.

The train manifest trains; the dev manifest is the validation split (``val/*``, what HPO selects on); a test
manifest, when given, is the test split, which the runner scores once after validation (``test/*``) because
``has_test_split`` says so. Evaluation batches carry each window's word ids, document and window number, so
the module can put words back together across windows and score whole documents.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, Mapping, Sequence

import lightning as L
import torch

from sagelab.tasks.ner.tagging import IGNORE

LABEL_KEYS = ("labels", "words")  # per-token lists padded with -100 (pad_collate pads only the model inputs)


def token_collate(pad_token_id: int) -> Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]]:
    """``pad_collate`` plus the per-token label lists, padded with -100 to the batch's width."""
    from sagelab.data.batching import pad_collate

    base = pad_collate(pad_token_id)

    def collate(features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = base(features)
        width = batch["input_ids"].shape[1]
        for key in LABEL_KEYS:
            if key in features[0]:
                batch[key] = torch.tensor([list(f[key]) + [IGNORE] * (width - len(f[key])) for f in features])
        return batch

    return collate


class NERDataModule(L.LightningDataModule):
    def __init__(self, *, backbone: Mapping[str, Any], manifests: Mapping[str, str | None], attribute: str,
                 labels: Sequence[str], stride: int, data: Mapping[str, Any], batch_size: int,
                 eval_batch_size: int, seed: int) -> None:
        super().__init__()
        self.backbone, self.manifests, self.attribute, self.labels = backbone, manifests, attribute, list(labels)
        self.stride, self.data, self.batch_size, self.eval_batch_size, self.seed = (
            stride, data, batch_size, eval_batch_size, seed)
        self.splits: dict[str, list[dict[str, Any]]] = {}

    @property
    def has_test_split(self) -> bool:
        return bool(self.manifests.get("test"))

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        from sagelab.models import load_tokenizer
        from sagelab.tasks.ner.manifest import read_manifest
        from sagelab.tasks.ner.tagging import encode_labelled
        from sagelab.tasks.ner.task import MANIFEST_KEYS

        self.tokenizer = load_tokenizer(self.backbone)
        for split, key in MANIFEST_KEYS.items():
            path = self.manifests.get(split)
            if not path:
                continue
            documents = read_manifest(path, self.attribute, self.labels, key)
            limit = self.data.get("train_limit" if split == "train" else "eval_limit")
            documents = documents[: int(limit)] if limit else documents
            windows, problems = encode_labelled(self.tokenizer, documents, self.labels, int(self.data["max_length"]),
                                                self.stride)
            if problems:
                counts = ", ".join(f"{n} {kind}" for kind, n in sorted(problems.items()))
                print(f"{path}: {counts} entities could not be tagged exactly on whole words "
                      "(see sagelab.tasks.ner.tagging)", file=sys.stderr)
            if split == "train":  # training batches carry only what the model's forward takes
                windows = [{k: v for k, v in w.items() if k not in ("words", "doc", "window")} for w in windows]
            self.splits[split] = windows

    def _loader(self, split: str) -> torch.utils.data.DataLoader:
        from sagelab.data.batching import make_loader

        windows, train, pad = self.splits[split], split == "train", self.tokenizer.pad_token_id
        workers = int(self.data["num_workers"])
        # the shared batch sampler (length groups, rank shards, resume) under a collate that pads labels too
        sampler = make_loader(windows, [len(w["input_ids"]) for w in windows],
                              self.batch_size if train else self.eval_batch_size, pad_token_id=pad, train=train,
                              group_by_length=bool(self.data["group_by_length"]), seed=self.seed,
                              num_workers=workers).batch_sampler
        return torch.utils.data.DataLoader(windows, batch_sampler=sampler, collate_fn=token_collate(pad),
                                           num_workers=workers)

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> torch.utils.data.DataLoader:
        """Dev windows in batches of ``eval_batch_size``, carrying ``words``, ``doc`` and ``window``."""
        return self._loader("eval")

    def test_dataloader(self) -> torch.utils.data.DataLoader:
        """The test manifest's windows, as the dev ones (the runner calls it when ``has_test_split``)."""
        return self._loader("test")
