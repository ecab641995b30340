"""GLUE sentence(-pair) classification and regression: CoLA, SST-2, MRPC, STS-B.

The reference task: a config (``conf/task/glue_*.yaml``) plus this module. The
task config names the file format, the text columns, the label count (1 means
regression) and the metrics; everything else is the shared runner.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

from sagelab.config import ConfigError, check_file
from sagelab.data.glue import READERS, is_local_source
from sagelab.tasks.base import Task

if TYPE_CHECKING:
    from sagelab.runner import Runner

METRICS = ("accuracy", "f1", "mcc", "pearson", "spearman")


class GlueTask(Task):
    supports_holdout = True

    def check(self) -> None:
        task = self.cfg.task
        if task.format not in READERS:
            raise ConfigError("task.format", f"is '{task.format}'; known formats: {', '.join(READERS)}.")
        unknown = [m for m in task.metrics if m not in METRICS]
        if unknown:
            raise ConfigError("task.metrics", f"unknown metric {unknown[0]!r}; known: {', '.join(METRICS)}.")
        if self.metric.split("/")[-1] not in task.metrics:
            raise ConfigError("task.metric", f"'{self.metric}' is not one of val/{{{','.join(task.metrics)}}}.")
        if self.cfg.model.get("kind", "transformer") != "transformer":
            raise ConfigError("model", f"'{self.cfg.model.name}' is not a transformer model; GLUE needs one.")
        if is_local_source(str(task.source)):
            for name in [task.train_file, *task.eval_files]:
                check_file("task.source", Path(task.source) / name, "data file")

    def datamodule(self) -> GlueDataModule:
        return GlueDataModule(self.cfg)

    def module(self) -> SequenceClassifier:
        return SequenceClassifier(self.cfg)

    def predict(self, runner: Runner) -> dict[str, Any]:
        """Label each record of ``predict.input`` (JSONL with the task's text fields, or a TSV in task format)."""
        import torch

        from sagelab.data.batching import pad_collate
        from sagelab.models import load_tokenizer

        path = check_file("predict.input", str(self.cfg.predict.input or ""), "input file")
        records, bad = read_records(path, list(self.cfg.task.text_fields))
        tokenizer = load_tokenizer(self.cfg.model)
        module = runner.load_module().eval()
        collate = pad_collate(tokenizer.pad_token_id)
        out_path = Path(self.cfg.predict.output)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        with open(out_path, "w") as out, torch.no_grad():
            for start in range(0, len(records), int(self.cfg.optim.eval_batch_size)):
                chunk = records[start : start + int(self.cfg.optim.eval_batch_size)]
                texts = [[r[f] for r in chunk] for f in self.cfg.task.text_fields]
                enc = tokenizer(*texts, truncation=True, max_length=int(self.cfg.data.max_length))
                batch = collate([{k: enc[k][i] for k in enc} for i in range(len(chunk))])
                logits = module.model(**batch).logits.float()
                for record, row in zip(chunk, logits):
                    answer = (
                        {"score": row.item()}
                        if row.numel() == 1
                        else {"label": int(row.argmax()), "probability": float(row.softmax(-1).max())}
                    )
                    out.write(json.dumps({**record, **answer}) + "\n")
        for line, why in bad:
            print(f"{path}:{line}: skipped ({why})")
        print(f"wrote {len(records)} predictions to {out_path}")
        runner.log_artifact(out_path)
        return {"predict/records": len(records), "predict/skipped": len(bad)}


def read_records(path: Path, fields: list[str]) -> tuple[list[dict[str, str]], list[tuple[int, str]]]:
    """JSONL records holding ``fields``; bad lines come back as (line number, reason) and are skipped."""
    records, bad = [], []
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                bad.append((line_no, f"not JSON: {err.msg}"))
                continue
            missing = [f for f in fields if not isinstance(record, dict) or not str(record.get(f, "")).strip()]
            if missing:
                bad.append((line_no, f"missing field {missing[0]!r}"))
                continue
            records.append(record)
    return records, bad


# --- Lightning parts (imported lazily through the Task methods above) -----------------

import lightning as L  # noqa: E402  (heavy imports below the cheap Task class)
import torch  # noqa: E402

from sagelab.tasks.hf import HFModule  # noqa: E402


class GlueDataModule(L.LightningDataModule):
    """Train / eval splits of a GLUE task; with ``data.holdout`` the eval split is a slice of the training set
    and the task's own evaluation files become the test split."""

    def __init__(self, cfg: DictConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.splits: dict[str, Any] = {}

    @property
    def has_test_split(self) -> bool:
        return self.cfg.data.get("holdout") is not None

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        from sagelab.data.glue import load_split
        from sagelab.models import load_tokenizer

        task, data = self.cfg.task, self.cfg.data
        self.tokenizer = load_tokenizer(self.cfg.model)
        fields = list(task.text_fields)

        def tokenize(batch: dict[str, list]) -> dict[str, list]:
            return self.tokenizer(*[batch[f] for f in fields], truncation=True, max_length=int(data.max_length))

        source, fmt, hub_config = str(task.source), str(task.format), task.get("hub_config")
        train = load_split(source, fmt, [task.train_file], hub_config, "train")
        if data.train_limit:
            train = train.select(range(min(int(data.train_limit), len(train))))
        evaluation = load_split(source, fmt, list(task.eval_files), hub_config, task.hub_eval_split)
        splits = {"train": train, "eval": evaluation}
        if self.has_test_split:
            splits["train"], splits["eval"] = holdout_split(train, data.holdout, int(data.holdout_seed))
            splits["test"] = evaluation
        for split, dataset in splits.items():
            if split != "train" and data.eval_limit:
                dataset = dataset.select(range(min(int(data.eval_limit), len(dataset))))
            dataset = dataset.map(tokenize, batched=True, remove_columns=fields)
            if "label" in dataset.column_names:
                dataset = dataset.rename_column("label", "labels")
            self.splits[split] = dataset

    def _loader(self, split: str, train: bool) -> torch.utils.data.DataLoader:
        from sagelab.data.batching import loader_for

        return loader_for(self.cfg, self.splits[split], self.tokenizer.pad_token_id, train=train)

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


class SequenceClassifier(HFModule):
    def build_model(self) -> torch.nn.Module:
        from transformers import AutoModelForSequenceClassification

        from sagelab.models import load_model

        num_labels = int(self.cfg.task.num_labels)
        kwargs: dict[str, Any] = {"num_labels": num_labels}
        if num_labels == 1:
            kwargs["problem_type"] = "regression"
        model = load_model(self.cfg.model, AutoModelForSequenceClassification, **kwargs)
        metrics = build_metrics(list(self.cfg.task.metrics), num_labels)
        self.eval_metrics = torch.nn.ModuleDict({"val": metrics, "test": metrics.clone()})
        return model

    def _eval_step(self, stage: str, batch: dict[str, torch.Tensor]) -> None:
        out = self.model(**batch)
        logits = out.logits.float()
        preds = logits.squeeze(-1) if logits.shape[-1] == 1 else logits.argmax(-1)
        self.eval_metrics[stage].update(preds, batch["labels"])
        self.log(f"{stage}/loss", out.loss, sync_dist=True, batch_size=len(batch["input_ids"]))

    def _eval_epoch_end(self, stage: str) -> None:
        metrics = self.eval_metrics[stage]
        self.log_dict({f"{stage}/{k}": v for k, v in metrics.compute().items()}, prog_bar=stage == "val")
        metrics.reset()

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step("val", batch)

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step("test", batch)

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")


def build_metrics(names: list[str], num_labels: int) -> Any:
    import torchmetrics as tm

    if num_labels == 1:
        factories = {"pearson": tm.PearsonCorrCoef, "spearman": tm.SpearmanCorrCoef}
    else:
        kind = "binary" if num_labels == 2 else "multiclass"
        args = {"task": kind, "num_classes": num_labels}
        factories = {
            "accuracy": lambda: tm.Accuracy(**args),
            "f1": lambda: tm.F1Score(**args),
            "mcc": lambda: tm.MatthewsCorrCoef(**args),
        }
    return tm.MetricCollection({name: factories[name]() for name in names})
