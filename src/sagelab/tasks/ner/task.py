"""Named-entity recognition on SageMaker Ground Truth NER manifests: ``python run.py task=ner``.

Training data are Ground Truth NER *output* manifests (``source`` text + character-offset entities under the
job's label attribute; :mod:`sagelab.tasks.ner.manifest`); WNUT-17 ships converted in ``data/ner/wnut17``.
``mode=train`` fine-tunes any ``AutoModelForTokenClassification`` through the shared
:class:`~sagelab.tasks.hf.module.HFModule` recipe, validates on the dev manifest (``val/f1``: seqeval
entity-level F1) and scores the test manifest once through the runner's test split (``test/*``); the
per-label tables are logged as ``ner/<split>_report.{json,md}``. ``mode=predict`` pre-labels a Ground Truth
*input* manifest: each document comes back with the label attribute filled from the model's entities,
every other key untouched, ready to be the input of the next labelling job.

Cheap to import: manifests are checked here before torch is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from omegaconf import MISSING

from sagelab.checks import positive
from sagelab.config import ConfigError
from sagelab.schema import TaskBlock, checked
from sagelab.tasks.base import Task

if TYPE_CHECKING:
    from sagelab.context import TaskContext
    from sagelab.inference import Handler
    from sagelab.tasks.ner.data import NERDataModule
    from sagelab.tasks.ner.module import TokenClassifier

MANIFEST_KEYS = {"train": "task.train_manifest", "eval": "task.dev_manifest", "test": "task.test_manifest"}
# Ground Truth's LabelAttributeName: letters, digits and inner hyphens, at most 127 characters
ATTRIBUTE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,126}$")


def attribute_name(value: Any) -> str | None:
    if value is None or (ATTRIBUTE.match(str(value)) and not str(value).endswith(("-ref", "-metadata"))):
        return None
    return (f"is {value!r}; a Ground Truth label attribute name has letters, digits and inner hyphens (at most "
            "127) and does not end in -ref or -metadata.")


def label_set(value: Any) -> str | None:
    labels = [str(v) for v in value or []]
    if not labels:
        return "is empty; list the entity labels, e.g. [person, location]."
    bad = next((v for v in labels if not v.strip() or v == "O" or any(c.isspace() for c in v)), None)
    if bad is not None:
        return f"has {bad!r}; a label is a non-blank word without spaces, and not O (the outside tag)."
    if len(set(labels)) < len(labels):
        return f"lists {next(v for v in labels if labels.count(v) > 1)!r} twice."
    return None


@dataclass(kw_only=True)
class NERConfig(TaskBlock):
    train_manifest: str = MISSING          # Ground Truth NER output manifests (JSON Lines)
    dev_manifest: str = MISSING            # the validation split: val/*, what HPO selects on
    test_manifest: Optional[str] = None    # scored once after validation as test/*; null: no test split
    label_attribute: str = checked(MISSING, attribute_name)  # the labelling job's LabelAttributeName
    labels: list[str] = checked(MISSING, label_set)
    stride: int = checked(32, positive)    # tokens shared by consecutive windows of a long document


class NERTask(Task):
    config_class = NERConfig
    model_kinds = ("transformer",)
    #: the run a mode=predict labelling job is named after
    labelling_run: str | None = None

    def manifests(self) -> dict[str, str | None]:
        task = self.cfg.task
        return {"train": str(task.train_manifest), "eval": str(task.dev_manifest),
                "test": str(task.test_manifest) if task.get("test_manifest") else None}

    def check(self) -> None:
        task, max_length = self.cfg.task, int(self.cfg.data.max_length)
        if int(task.stride) >= max_length - 2:
            raise ConfigError("task.stride", f"({task.stride}) must be smaller than data.max_length - 2 "
                              f"({max_length - 2}): it is the overlap between windows of {max_length} tokens.")
        if str(self.cfg.mode) not in ("train", "evaluate"):
            return
        from sagelab.tasks.ner.manifest import read_manifest

        # every line of the data checked now: a bad one stops here, before torch and before an MLflow run
        needed = self.manifests() if self.cfg.mode == "train" else {**self.manifests(), "train": None}
        for split, path in needed.items():
            if path:
                read_manifest(path, str(task.label_attribute), list(task.labels), MANIFEST_KEYS[split])

    def datamodule(self) -> NERDataModule:
        from sagelab.tasks.ner.data import NERDataModule

        cfg, task = self.cfg, self.cfg.task
        return NERDataModule(
            backbone=cfg.model, manifests=self.manifests(), attribute=str(task.label_attribute),
            labels=list(task.labels), stride=int(task.stride), data=cfg.data, batch_size=int(cfg.optim.batch_size),
            eval_batch_size=int(cfg.optim.eval_batch_size), seed=int(cfg.seed),
        )

    def module(self) -> TokenClassifier:
        from sagelab.tasks.ner.module import TokenClassifier

        optim = self.cfg.optim
        return TokenClassifier(backbone=self.cfg.model, labels=list(self.cfg.task.labels), lr=optim.lr,
                               weight_decay=optim.weight_decay, warmup_ratio=optim.warmup_ratio)

    def on_evaluated(self, context: TaskContext, module: Any, metrics: dict[str, float]) -> None:
        """Log (and print) the per-label precision / recall / F1 table of each evaluated split."""
        from sagelab.tasks.ner.module import report_markdown

        for stage, report in getattr(module, "reports", {}).items():
            table = report_markdown(report)
            print(f"\n{self.name} {stage}: entity-level scores per label (seqeval)\n{table}")
            context.tracker.log_dict(report, f"ner/{stage}_report.json")
            context.tracker.log_text(table, f"ner/{stage}_report.md")

    def handler(self) -> Handler:
        """Pre-label Ground Truth input manifest lines (``{"source": text}``) into output-manifest lines."""
        from sagelab.inference import Handler
        from sagelab.models import load_tokenizer
        from sagelab.tasks.ner.manifest import labelled, parse_source
        from sagelab.tasks.ner.module import label_texts

        cfg, task = self.cfg, self.cfg.task
        tokenizer, labels, attribute = load_tokenizer(cfg.model), list(task.labels), str(task.label_attribute)
        job_name = f"sagelab/{self.name}/{self.labelling_run or 'served'}"

        def answer(module: Any, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
            found = label_texts(module, tokenizer, [r["source"] for r in records], int(cfg.data.max_length),
                                int(task.stride), int(cfg.optim.eval_batch_size))
            return [labelled(record, attribute, labels, [e for e, _ in entities], [c for _, c in entities],
                             job_name, human=False) for record, entities in zip(records, found)]

        return Handler(lambda value, line: parse_source(value) or value, answer,
                       example={"source": "Meet me at the Empire State Building on Friday"}, fields=["source"])

    def predict(self, context: TaskContext) -> dict[str, Any]:
        """An output manifest in ``predict.output`` (and the run's ``ner/`` folder); counts the entities found.

        They are counted in the written manifest: a resumed or multi-process transform answers parts of it
        elsewhere (earlier runs, worker processes)."""
        from sagelab.transform import run_transform

        self.labelling_run = context.run_id
        metrics = run_transform(context, self.handler(), artifact_dir="ner", task=self)
        found = count_entities(context.cfg.predict.output, self.cfg.task.label_attribute)
        return {**metrics, "predict/entities": found}


def count_entities(manifest: str, attribute: str) -> int:
    """Entities under ``attribute`` in an output manifest, read line by line."""
    import json

    with open(str(manifest), encoding="utf-8") as lines:
        return sum(len(json.loads(line)[str(attribute)]["annotations"]["entities"]) for line in lines if line.strip())
