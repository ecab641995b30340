"""The GLUE Lightning module: a sequence classifier (or regressor, ``num_labels=1``) scored by torchmetrics."""

from __future__ import annotations

from typing import Any, Mapping

import torch

from sagelab.tasks.hf.module import HFModule


class SequenceClassifier(HFModule):
    def __init__(self, backbone: Mapping[str, Any], num_labels: int, metrics: list[str], lr: float,
                 weight_decay: float = 0.0, warmup_ratio: float = 0.0) -> None:
        self.num_labels, self.metric_names = int(num_labels), list(metrics)
        super().__init__(backbone, lr, weight_decay, warmup_ratio)

    def build_model(self) -> torch.nn.Module:
        from transformers import AutoModelForSequenceClassification

        from sagelab.models import load_model

        kwargs: dict[str, Any] = {"num_labels": self.num_labels}
        if self.num_labels == 1:
            kwargs["problem_type"] = "regression"
        model = load_model(self.backbone, AutoModelForSequenceClassification, **kwargs)
        metrics = build_metrics(self.metric_names, self.num_labels)
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


def label_batch(module: SequenceClassifier, tokenizer: Any, texts: list[list[str]], max_length: int) -> list[dict]:
    """``{"label", "probability"}`` (or ``{"score"}`` for regression) for one batch of texts (one list per field)."""
    from sagelab.data.batching import pad_collate

    enc = tokenizer(*texts, truncation=True, max_length=max_length)
    batch = pad_collate(tokenizer.pad_token_id)([{k: enc[k][i] for k in enc} for i in range(len(texts[0]))])
    logits = module.predict_step(batch).logits.float()
    if logits.shape[-1] == 1:
        return [{"score": row.item()} for row in logits]
    return [{"label": int(row.argmax()), "probability": float(row.softmax(-1).max())} for row in logits]


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
