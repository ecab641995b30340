"""SQuAD as a Lightning data module: article split, tokenised windows, length-grouped batches."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import lightning as L
import torch


class _WithFeatureIndex(torch.utils.data.Dataset):
    """Evaluation features plus their position, so logits can be put back in dataset order."""

    def __init__(self, features: Any) -> None:
        self.features = features

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {**self.features[index], "feature_index": index}


class SquadDataModule(L.LightningDataModule):
    def __init__(self, *, backbone: Mapping[str, Any], source: str, hub_splits: Sequence[str],
                 train_articles: int | None, eval_articles: int, split_seed: int | None, max_seq_length: int,
                 doc_stride: int, cache_dir: str | None, data: Mapping[str, Any], batch_size: int,
                 eval_batch_size: int, seed: int) -> None:
        super().__init__()
        self.backbone, self.source, self.hub_splits = backbone, source, list(hub_splits)
        self.train_articles, self.eval_articles, self.split_seed = train_articles, eval_articles, split_seed
        self.max_seq_length, self.doc_stride, self.cache_dir = max_seq_length, doc_stride, cache_dir
        self.data, self.batch_size, self.eval_batch_size, self.seed = data, batch_size, eval_batch_size, seed
        self.built = False

    def prepare_data(self) -> None:
        # local rank 0 only: tokenise into the datasets cache; other ranks read it in setup()
        self._build()

    def setup(self, stage: str | None = None) -> None:
        self._build()

    def _build(self) -> None:
        if self.built:
            return
        from sagelab.models import load_tokenizer
        from sagelab.tasks.qa import squad

        data = self.data
        self.tokenizer = load_tokenizer(self.backbone)
        examples = squad.load_squad(self.source, self.cache_dir, self.hub_splits)
        train_ex, eval_ex = squad.split_by_article(examples, self.train_articles, self.eval_articles, self.split_seed)
        if data.get("train_limit"):
            train_ex = train_ex.select(range(min(int(data["train_limit"]), len(train_ex))))
        if data.get("eval_limit"):
            eval_ex = eval_ex.select(range(min(int(data["eval_limit"]), len(eval_ex))))
        seq, stride = self.max_seq_length, self.doc_stride
        self.train_examples = train_ex
        self.train_features = squad.tokenize_split(train_ex, self.tokenizer, seq, stride, train=True)
        eval_features = squad.tokenize_split(eval_ex, self.tokenizer, seq, stride, train=False)
        self.eval_inputs = eval_features.select_columns(
            [c for c in squad.MODEL_INPUTS if c in eval_features.column_names])
        self.eval_meta = eval_features.select_columns(["example_id", "offset_mapping"]).to_list()
        self.eval_examples = eval_ex.select_columns(["id", "context", "answers"]).to_list()
        self.built = True

    def _loader(self, dataset: Any, lengths: Sequence[int], train: bool) -> torch.utils.data.DataLoader:
        from sagelab.data.batching import make_loader

        return make_loader(
            dataset, lengths, self.batch_size if train else self.eval_batch_size,
            pad_token_id=self.tokenizer.pad_token_id, train=train, group_by_length=bool(self.data["group_by_length"]),
            seed=self.seed, num_workers=int(self.data["num_workers"]),
        )

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        return self._loader(self.train_features, [len(ids) for ids in self.train_features["input_ids"]], train=True)

    def val_dataloader(self) -> torch.utils.data.DataLoader:
        """The single-process batches, dealt out whole to the ranks.

        Each window is then computed in exactly the batch (same companions, same padded
        shape) it has in a 1-process run, so its logits are bit-identical, and so are EM/F1.
        """
        lengths = [len(ids) for ids in self.eval_inputs["input_ids"]]
        return self._loader(_WithFeatureIndex(self.eval_inputs), lengths, train=False)
