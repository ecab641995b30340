"""MLflow conventions: one experiment per task, one run per command, every run leaves a record.

A run carries the composed config (``config.yaml`` artifact and flattened
params with the same names across runs, so MLflow's compare view and
``mlflow.search_runs`` line them up), tags for git commit, instance, model and
strategy, per-step and per-epoch metrics (through :class:`RunLogger`, a
Lightning logger), cost, the final model (``checkpoint/final.ckpt``, and the
MLflow model ``model`` of :mod:`sagelab.mlflow_model`), and its end state: FINISHED, KILLED
(interrupted; re-running the command resumes it) or FAILED with the error text.
Only global rank 0 talks to MLflow.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

from omegaconf import DictConfig, OmegaConf

from sagelab.config import PROJECT_ROOT, ConfigError, resolved
from sagelab.faults import CannotWrite

T = TypeVar("T")


def flatten(cfg: DictConfig) -> dict[str, str]:
    """Dotted keys -> values (as MLflow params) of the resolved config."""
    flat: dict[str, str] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(f"{prefix}.{key}" if prefix else str(key), value)
        else:
            flat[prefix] = str(node)[:6000]

    walk("", resolved(cfg))
    return flat


def git_commit() -> str | None:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}{'-dirty' if dirty else ''}" if commit else None


def connect(cfg: DictConfig) -> str:
    """Point MLflow at ``logger.tracking_uri``; create the experiment (artifacts under mlruns/) if new."""
    import mlflow
    from filelock import FileLock

    uri = str(cfg.logger.tracking_uri)
    lock: Any = contextlib.nullcontext()
    db = sqlite_path(uri)
    if db is not None:
        try:  # here, the refusal names the file; from inside SQLite it would be "unable to open database file"
            db.parent.mkdir(parents=True, exist_ok=True)
            if not db.exists():
                with open(db, "ab"):
                    pass
            elif not os.access(db, os.W_OK):
                raise PermissionError(13, "Permission denied", str(db))
            # never open and close an existing store here: closing any descriptor of the file drops the POSIX
            # locks this process's SQLite connections hold on it (a second connect in one process, e.g. a shared
            # study's worker re-opening the parent run), and another process may then reset the WAL under them:
            # "database disk image is malformed"
        except OSError as err:
            raise CannotWrite(err.filename or db, err) from err
        # Jobs started together (the joblib launcher, HPO workers) would otherwise race to create the schema
        # of a new store (alembic: "expected to match one row") or the same experiment (UNIQUE constraint).
        lock = FileLock(f"{db}.lock")
    with lock:
        if db is not None:
            write_ahead_log(db)
        mlflow.set_tracking_uri(uri)
        name = str(cfg.logger.experiment_name)
        experiment = retry_locked(mlflow.get_experiment_by_name, name)
        if experiment is not None:
            return experiment.experiment_id
        # a tracking server keeps artifacts where it was told to (--artifacts-destination), for every client
        location = None if uri.startswith(("http://", "https://")) else \
            (Path(str(cfg.logger.artifact_location)) / name).resolve().as_uri()
        try:
            return retry_locked(mlflow.create_experiment, name, artifact_location=location)
        except Exception:  # another process (a worker of the same study) created it first: no file lock on a server
            experiment = mlflow.get_experiment_by_name(name)
            if experiment is None:
                raise
            return experiment.experiment_id


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI (None for other stores)."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///"):].split("?", 1)[0])


def write_ahead_log(db: Path) -> None:
    """Put the store in WAL mode (a setting of the file, kept by every later connection of any process).

    In SQLite's default rollback journal a writer waits for every reader and the reader that then wants to
    write gives up at once with "database is locked"; with the write-ahead log readers never block the writer,
    and writers queue on MLflow's busy timeout. (Not for stores on network file systems, which WAL does not
    support.)
    """
    import sqlite3

    with contextlib.closing(sqlite3.connect(db, timeout=60)) as con:
        con.execute("PRAGMA journal_mode=WAL")


LOCKED_PATIENCE_S = 120.0  # how long a call keeps trying while other processes hold the store


def retry_locked(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``call(*args, **kwargs)``, tried again with backoff while SQLite answers "database is locked".

    WAL and the busy timeout make this rare; a writer that still loses the race gets its transaction rolled
    back whole, so trying the same call again neither loses nor doubles what it logs.
    """
    delay, waited = 0.05, 0.0
    while True:
        try:
            return call(*args, **kwargs)
        except Exception as err:  # MLflow wraps sqlite3.OperationalError in its own exception
            if "database is locked" not in str(err) or waited >= LOCKED_PATIENCE_S:
                raise
        time.sleep(delay)
        waited += delay
        delay = min(2 * delay, 2.0)


class RunRecord:
    """The MLflow run of one command, opened (or re-opened on resume) on rank 0 only."""

    def __init__(self, cfg: DictConfig, run_id: str | None, is_global_zero: bool, tags: dict[str, str] | None = None,
                 mark_resumed: bool = True):
        """``run_id``: re-open that run (RUNNING again; tagged ``sagelab.resumed`` unless ``mark_resumed`` is
        false, as for a shared study's parent that another worker opened)."""
        self.cfg = cfg
        self.active = is_global_zero
        self.run_id = run_id
        self.client: Any = None
        self.metrics: dict[str, float] = {}  # the latest value of each metric this command logged (every rank)
        if not self.active:
            return
        from mlflow import MlflowClient

        experiment_id = connect(cfg)
        self.client = MlflowClient()
        if run_id is None:
            base_tags = {
                "mlflow.source.name": "run.py",
                "mlflow.source.type": "LOCAL",
                "mlflow.user": os.environ.get("USER", "sagelab"),
                "sagelab.command": " ".join(["run.py", *sys.argv[1:]])[:5000],
                "task": str(cfg.task.name),
                "model": str(cfg.model.name),
                "strategy": str(cfg.strategy.name),
                "instance": str(cfg.instance.name),
                "mode": str(cfg.mode),
            }
            if cfg.logger.get("run_name"):
                base_tags["mlflow.runName"] = str(cfg.logger.run_name)
            if cfg.logger.get("parent_run_id"):  # set at creation, so even a trial that crashes early is nested
                base_tags["mlflow.parentRunId"] = str(cfg.logger.parent_run_id)
            commit = git_commit()
            if commit:
                base_tags["mlflow.source.git.commit"] = commit
            run = retry_locked(self.client.create_run, experiment_id, tags={**base_tags, **(tags or {})})
            self.run_id = run.info.run_id
            try:
                self.log_params(flatten(cfg))
                self.log_text(OmegaConf.to_yaml(resolved(cfg)), "config.yaml")
            except BaseException:  # e.g. an artifact folder that cannot be written: no run left RUNNING
                with contextlib.suppress(Exception):
                    self.client.set_terminated(self.run_id, "FAILED")
                raise
        else:
            self._on_rank_zero("update_run", "RUNNING")
            if mark_resumed:
                self.set_tag("sagelab.resumed", "true")

    def log_params(self, params: dict[str, Any]) -> None:
        if not self.active:
            return
        from mlflow.entities import Param

        existing = retry_locked(self.client.get_run, self.run_id).data.params
        fresh = [Param(k, str(v)) for k, v in params.items() if k not in existing]
        for start in range(0, len(fresh), 100):
            self._on_rank_zero("log_batch", [], fresh[start : start + 100])

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.metrics.update({k: float(v) for k, v in metrics.items()})
        if not self.active:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._on_rank_zero("log_batch", [Metric(k, float(v), now, step or 0) for k, v in metrics.items()])

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        if not self.active:
            return
        path = Path(path)
        self._on_rank_zero("log_artifacts" if path.is_dir() else "log_artifact", str(path), artifact_path)

    def log_text(self, text: str, filename: str) -> None:
        self._on_rank_zero("log_text", text, filename)

    def log_dict(self, obj: Any, filename: str) -> None:
        self._on_rank_zero("log_dict", obj, filename)

    def log_figure(self, figure: Any, filename: str) -> None:
        self._on_rank_zero("log_figure", figure, filename)

    def set_tag(self, key: str, value: str) -> None:
        self._on_rank_zero("set_tag", key, value)

    def _on_rank_zero(self, method: str, *args: Any) -> None:
        """``MlflowClient.<method>(run_id, *args)`` on the process that owns the run; a no-op elsewhere."""
        if self.active:
            retry_locked(getattr(self.client, method), self.run_id, *args)

    def finish(self, status: str, error: str | None = None) -> None:
        """End the run: FINISHED, KILLED or FAILED (then the error text is kept as tag and artifact)."""
        if not self.active:
            return
        if error:
            self.set_tag("error", error[-5000:])
            self.log_text(error, "error.txt")
        self._on_rank_zero("set_terminated", status)


RUN_ID = re.compile(r"^[0-9a-f]{32}$")
#: where a training run keeps final.ckpt; ``model/final.ckpt`` is where runs logged it before the MLflow model
CHECKPOINT_ARTIFACTS = ("checkpoint/final.ckpt", "model/final.ckpt")
MODEL_URI = re.compile(r"^(?:runs:/(?P<run>[0-9a-f]{32})/(?P<path>[^/].*)"
                       r"|models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[\w-]+)))$")


def looks_like_run_id(ref: str) -> bool:
    return bool(RUN_ID.match(ref))


def resolve_artifact(key: str, ref: str, tracking_uri: str, artifact_path: str | tuple[str, ...]) -> Path:
    """``ref`` as a local path: an existing file or folder as it is, an MLflow run id as that run's
    ``artifact_path`` downloaded (the first of several that exists). Anything else is a :class:`ConfigError`
    on ``key``."""
    if Path(ref).exists():
        return Path(ref)
    if not looks_like_run_id(ref):
        raise ConfigError(key, f"'{ref}' is neither an existing file or folder nor an MLflow run id.")
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    paths = (artifact_path,) if isinstance(artifact_path, str) else artifact_path
    for path in paths:
        try:
            return Path(mlflow.artifacts.download_artifacts(run_id=ref, artifact_path=path))
        except Exception as err:  # MLflow raises its own exception types per store
            error = err
    raise ConfigError(key, f"MLflow run '{ref}' has no artifact {' or '.join(paths)} in {tracking_uri} "
                      f"({type(error).__name__}).") from error


def resolve_model(key: str, ref: str, tracking_uri: str) -> Path:
    """``checkpoint.load`` as a local path: a .ckpt file, or the folder of an MLflow model.

    ``ref`` is a path, ``runs:/<run id>/<path>``, ``models:/<name>/<version>``, ``models:/<name>@<alias>``, or a
    run id: that run's MLflow model ``model`` if it has one, else its final.ckpt."""
    if Path(ref).exists():
        return Path(ref)
    if ref.startswith(("runs:/", "models:/")):
        return _download_model(key, ref, tracking_uri)
    if looks_like_run_id(ref):
        with contextlib.suppress(ConfigError):
            return _download_model(key, f"runs:/{ref}/model", tracking_uri)
    return resolve_artifact(key, ref, tracking_uri, CHECKPOINT_ARTIFACTS)


def _download_model(key: str, uri: str, tracking_uri: str) -> Path:
    """An MLflow model URI, checked piece by piece so that each fault is one line, then downloaded."""
    import mlflow
    from mlflow import MlflowClient

    match = MODEL_URI.match(uri)
    if not match:
        raise ConfigError(key, f"'{uri}' is not runs:/<run id>/<path>, models:/<name>/<version> or "
                          "models:/<name>@<alias>.")
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    client, name = MlflowClient(tracking_uri, tracking_uri), match["name"]
    try:
        if match["run"]:
            client.get_run(match["run"])
        else:
            client.get_registered_model(name)
    except Exception as err:  # MLflow raises its own exception types per store
        what = f"MLflow run '{match['run']}'" if match["run"] else f"registered model '{name}'"
        missing = getattr(err, "error_code", "") == "RESOURCE_DOES_NOT_EXIST"
        found = "" if missing else f" ({type(err).__name__}: {str(err)[:200]})"  # not "not found": say what
        raise ConfigError(key, f"no {what} in {tracking_uri}{found}.") from None
    try:
        if match["version"]:
            client.get_model_version(name, match["version"])
        elif match["alias"]:
            client.get_model_version_by_alias(name, match["alias"])
    except Exception:
        which = f"version {match['version']}" if match["version"] else f"alias '{match['alias']}'"
        raise ConfigError(key, f"registered model '{name}' has no {which} in {tracking_uri}.") from None
    try:
        path = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    except Exception as err:  # MLflow raises its own exception types per store
        raise ConfigError(key, f"'{uri}' cannot be downloaded from {tracking_uri} ({type(err).__name__}).") from err
    if not (path / "MLmodel").exists():
        raise ConfigError(key, f"'{uri}' is not an MLflow model (no MLmodel file).")
    return path


def lightning_logger(record: RunRecord) -> Any:
    """A Lightning MLFlowLogger that writes into ``record``'s run and leaves its end state to the runner."""
    from lightning.pytorch.loggers import MLFlowLogger

    class RunLogger(MLFlowLogger):
        def finalize(self, status: str = "success") -> None:  # the runner sets the final status
            pass

    return RunLogger(
        experiment_name=str(record.cfg.logger.experiment_name),
        tracking_uri=str(record.cfg.logger.tracking_uri),
        run_id=record.run_id,
        log_model=False,
    )
