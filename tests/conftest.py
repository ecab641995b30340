"""Compose the real config (conf/) and shrink it: tiny random BERT, a few dozen examples, a private MLflow store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def tiny_overrides(tmp: Path) -> list[str]:
    return [
        "model=bert_tiny",
        "instance=local_cpu1",
        "data.train_limit=64",
        "data.eval_limit=32",
        "optim.batch_size=8",
        "optim.eval_batch_size=16",
        "optim.lr=1e-3",
        "trainer.precision=32-true",
        "trainer.enable_progress_bar=false",
        "trainer.log_every_n_steps=2",
        f"logger.tracking_uri=sqlite:///{tmp}/mlflow.db",
        f"logger.artifact_location={tmp}/artifacts",
        f"checkpoint.dir={tmp}/ckpt",
        f"hydra.run.dir={tmp}/out",
    ]


@pytest.fixture
def make_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """``make_cfg("task=glue_cola", ...)`` -> the composed, shrunk config, as `python run.py ...` would see it."""

    def make(*overrides: str) -> DictConfig:
        with initialize_config_dir(str(CONF), version_base="1.3"):
            cfg = compose("config", overrides=[*tiny_overrides(tmp_path), *overrides], return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        with open_dict(cfg):
            cfg.output_dir = str(tmp_path / "out")
        return cfg

    return make


@pytest.fixture
def run_cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess]:
    """Run ``python run.py`` with the tiny overrides in a subprocess, as a user would."""

    def run(*overrides: str, timeout: float = 300, tiny: bool = True) -> subprocess.CompletedProcess:
        flags = [o for o in overrides if o.startswith("-")]  # e.g. -m must precede the overrides
        args = [*flags, *(tiny_overrides(tmp_path) if tiny else []), *(o for o in overrides if o not in flags)]
        return subprocess.run(
            [sys.executable, str(ROOT / "run.py"), *args],
            cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        )

    return run


def mlflow_runs(tmp: Path, experiment: str):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp}/mlflow.db")
    return mlflow.search_runs(experiment_names=[experiment])
