"""Compose the real config (conf/) and shrink it: tiny random BERT, a few dozen examples, a private MLflow store.

Every test builds its config here, the way ``python run.py <overrides>`` would:

* :func:`compose_config` in process (``tiny=False`` keeps the real sizes, for tasks that shrink themselves);
* the ``make_cfg`` fixture: the same, private to the test's ``tmp_path``;
* the ``run_cli`` fixture: ``run.py`` itself in a subprocess;
* :func:`dispatch_cfg`: run a composed config through the CLI's dispatch on one thread.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

import sagelab.schema  # noqa: F401  (registers the ${root:} resolver and the typed schema before composing)

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TINY = [
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
]


_EMPTY_STORE: list[Path] = []  # this session's migrated, empty MLflow database (made once, on first use)


def mlflow_store(tmp: Path) -> str:
    """The URI of an MLflow store at ``tmp/mlflow.db``, seeded with a copy of an empty, migrated database.

    A new SQLite store runs MLflow's schema migrations on first open (about 3 s here, in every test that has its
    own store); a byte copy of one made once per session opens like any existing store.
    """
    import shutil
    import tempfile

    if not _EMPTY_STORE:
        folder = Path(tempfile.mkdtemp(prefix="sagelab-empty-store-"))
        code = "import mlflow, sys; mlflow.MlflowClient(sys.argv[1]).search_experiments()"
        subprocess.run([sys.executable, "-c", code, f"sqlite:///{folder}/mlflow.db"], check=True,
                       capture_output=True, timeout=300)  # its own process: every connection is closed after
        _EMPTY_STORE.append(folder / "mlflow.db")
    target = Path(tmp) / "mlflow.db"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_EMPTY_STORE[0], target)
    return f"sqlite:///{target}"


def recorded_runs(tmp: Path) -> int:
    """How many MLflow runs the store under ``tmp`` holds (0 when there is no store)."""
    if not (Path(tmp) / "mlflow.db").exists():
        return 0
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp}/mlflow.db")
    experiments = [e.experiment_id for e in client.search_experiments()]
    return len(client.search_runs(experiments)) if experiments else 0


def private_store(tmp: Path) -> list[str]:
    """MLflow store (seeded: :func:`mlflow_store`), artifacts, checkpoints and Hydra's run folder under ``tmp``."""
    return [
        f"logger.tracking_uri={mlflow_store(tmp)}",
        f"logger.artifact_location={tmp}/artifacts",
        f"checkpoint.dir={tmp}/ckpt",
        f"hydra.run.dir={tmp}/out",
    ]


def tiny_overrides(tmp: Path) -> list[str]:
    return [*TINY, *private_store(tmp)]


def compose_config(*overrides: str, tmp: Path | None = None, tiny: bool = True,
                   searchpath: Path | None = None) -> DictConfig:
    """The config ``python run.py <overrides>`` would get (Hydra's own node set aside, as in a real job)."""
    base = [*(TINY if tiny else []), *(private_store(tmp) if tmp else [])]
    extra = [f"hydra.searchpath=[file://{searchpath}]"] if searchpath else []
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[*base, *overrides, *extra], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
        if tmp:
            cfg.output_dir = str(tmp / "out")
    return cfg


def dispatch_cfg(cfg: DictConfig) -> Any:
    """Run ``cfg`` as the CLI would, on one thread (tests share two cores)."""
    import torch

    from sagelab.cli import dispatch

    torch.set_num_threads(1)
    return dispatch(cfg)


@pytest.fixture
def make_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """``make_cfg("task=glue_cola", ...)`` -> the composed, shrunk config, private to this test."""

    def make(*overrides: str) -> DictConfig:
        return compose_config(*overrides, tmp=tmp_path)

    return make


def cli_env() -> dict[str, str]:
    """The environment of a ``run.py`` subprocess: tests/ importable, so ``+callbacks.probe._target_=
    fault_probes.SigtermAt`` and ``model.name_or_path=pkg:fault_probes`` resolve there."""
    path = os.pathsep.join(p for p in (str(ROOT / "tests"), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path}


@pytest.fixture
def run_cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess]:
    """Run ``python run.py`` with the tiny overrides in a subprocess, as a user would."""

    def run(*overrides: str, timeout: float = 300, tiny: bool = True) -> subprocess.CompletedProcess:
        flags = [o for o in overrides if o.startswith("-")]  # e.g. -m must precede the overrides
        args = [*flags, *(tiny_overrides(tmp_path) if tiny else []), *(o for o in overrides if o not in flags)]
        return subprocess.run(
            [sys.executable, str(ROOT / "run.py"), *args],
            cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=cli_env(),
        )

    return run


def mlflow_runs(tmp: Path, experiment: str):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp}/mlflow.db")
    return mlflow.search_runs(experiment_names=[experiment])


from servers import postgres  # noqa: E402,F401  (the session's PostgreSQL cluster, for the tests that ask for it)
