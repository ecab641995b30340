"""The NER Lightning module: a token classifier scored with seqeval's entity-level precision, recall and F1.

Evaluation keeps, for each word's first sub-token, the document, word id, how much context the window gave it,
and the gold and predicted tags; at the end of the epoch every rank's rows are gathered, each word takes the
prediction of its best window (:func:`~sagelab.tasks.ner.tagging.merge_windows`) and whole documents are
scored once. seqeval's default mode counts entities as conlleval does, which reproduces the WNUT-17 shared
task's published entity F1 from its submitted outputs (41.86 for the best system).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from sagelab.tasks.hf.module import MODEL_INPUTS, HFModule
from sagelab.tasks.ner.tagging import IGNORE, decode, encode, merge_windows, tag_names

Row = tuple[int, int, int, int, tuple[int, float, int]]  # doc, word, context, window, (pred, probability, gold)


class TokenClassifier(HFModule):
    """``AutoModelForTokenClassification`` over ``O`` / ``B-x`` / ``I-x`` tags; ``reports`` holds the last
    per-label table of each evaluated split (``val``, ``test``)."""

    def __init__(self, backbone: Mapping[str, Any], labels: Sequence[str], lr: float, weight_decay: float = 0.0,
                 warmup_ratio: float = 0.0) -> None:
        self.tag_names = tag_names(labels)
        super().__init__(backbone, lr, weight_decay, warmup_ratio)

    def build_model(self) -> torch.nn.Module:
        from transformers import AutoModelForTokenClassification

        from sagelab.models import load_model

        self._rows: dict[str, list[Row]] = {"val": [], "test": []}
        self.reports: dict[str, dict[str, Any]] = {}
        names = self.tag_names
        return load_model(self.backbone, AutoModelForTokenClassification, num_labels=len(names),
                          id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        """Validation and test alike: the loss, and a row per word start for the epoch's end."""
        out = self.model(**{k: batch[k] for k in MODEL_INPUTS if k in batch}, labels=batch["labels"])
        self.log(f"{self._stage}/loss", out.loss, sync_dist=True, batch_size=len(batch["input_ids"]))
        self._rows[self._stage].extend(window_rows(batch, out.logits))

    test_step = validation_step

    def on_validation_epoch_end(self) -> None:
        """Gather every rank's rows, merge windows, score whole documents; keep the per-label table."""
        stage = self._stage
        rows, self._rows[stage] = self._rows[stage], []
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list[Any] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(gathered, rows)
            rows = [row for part in gathered for row in part]
        metrics, self.reports[stage] = score_words(merge_windows(rows), self.tag_names)
        # every rank scored the same gathered rows, so sync_dist's mean is that same number
        self.log_dict({f"{stage}/{k}": v for k, v in metrics.items()}, prog_bar=stage == "val", sync_dist=True)

    on_test_epoch_end = on_validation_epoch_end

    @property
    def _stage(self) -> str:
        return "test" if self.trainer.testing else "val"


def window_rows(batch: Mapping[str, torch.Tensor], logits: torch.Tensor) -> list[Row]:
    """One row per word start in the batch: (doc, word, context, window, (pred, probability, gold))."""
    probability, pred = logits.float().softmax(-1).max(-1)
    lengths = batch["attention_mask"].sum(-1).tolist()  # right padding: real tokens come first
    words, docs, windows = batch["words"].tolist(), batch["doc"].tolist(), batch["window"].tolist()
    gold = batch["labels"].tolist() if "labels" in batch else None  # predict: no labels
    pred, probability = pred.tolist(), probability.tolist()
    return [(docs[k], words[k][p], min(p, n - 1 - p), windows[k],
             (pred[k][p], probability[k][p], gold[k][p] if gold else IGNORE))
            for k, n in enumerate(lengths) for p in range(n) if words[k][p] != IGNORE]


def score_words(documents: Mapping[int, Mapping[int, tuple[int, float, int]]],
                names: Sequence[str]) -> tuple[dict[str, float], dict[str, Any]]:
    """Entity-level precision / recall / F1 (seqeval, conlleval counting) over whole documents, and the
    per-label table (``{label: {precision, recall, f1-score, support}}`` plus micro/macro/weighted averages)."""
    from seqeval.metrics import classification_report

    gold, pred = [], []
    for doc in sorted(documents):
        words = [documents[doc][w] for w in sorted(documents[doc])]
        gold.append([names[g] for _, _, g in words])
        pred.append([names[p] for p, _, _ in words])
    table = classification_report(gold, pred, output_dict=True, zero_division=0) if gold else {}
    report = {label: {k: float(v) if k != "support" else int(v) for k, v in row.items()} for label, row in table.items()}
    micro = report.get("micro avg", {"precision": 0.0, "recall": 0.0, "f1-score": 0.0, "support": 0})
    metrics = {"f1": micro["f1-score"], "precision": micro["precision"], "recall": micro["recall"],
               "entities": float(micro["support"]), "documents": float(len(gold))}
    return metrics, report


def report_markdown(report: Mapping[str, Mapping[str, float]]) -> str:
    """The per-label table as Markdown (precision, recall, F1 in %, support)."""
    lines = ["| label | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
    for label, row in report.items():
        lines.append(f"| {label} | {100 * row['precision']:.2f} | {100 * row['recall']:.2f} | "
                     f"{100 * row['f1-score']:.2f} | {row['support']} |")
    return "\n".join(lines) + "\n"


def label_texts(module: TokenClassifier, tokenizer: Any, texts: Sequence[str], max_length: int, stride: int,
                batch_size: int) -> list[list[tuple[Any, float]]]:
    """The entities (character spans) and confidences the model finds in each text, texts of any length."""
    from sagelab.tasks.ner.data import token_collate

    windows, spans = encode(tokenizer, texts, max_length, stride)
    collate = token_collate(tokenizer.pad_token_id)
    rows: list[Row] = []
    for start in range(0, len(windows), batch_size):
        batch = collate(windows[start : start + batch_size])
        rows.extend(window_rows(batch, module.predict_step(batch).logits))
    merged = merge_windows(rows)
    names = module.tag_names
    found = []
    for doc, words in enumerate(spans):
        best = merged.get(doc, {})
        found.append(decode(words, {w: names[p[0]] for w, p in best.items()}, {w: p[1] for w, p in best.items()}))
    return found
