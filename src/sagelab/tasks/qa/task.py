"""Extractive question answering (SQuAD v1.1): ``python run.py task=qa strategy=ddp``.

Data: :mod:`sagelab.tasks.qa.squad` (article split, run_qa.py windows, cached features). Model: any
``AutoModelForQuestionAnswering`` through the shared :class:`~sagelab.tasks.hf.module.HFModule` recipe.
Evaluation gathers the logits of every window from every rank, orders them by feature index and
post-processes them once, so a 2-process evaluation scores exactly what a 1-process evaluation of the same
checkpoint scores.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from omegaconf import MISSING

from sagelab.config import ConfigError, check_file
from sagelab.checks import one_of, positive
from sagelab.schema import TaskBlock, checked
from sagelab.tasks.base import Task
from sagelab.tasks.qa.squad import looks_like_path

if TYPE_CHECKING:
    from sagelab.context import TaskContext
    from sagelab.inference import Handler
    from sagelab.tasks.qa.data import SquadDataModule
    from sagelab.tasks.qa.module import QuestionAnswerer


@dataclass(kw_only=True)
class QAConfig(TaskBlock):
    metric: str = checked(MISSING, one_of("val/f1", "val/exact_match"))
    source: str = MISSING  # a SQuAD v1.1 JSON file, or a hub dataset name
    hub_splits: list[str] = field(default_factory=lambda: ["validation"])
    train_articles: Optional[int] = checked(None, positive)  # None: every article not held out
    eval_articles: int = checked(MISSING, positive)
    split_seed: Optional[int] = None
    max_seq_length: int = checked(384, positive)
    doc_stride: int = checked(128, positive)
    n_best_size: int = checked(20, positive)
    max_answer_length: int = checked(30, positive)
    cache_dir: Optional[str] = None


class QATask(Task):
    config_class = QAConfig
    model_kinds = ("transformer",)
    serves = True

    def check(self) -> None:
        task = self.cfg.task
        if int(task.doc_stride) >= int(task.max_seq_length):
            raise ConfigError("task.doc_stride", f"({task.doc_stride}) must be smaller than task.max_seq_length "
                              f"({task.max_seq_length}): it is the overlap between windows.")
        if looks_like_path(str(task.source)) or Path(str(task.source)).suffix:
            check_file("task.source", str(task.source), "SQuAD JSON file")

    def datamodule(self) -> SquadDataModule:
        from sagelab.tasks.qa.data import SquadDataModule

        cfg, task = self.cfg, self.cfg.task
        return SquadDataModule(
            backbone=cfg.model, source=str(task.source), hub_splits=list(task.hub_splits),
            train_articles=task.train_articles, eval_articles=int(task.eval_articles), split_seed=task.split_seed,
            max_seq_length=int(task.max_seq_length), doc_stride=int(task.doc_stride), cache_dir=task.cache_dir,
            data=cfg.data, batch_size=int(cfg.optim.batch_size), eval_batch_size=int(cfg.optim.eval_batch_size),
            seed=int(cfg.seed),
        )

    def module(self) -> QuestionAnswerer:
        from sagelab.tasks.qa.module import QuestionAnswerer

        optim, task = self.cfg.optim, self.cfg.task
        return QuestionAnswerer(
            backbone=self.cfg.model, n_best_size=int(task.n_best_size), max_answer_length=int(task.max_answer_length),
            lr=optim.lr, weight_decay=optim.weight_decay, warmup_ratio=optim.warmup_ratio,
        )

    def on_evaluated(self, context: TaskContext, module: Any, metrics: dict[str, float]) -> None:
        """Log the answers and n-best lists of the evaluation as MLflow artifacts."""
        if getattr(module, "last_predictions", None):
            context.tracker.log_dict(module.last_predictions, "qa/predictions.json")
            context.tracker.log_dict(module.last_nbest, "qa/nbest_predictions.json")

    def handler(self) -> Handler:
        """Answer ``{"question", "context"}`` records: the best span, its score and probability, and runners-up."""
        from sagelab.inference import Handler
        from sagelab.models import load_tokenizer
        from sagelab.tasks.qa.module import answer_records

        task, tokenizer = self.cfg.task, load_tokenizer(self.cfg.model)

        def answer(module: Any, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return answer_records(module, tokenizer, records, int(task.max_seq_length), int(task.doc_stride),
                                  int(task.n_best_size), int(task.max_answer_length))

        example = {"question": "Where do the ducks go?", "context": "In winter the ducks fly south to the lakes."}
        return Handler(parse_qa_record, answer, example=example, fields=["question", "context"])

    def predict(self, context: TaskContext) -> dict[str, Any]:
        """Answers go to ``predict.output`` and the MLflow run's ``qa/`` folder."""
        from sagelab.transform import run_transform

        return run_transform(context, self.handler(), artifact_dir="qa", task=self)


def parse_qa_record(value: Any, line: int) -> dict[str, Any] | str:
    """A record needs a non-empty string ``question`` and ``context``; ``id`` is optional."""
    if not isinstance(value, dict):
        return "not a JSON object"
    for name in ("question", "context"):
        if not isinstance(value.get(name), str) or not value[name].strip():
            return f"missing or empty '{name}'"
    return {"line": line, "id": str(value.get("id", f"line{line}")), "question": value["question"],
            "context": value["context"]}
