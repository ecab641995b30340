"""The contract between a task and the one runner.

A task family is one module under ``sagelab.tasks`` holding a :class:`Task`
subclass, plus a config under ``conf/task/`` whose ``_target_`` names that
class. The runner never imports a task by name: it instantiates
``cfg.task._target_`` with the composed config and asks it for data, a model
and its metric. Adding a task therefore never touches the runner or the CLI.

Modes: ``train`` (fit, then evaluate), ``evaluate`` and ``predict`` are run by
the runner through :meth:`Task.datamodule`, :meth:`Task.module` and
:meth:`Task.predict`. A task adds its own modes (drift's ``baseline`` and
``monitor``, link prediction's ``recommend``) by returning them from
:meth:`Task.extra_modes`; each receives the live :class:`~sagelab.runner.Runner`
so that it logs into the same MLflow run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from omegaconf import DictConfig

if TYPE_CHECKING:  # heavy imports stay out of start-up
    import lightning as L

    from sagelab.runner import Runner


class Task:
    """Base class of a task family; subclasses override what they support."""

    #: modes this task supports through the runner's Lightning path
    lightning_modes: tuple[str, ...] = ("train", "evaluate", "predict")
    #: whether ``data.holdout`` (validate on part of the training set, test on the evaluation set) applies
    supports_holdout: bool = False

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg

    # -- identity ---------------------------------------------------------
    @property
    def name(self) -> str:
        return str(self.cfg.task.name)

    @property
    def metric(self) -> str:
        """The headline metric as logged, e.g. ``val/mcc``; HPO and compare sort by it."""
        return str(self.cfg.task.metric)

    @property
    def metric_mode(self) -> str:
        return str(self.cfg.task.get("metric_mode", "max"))

    # -- validation (cheap: no torch, no data reads beyond existence) -----
    def check(self) -> None:
        """Raise :class:`sagelab.config.ConfigError` naming the key or file at fault."""

    # -- the Lightning path -----------------------------------------------
    def datamodule(self) -> L.LightningDataModule:
        raise NotImplementedError(f"task {self.name} has no datamodule")

    def module(self) -> L.LightningModule:
        raise NotImplementedError(f"task {self.name} has no LightningModule")

    def predict(self, runner: Runner) -> dict[str, Any]:
        """``mode=predict``: answer ``cfg.predict.input``; return summary metrics."""
        raise NotImplementedError(f"task {self.name} does not support mode=predict")

    def on_evaluated(self, runner: Runner, module: L.LightningModule, metrics: dict[str, float]) -> None:
        """Hook after evaluation on rank 0, e.g. to log prediction artifacts."""

    # -- task-specific modes ----------------------------------------------
    def extra_modes(self) -> dict[str, Callable[[Runner], dict[str, Any]]]:
        return {}

    def modes(self) -> tuple[str, ...]:
        return self.lightning_modes + tuple(self.extra_modes())
