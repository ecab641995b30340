"""GLUE sentence(-pair) classification and regression: CoLA, SST-2, MRPC, STS-B.

The reference task family: a config (``conf/task/glue_*.yaml``) names the file format, the text columns,
the label count (1 means regression) and the metrics; this class maps them onto the data module and the
Lightning module, and everything else is the shared runner.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from omegaconf import MISSING

from sagelab.config import ConfigError, check_file
from sagelab.checks import one_of, positive
from sagelab.schema import TaskBlock, checked
from sagelab.tasks.base import Task
from sagelab.tasks.glue.formats import LAYOUTS, is_local_source

if TYPE_CHECKING:
    from sagelab.context import TaskContext
    from sagelab.diagnose import DiagnoseInputs
    from sagelab.inference import Handler
    from sagelab.tasks.glue.data import GlueDataModule
    from sagelab.tasks.glue.module import SequenceClassifier

METRICS = ("accuracy", "f1", "mcc", "pearson", "spearman")


@dataclass(kw_only=True)
class GlueConfig(TaskBlock):
    metrics: list[str] = MISSING
    num_labels: int = checked(MISSING, positive)  # 1 = regression
    text_fields: list[str] = MISSING
    format: str = checked(MISSING, one_of(*LAYOUTS))
    source: str = MISSING  # a folder of GLUE files, or a hub dataset name
    hub_config: Optional[str] = None
    hub_eval_split: str = "validation"
    train_file: str = MISSING
    eval_files: list[str] = MISSING


class GlueTask(Task):
    config_class = GlueConfig
    model_kinds = ("transformer",)
    supports_holdout = True
    serves = True

    def check(self) -> None:
        task = self.cfg.task
        unknown = [m for m in task.metrics if m not in METRICS]
        if unknown:
            raise ConfigError("task.metrics", f"unknown metric {unknown[0]!r}; known: {', '.join(METRICS)}.")
        if self.metric.split("/")[-1] not in task.metrics:
            raise ConfigError("task.metric", f"'{self.metric}' is not one of val/{{{','.join(task.metrics)}}}.")
        if is_local_source(str(task.source)):
            for name in [task.train_file, *task.eval_files]:
                check_file("task.source", Path(task.source) / name, "data file")

    def datamodule(self) -> GlueDataModule:
        from sagelab.tasks.glue.data import GlueDataModule

        cfg, task = self.cfg, self.cfg.task
        return GlueDataModule(
            backbone=cfg.model, source=str(task.source), fmt=str(task.format), text_fields=list(task.text_fields),
            num_labels=int(task.num_labels),
            train_files=[str(task.train_file)], eval_files=[str(f) for f in task.eval_files],
            hub_config=task.get("hub_config"), hub_eval_split=str(task.hub_eval_split), data=cfg.data,
            batch_size=int(cfg.optim.batch_size), eval_batch_size=int(cfg.optim.eval_batch_size), seed=int(cfg.seed),
        )

    def module(self) -> SequenceClassifier:
        from sagelab.tasks.glue.module import SequenceClassifier

        optim = self.cfg.optim
        return SequenceClassifier(
            backbone=self.cfg.model, num_labels=int(self.cfg.task.num_labels), metrics=list(self.cfg.task.metrics),
            lr=optim.lr, weight_decay=optim.weight_decay, warmup_ratio=optim.warmup_ratio,
        )

    def handler(self) -> Handler:
        """Label records holding the task's text fields: ``{"label", "probability"}``, or ``{"score"}`` for
        regression."""
        from sagelab.inference import Handler, text_fields_parser
        from sagelab.models import load_tokenizer
        from sagelab.tasks.glue.module import label_batch

        fields = list(self.cfg.task.text_fields)
        tokenizer = load_tokenizer(self.cfg.model)
        max_length = int(self.cfg.data.max_length)

        def answer(module: Any, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return label_batch(module, tokenizer, [[r[f] for r in records] for f in fields], max_length)

        example = "a gripping, beautifully shot film" if len(fields) == 1 else ["The cat sat.", "A cat was sitting."]
        return Handler(text_fields_parser(fields), answer, example=example, fields=fields)

    def diagnose_problem(self) -> str | None:
        labels = int(self.cfg.task.num_labels)
        if labels == 2:
            return None
        kind = "a regression (task.num_labels 1)" if labels == 1 else f"a {labels}-class task (task.num_labels {labels})"
        return (f"task {self.name} is {kind}; mode=diagnose needs a binary classifier, whose scores are the "
                "probability of one positive class.")

    def diagnose_inputs(self, context: TaskContext) -> DiagnoseInputs:
        """The evaluation files scored by the loaded model (P(label 1)), the training split as training reads it."""
        from sagelab.tasks.glue.diagnose import diagnose_inputs

        return diagnose_inputs(self.cfg, context)
