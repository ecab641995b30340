"""The QA Lightning module: validation gathers every window's logits from every rank and scores SQuAD EM/F1."""

from __future__ import annotations

from typing import Any, Mapping

import torch

from sagelab.tasks.hf.module import HFModule


def _rank_and_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class QuestionAnswerer(HFModule):
    """AutoModelForQuestionAnswering; validation gathers logits and scores SQuAD EM/F1."""

    def __init__(self, backbone: Mapping[str, Any], n_best_size: int, max_answer_length: int, lr: float,
                 weight_decay: float = 0.0, warmup_ratio: float = 0.0) -> None:
        self.n_best_size, self.max_answer_length = int(n_best_size), int(max_answer_length)
        super().__init__(backbone, lr, weight_decay, warmup_ratio)

    def build_model(self) -> torch.nn.Module:
        from transformers import AutoModelForQuestionAnswering

        from sagelab.models import load_model
        from sagelab.tasks.qa.postprocess import SquadV1

        # every rank scores the full gathered set, so the metric must not sum across ranks again
        self.val_metric = SquadV1(sync_on_compute=False)
        self._val_rows: list[tuple[int, Any, Any]] = []
        self.last_predictions: dict[str, str] = {}
        self.last_nbest: dict[str, list] = {}
        return load_model(self.backbone, AutoModelForQuestionAnswering)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        index = batch.pop("feature_index").tolist()
        out = self.model(**batch)
        lengths = batch["attention_mask"].sum(-1).tolist()  # right padding: real tokens come first
        start, end = out.start_logits.float().cpu().numpy(), out.end_logits.float().cpu().numpy()
        for k, (i, n) in enumerate(zip(index, lengths)):
            self._val_rows.append((i, start[k, :n].copy(), end[k, :n].copy()))

    def on_validation_epoch_end(self) -> None:
        rows, self._val_rows = self._val_rows, []
        if _rank_and_world()[1] > 1:
            gathered: list[Any] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(gathered, rows)
            rows = [row for part in gathered for row in part]
        dm = self.trainer.datamodule
        scores, preds, nbest = score_rows(
            rows, dm.eval_meta, dm.eval_examples, self.val_metric, self.n_best_size, self.max_answer_length)
        # identical on every rank, so sync_dist's mean returns the same number
        self.log_dict({f"val/{k}": v for k, v in scores.items()}, prog_bar=True, sync_dist=True)
        if self.trainer.state.fn == "fit":
            self.log("train/questions_seen", self._questions_seen(), sync_dist=True)
        self.last_predictions, self.last_nbest = preds, nbest

    def _questions_seen(self) -> float:
        """Training questions processed so far (windows seen x questions per window)."""
        dm, trainer = self.trainer.datamodule, self.trainer
        windows = trainer.global_step * dm.batch_size * trainer.world_size * trainer.accumulate_grad_batches
        return float(min(windows, 10**12) * len(dm.train_examples) / max(1, len(dm.train_features)))


def score_rows(
    rows: list[tuple[int, Any, Any]],
    eval_meta: list[dict[str, Any]],
    eval_examples: list[dict[str, Any]],
    metric: Any,
    n_best_size: int,
    max_answer_length: int,
) -> tuple[dict[str, float], dict[str, str], dict[str, list]]:
    """EM/F1, answers and n-best from (feature index, start logits, end logits) rows.

    Rows may come in any order and repeat (as gathered from several ranks): they are de-duplicated and put
    back in dataset order first, so the result depends only on the logits, never on how evaluation was
    sharded. Examples none of whose windows were evaluated (a partial validation) are left out.
    """
    from sagelab.tasks.qa.postprocess import postprocess_qa_predictions

    by_index = {i: (s, e) for i, s, e in rows}
    order = sorted(by_index)
    meta = [eval_meta[i] for i in order]
    covered = {m["example_id"] for m in meta}
    examples = [ex for ex in eval_examples if ex["id"] in covered]
    preds, nbest = postprocess_qa_predictions(
        examples, meta, [by_index[i][0] for i in order], [by_index[i][1] for i in order],
        n_best_size, max_answer_length,
    )
    metric.reset()
    metric.update([preds[ex["id"]] for ex in examples], [ex["answers"]["text"] for ex in examples])
    scores = {k: float(v) for k, v in metric.compute().items()}
    metric.reset()
    scores["questions"] = float(len(examples))
    return scores, preds, nbest


def answer_records(module: QuestionAnswerer, tokenizer: Any, records: list[dict[str, Any]], max_seq_length: int,
                   doc_stride: int, n_best_size: int, max_answer_length: int) -> list[dict[str, Any]]:
    """Best answer (text, character span, score, probability) for each record, in input order.

    Records are keyed by their position, not their ``id``: a served batch mixes requests whose ids may repeat."""
    from sagelab.data.batching import pad_collate
    from sagelab.tasks.qa.postprocess import postprocess_qa_predictions
    from sagelab.tasks.qa.squad import MODEL_INPUTS, prepare_eval_features

    records = [{"id": str(i), "question": r["question"], "context": r["context"]} for i, r in enumerate(records)]
    columns = {k: [r[k] for r in records] for k in ("id", "question", "context")}
    feats = prepare_eval_features(columns, tokenizer, max_seq_length, doc_stride)
    inputs = [{k: feats[k][i] for k in MODEL_INPUTS if k in feats} for i in range(len(feats["input_ids"]))]
    collate = pad_collate(tokenizer.pad_token_id)
    starts, ends = [], []
    step = max(1, len(records))  # as many windows a forward pass as the caller's batch has records
    for begin in range(0, len(inputs), step):
        chunk = inputs[begin : begin + step]
        out = module.predict_step(collate(chunk))
        for k, feat in enumerate(chunk):
            n = len(feat["input_ids"])
            starts.append(out.start_logits[k, :n].float().numpy())
            ends.append(out.end_logits[k, :n].float().numpy())
    meta = [{"example_id": e, "offset_mapping": o} for e, o in zip(feats["example_id"], feats["offset_mapping"])]
    _, nbest = postprocess_qa_predictions(records, meta, starts, ends, n_best_size, max_answer_length)
    results = []
    for record in records:
        best = nbest[record["id"]][0]
        results.append({"answer": best["text"], "start": best["offsets"][0], "end": best["offsets"][1],
                        "score": best["score"], "probability": best["probability"],
                        "alternatives": [p["text"] for p in nbest[record["id"]][1:4]]})
    return results
