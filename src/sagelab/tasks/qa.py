"""Extractive question answering (SQuAD v1.1): ``python run.py task=qa strategy=ddp``.

Data: :mod:`sagelab.data.squad` (article split, run_qa.py windows, cached
features). Model: any ``AutoModelForQuestionAnswering`` through the shared
:class:`~sagelab.tasks.hf.HFModule` optimizer recipe. Evaluation gathers the
logits of every window from every rank, orders them by feature index and
post-processes them once (:mod:`sagelab.tasks.qa_postprocess`), so a 2-process
evaluation scores exactly what a 1-process evaluation of the same checkpoint
scores.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

from sagelab.config import ConfigError, check_file, check_positive
from sagelab.data.squad import looks_like_path
from sagelab.tasks.base import Task

if TYPE_CHECKING:
    from sagelab.runner import Runner


class QATask(Task):
    def check(self) -> None:
        task = self.cfg.task
        check_positive(self.cfg, [f"task.{k}" for k in
                                  ("max_seq_length", "doc_stride", "n_best_size", "max_answer_length",
                                   "eval_articles", "train_articles")])
        if int(task.doc_stride) >= int(task.max_seq_length):
            raise ConfigError("task.doc_stride", f"({task.doc_stride}) must be smaller than task.max_seq_length "
                              f"({task.max_seq_length}): it is the overlap between windows.")
        if self.cfg.model.get("kind", "transformer") != "transformer":
            raise ConfigError("model", f"'{self.cfg.model.name}' is not a transformer model; QA needs one.")
        if looks_like_path(str(task.source)) or Path(str(task.source)).suffix:
            check_file("task.source", str(task.source), "SQuAD JSON file")
        if self.metric not in ("val/f1", "val/exact_match"):
            raise ConfigError("task.metric", f"is '{self.metric}'; use val/f1 or val/exact_match.")

    def datamodule(self) -> SquadDataModule:
        return SquadDataModule(self.cfg)

    def module(self) -> QuestionAnswerer:
        return QuestionAnswerer(self.cfg)

    def on_evaluated(self, runner: Runner, module: Any, metrics: dict[str, float]) -> None:
        """Log the answers and n-best lists of the evaluation as MLflow artifacts (rank 0)."""
        if not runner.is_global_zero or not getattr(module, "last_predictions", None):
            return
        runner.log_dict(module.last_predictions, "qa/predictions.json")
        runner.log_dict(module.last_nbest, "qa/nbest_predictions.json")

    def predict(self, runner: Runner) -> dict[str, Any]:
        """Answer each {question, context} record of ``predict.input`` (JSON list or JSONL)."""
        path = check_file("predict.input", str(self.cfg.predict.input or ""), "input file")
        records, bad = read_qa_records(path)
        for line, why in bad:
            print(f"{path}:{line}: skipped ({why})")
        answers = answer_records(self.cfg, runner.load_module(), records) if records else []
        out_path = Path(str(self.cfg.predict.output))
        out_path.parent.mkdir(parents=True, exist_ok=True)
        with open(out_path, "w", encoding="utf-8") as out:
            for answer in answers:
                out.write(json.dumps(answer) + "\n")
                print(f"{path}:{answer['line']}: {answer['answer']!r} "
                      f"(score {answer['score']:.2f}, probability {answer['probability']:.2f})")
        print(f"wrote {len(answers)} answers to {out_path}; skipped {len(bad)} bad record(s)")
        runner.log_artifact(out_path, "qa")
        return {"predict/records": len(answers), "predict/skipped": len(bad)}


# -- predict input ---------------------------------------------------------------
def _json_array_items(text: str) -> list[tuple[int, Any]]:
    """(line number, value) of each element of a top-level JSON array."""
    decoder = json.JSONDecoder()
    pos = text.index("[") + 1
    items = []
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text) or text[pos] == "]":
            return items
        value, end = decoder.raw_decode(text, pos)
        items.append((text.count("\n", 0, pos) + 1, value))
        pos = end


def read_qa_records(path: Path) -> tuple[list[dict[str, Any]], list[tuple[int, str]]]:
    """Valid records (with their ``line``) and (line, reason) for each bad one.

    A ``.json`` file holds one array of records; anything else is JSON Lines. A record
    needs a non-empty string ``question`` and ``context``; ``id`` is optional.
    """
    text = Path(path).read_text(encoding="utf-8")
    raw: list[tuple[int, Any]] = []
    bad: list[tuple[int, str]] = []
    if Path(path).suffix == ".json" and text.lstrip().startswith("["):
        try:
            raw = _json_array_items(text)
        except json.JSONDecodeError as err:
            raise ConfigError("predict.input", f"'{path}' line {err.lineno}: not valid JSON ({err.msg}).") from err
    else:
        for line_no, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                raw.append((line_no, json.loads(line)))
            except json.JSONDecodeError as err:
                bad.append((line_no, f"not JSON: {err.msg}"))
    records = []
    for line_no, record in raw:
        if not isinstance(record, dict):
            bad.append((line_no, "not a JSON object"))
            continue
        problem = next((f"missing or empty '{f}'" for f in ("question", "context")
                        if not isinstance(record.get(f), str) or not record[f].strip()), None)
        if problem:
            bad.append((line_no, problem))
            continue
        records.append({"line": line_no, "id": str(record.get("id", f"line{line_no}")),
                        "question": record["question"], "context": record["context"]})
    return records, sorted(bad)


def answer_records(cfg: DictConfig, module: Any, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Best answer (text, character span, score, probability) for each record, in input order."""
    import torch

    from sagelab.data.batching import pad_collate
    from sagelab.data.squad import MODEL_INPUTS, prepare_eval_features
    from sagelab.models import load_tokenizer
    from sagelab.tasks.qa_postprocess import postprocess_qa_predictions

    task = cfg.task
    tokenizer = load_tokenizer(cfg.model)
    columns = {k: [r[k] for r in records] for k in ("id", "question", "context")}
    feats = prepare_eval_features(columns, tokenizer, int(task.max_seq_length), int(task.doc_stride))
    inputs = [{k: feats[k][i] for k in MODEL_INPUTS if k in feats} for i in range(len(feats["input_ids"]))]
    collate = pad_collate(tokenizer.pad_token_id)
    module = module.eval()
    starts, ends = [], []
    step = int(cfg.optim.eval_batch_size)
    with torch.no_grad():
        for begin in range(0, len(inputs), step):
            chunk = inputs[begin : begin + step]
            out = module.model(**collate(chunk))
            for k, feat in enumerate(chunk):
                n = len(feat["input_ids"])
                starts.append(out.start_logits[k, :n].float().numpy())
                ends.append(out.end_logits[k, :n].float().numpy())
    meta = [{"example_id": e, "offset_mapping": o} for e, o in zip(feats["example_id"], feats["offset_mapping"])]
    _, nbest = postprocess_qa_predictions(
        records, meta, starts, ends, int(task.n_best_size), int(task.max_answer_length)
    )
    results = []
    for record in records:
        best = nbest[record["id"]][0]
        results.append({**record, "answer": best["text"], "start": best["offsets"][0], "end": best["offsets"][1],
                        "score": best["score"], "probability": best["probability"],
                        "alternatives": [p["text"] for p in nbest[record["id"]][1:4]]})
    return results


# --- Lightning parts ---------------------------------------------------------------------

import lightning as L  # noqa: E402  (heavy imports below the cheap Task class, as in glue.py)
import torch  # noqa: E402

from sagelab.tasks.hf import HFModule  # noqa: E402


class _WithFeatureIndex(torch.utils.data.Dataset):
    """Evaluation features plus their position, so logits can be put back in dataset order."""

    def __init__(self, features: Any) -> None:
        self.features = features

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {**self.features[index], "feature_index": index}


class SquadDataModule(L.LightningDataModule):
    def __init__(self, cfg: DictConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.built = False

    def prepare_data(self) -> None:
        # local rank 0 only: tokenise into the datasets cache; other ranks read it in setup()
        self._build()

    def setup(self, stage: str | None = None) -> None:
        self._build()

    def _build(self) -> None:
        if self.built:
            return
        from sagelab.data import squad
        from sagelab.models import load_tokenizer

        task, data = self.cfg.task, self.cfg.data
        cache_dir = str(task.cache_dir) if task.get("cache_dir") else None
        self.tokenizer = load_tokenizer(self.cfg.model)
        examples = squad.load_squad(str(task.source), cache_dir, list(task.get("hub_splits") or ["validation"]))
        train_ex, eval_ex = squad.split_by_article(
            examples, task.get("train_articles"), int(task.eval_articles), task.get("split_seed")
        )
        if data.train_limit:
            train_ex = train_ex.select(range(min(int(data.train_limit), len(train_ex))))
        if data.eval_limit:
            eval_ex = eval_ex.select(range(min(int(data.eval_limit), len(eval_ex))))
        seq, stride = int(task.max_seq_length), int(task.doc_stride)
        self.train_examples = train_ex
        self.train_features = squad.tokenize_split(train_ex, self.tokenizer, seq, stride, train=True)
        eval_features = squad.tokenize_split(eval_ex, self.tokenizer, seq, stride, train=False)
        self.eval_inputs = eval_features.select_columns([c for c in squad.MODEL_INPUTS if c in eval_features.column_names])
        self.eval_meta = eval_features.select_columns(["example_id", "offset_mapping"]).to_list()
        self.eval_examples = eval_ex.select_columns(["id", "context", "answers"]).to_list()
        self.built = True

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        from sagelab.data.batching import loader_for

        return loader_for(self.cfg, self.train_features, self.tokenizer.pad_token_id, train=True)

    def val_dataloader(self) -> torch.utils.data.DataLoader:
        """The single-process batches, dealt out whole to the ranks.

        Each window is then computed in exactly the batch (same companions, same padded
        shape) it has in a 1-process run, so its logits are bit-identical, and so are EM/F1.
        """
        from sagelab.data.batching import loader_for

        lengths = [len(ids) for ids in self.eval_inputs["input_ids"]]
        return loader_for(self.cfg, _WithFeatureIndex(self.eval_inputs), self.tokenizer.pad_token_id, train=False,
                          lengths=lengths)


def _rank_and_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class QuestionAnswerer(HFModule):
    """AutoModelForQuestionAnswering; validation gathers logits and scores SQuAD EM/F1."""

    def build_model(self) -> torch.nn.Module:
        from transformers import AutoModelForQuestionAnswering

        from sagelab.models import load_model
        from sagelab.tasks.qa_postprocess import SquadV1

        # every rank scores the full gathered set, so the metric must not sum across ranks again
        self.val_metric = SquadV1(sync_on_compute=False)
        self._val_rows: list[tuple[int, Any, Any]] = []
        self.last_predictions: dict[str, str] = {}
        self.last_nbest: dict[str, list] = {}
        return load_model(self.cfg.model, AutoModelForQuestionAnswering)

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
            rows, dm.eval_meta, dm.eval_examples, self.val_metric,
            int(self.cfg.task.n_best_size), int(self.cfg.task.max_answer_length),
        )
        # identical on every rank, so sync_dist's mean returns the same number
        self.log_dict({f"val/{k}": v for k, v in scores.items()}, prog_bar=True, sync_dist=True)
        if self.trainer.state.fn == "fit":
            self.log("train/questions_seen", self._questions_seen(), sync_dist=True)
        self.last_predictions, self.last_nbest = preds, nbest

    def _questions_seen(self) -> float:
        """Training questions processed so far (windows seen x questions per window)."""
        dm = self.trainer.datamodule
        windows = self.trainer.global_step * int(self.cfg.optim.batch_size) * self.trainer.world_size \
            * int(self.cfg.trainer.accumulate_grad_batches)
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

    Rows may come in any order and repeat (as gathered from several ranks): they are
    de-duplicated and put back in dataset order first, so the result depends only on
    the logits, never on how evaluation was sharded. Examples none of whose windows
    were evaluated (a partial validation) are left out.
    """
    from sagelab.tasks.qa_postprocess import postprocess_qa_predictions

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
