"""Adding a task family: one config folder + one Python package, nothing else (docs/architecture.md walks through
this file).

The test writes a toy family -- a linear classifier on synthetic points -- outside the project: its package
``toyfamily`` goes on PYTHONPATH, its configs in a folder that ``hydra.searchpath`` adds. Then it drives it
through ``run.py`` exactly as a user would: train (which evaluates), evaluate, predict, and an HPO study.
Nothing in sagelab's runner, CLI, HPO or tracking code knows it exists.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import ROOT, mlflow_runs, private_store

# -- step 1: the cheap part. Config schema, model kinds, how config becomes the Lightning pair, predict ---------
TASK_PY = '''
from dataclasses import dataclass

from omegaconf import MISSING

from sagelab.checks import positive
from sagelab.schema import checked
from sagelab.tasks.base import Task


@dataclass(kw_only=True)
class ToyConfig:                      # the task: block, typed; checks beside the fields
    _target_: str = MISSING
    name: str = MISSING
    metric: str = "val/accuracy"
    metric_mode: str = "max"
    examples: int = checked(512, positive)
    features: int = checked(4, positive)


class ToyTask(Task):
    config_class = ToyConfig
    model_kinds = ("linear",)         # model=<option> files with kind: linear

    def datamodule(self):
        from toyfamily.lightning import ToyData   # heavy imports only when a run needs them

        task = self.cfg.task
        return ToyData(examples=task.examples, features=task.features, batch_size=self.cfg.optim.batch_size,
                       seed=self.cfg.seed)

    def module(self):
        from toyfamily.lightning import ToyClassifier

        return ToyClassifier(features=self.cfg.task.features, hidden=self.cfg.model.hidden, lr=self.cfg.optim.lr)

    def handler(self):                # how to answer records: gives mode=predict and mode=batch_transform
        from sagelab.inference import Handler
        from toyfamily.lightning import label

        def parse(value, line):       # a record, or why it is skipped
            ok = isinstance(value, dict) and isinstance(value.get("x"), list) and len(value["x"]) == self.cfg.task.features
            return value if ok else f"needs 'x', a list of {self.cfg.task.features} numbers"

        return Handler(parse, label, size=lambda record: 1, fields=["x"])
'''

# -- step 2: the Lightning part, built from explicit arguments -------------------------------------------------
LIGHTNING_PY = '''
import lightning as L
import torch
import torchmetrics


def points(examples, features, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(examples, features, generator=g)
    return x, (x.sum(dim=1) > 0).long()           # the label is the sign of the coordinates' sum


class ToyData(L.LightningDataModule):
    def __init__(self, examples, features, batch_size, seed):
        super().__init__()
        self.train_set = torch.utils.data.TensorDataset(*points(examples, features, seed))
        self.val_set = torch.utils.data.TensorDataset(*points(examples // 4, features, seed + 1))
        self.batch_size, self.seed = batch_size, seed

    def train_dataloader(self):
        g = torch.Generator().manual_seed(self.seed)
        return torch.utils.data.DataLoader(self.train_set, self.batch_size, shuffle=True, generator=g)

    def val_dataloader(self):
        return torch.utils.data.DataLoader(self.val_set, 64)


class ToyClassifier(L.LightningModule):
    def __init__(self, features, hidden, lr):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(features, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 2))
        self.lr = lr
        self.accuracy = torchmetrics.Accuracy(task="binary")

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self.net(x), y)
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.accuracy.update(self.net(x).argmax(-1), y)
        self.log("val/accuracy", self.accuracy)

    def predict_step(self, batch, batch_idx=0):   # serving, predict and the HPO latency probe call this
        return self.net(batch[0])

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)


def label(module, records):
    logits = module.predict_step((torch.tensor([r["x"] for r in records], dtype=torch.float32),))
    return [{"label": int(row.argmax())} for row in logits]
'''

# -- step 3: the configs. A task file names the Task class; a model file and a search space are optional -------
CONFIGS = {
    "task/toy.yaml": """
        _target_: toyfamily.task.ToyTask
        name: toy
        metric: val/accuracy
        metric_mode: max
        examples: 512
        features: 4
    """,
    "model/toy_mlp.yaml": """
        kind: linear
        name: toy_mlp
        hidden: 16
    """,
    "search_space/toy.yaml": """
        name: toy
        params:
          lr: {type: loguniform, low: 1.0e-3, high: 1.0e-1, key: optim.lr}
          hidden: {type: choice, values: [4, 16], key: model.hidden}
    """,
}


@pytest.fixture
def toy(tmp_path: Path):
    """Write the family and return a ``run(*overrides)`` that calls run.py with it on the paths."""
    package = tmp_path / "src" / "toyfamily"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('"""A toy task family."""\n')
    (package / "task.py").write_text(TASK_PY)
    (package / "lightning.py").write_text(LIGHTNING_PY)
    for name, text in CONFIGS.items():
        path = tmp_path / "conf" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "src"), os.environ.get("PYTHONPATH", "")])}
    common = ["task=toy", "model=toy_mlp", f"hydra.searchpath=[file://{tmp_path}/conf]", "instance=local_cpu1",
              "trainer.max_epochs=3", "trainer.precision=32-true", "trainer.enable_progress_bar=false",
              "optim.lr=0.05", "optim.batch_size=32", *private_store(tmp_path)]

    def run(*overrides: str) -> subprocess.CompletedProcess:
        result = subprocess.run([sys.executable, str(ROOT / "run.py"), *common, *overrides], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
        return result

    return run


def test_a_new_family_trains_evaluates_predicts_and_is_searched(toy, tmp_path: Path) -> None:
    toy()  # train: fit, then evaluate, then the final model as an MLflow artifact
    runs = mlflow_runs(tmp_path, "toy")
    assert len(runs) == 1 and runs.iloc[0]["status"] == "FINISHED"
    trained = runs.iloc[0]["metrics.val/accuracy"]
    assert trained > 0.85  # the sign of a sum is easy: a learner that fails this is broken

    toy("mode=evaluate")  # the same overrides find the trained model in their checkpoint folder
    evaluated = mlflow_runs(tmp_path, "toy").query("`tags.mode` == 'evaluate'").iloc[0]
    assert evaluated["metrics.val/accuracy"] == pytest.approx(trained)

    records = tmp_path / "points.jsonl"
    records.write_text('{"x": [1, 1, 1, 1]}\n{"x": [-1, -2, -1, -1]}\n{"x": "no"}\n')
    output = tmp_path / "predictions.jsonl"
    result = toy("mode=predict", f"predict.input={records}", f"predict.output={output}")
    answers = [json.loads(line) for line in output.read_text().splitlines()]
    assert [a["label"] for a in answers] == [1, 0]
    assert f"{records}:3: skipped (needs 'x', a list of 4 numbers)" in result.stdout

    toy("hpo=random", "search_space=toy", "hpo.max_trials=2", "hpo.max_resource=1", f"hpo.dir={tmp_path}/hpo",
        f"hpo.experiment_dir={tmp_path}/best")
    (study,) = (tmp_path / "hpo").iterdir()
    trials = [json.loads(p.read_text()) for p in study.glob("trials/*/result.json")]
    assert len(trials) == 2
    assert all(t["history"][-1]["objectives"]["latency_ms"] > 0 for t in trials)  # measured via predict_step
    assert list((tmp_path / "best").glob("*.yaml"))  # the best configuration, ready for +experiment=


def test_the_contract_checks_a_new_family_config(toy, tmp_path: Path) -> None:
    """The schema a family declares is enforced with sagelab's one-line errors; so are its model kinds."""
    for override, message in (("task.examples=abc", "task.examples: wrong type"),
                              ("task.examples=0", "task.examples: must be greater than zero"),
                              ("model=minilm", "model: 'minilm' is a transformer model; task toy takes linear")):
        with pytest.raises(AssertionError) as failed:
            toy(override)
        assert message in str(failed.value)
