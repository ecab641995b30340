"""The contract between a task family and the one runner.

A task family is a package under ``sagelab.tasks`` (``task.py`` cheap, ``data.py`` / ``module.py`` heavy)
plus ``conf/task/<name>.yaml`` whose ``_target_`` names its :class:`Task` subclass. The CLI validates it,
the runner drives it; neither imports a task by name, so adding a family touches neither.

What a task declares:

* ``config_class`` -- the dataclass of its ``task:`` block (types, unknown keys and per-field value checks,
  like the top-level schema in :mod:`sagelab.schema`);
* ``model_kinds`` -- the ``model.kind`` values it trains (transformer, gnn ...);
* ``lightning_modes`` -- which of train / evaluate / predict it supports through Lightning, and
  ``training_modes``, those of them that train (``train``; link prediction's warm-started ``retrain``);
* :meth:`extra_modes` -- its own modes (drift's ``baseline``, link prediction's ``recommend``);
* :meth:`handler` -- how it answers records (:class:`~sagelab.inference.Handler`), which gives it
  ``mode=predict`` and ``mode=batch_transform``, and ``mode=serve`` when ``serves`` is set;
* :meth:`diagnose_inputs` -- its evaluation set scored by a trained model (and its training texts), which gives
  it ``mode=diagnose`` (:mod:`sagelab.diagnose`); :meth:`diagnose_problem` refuses a configuration it cannot
  diagnose (a regression) in one line.

What it gets: its config at construction, and a :class:`~sagelab.context.TaskContext` in the hooks that run
inside a command (``predict``, ``on_evaluated`` and its own modes) -- never the runner.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from omegaconf import DictConfig, OmegaConf

from sagelab.config import ConfigError, check_file

if TYPE_CHECKING:  # heavy imports stay out of start-up
    import lightning as L

    from sagelab.context import TaskContext
    from sagelab.diagnose import DiagnoseInputs
    from sagelab.inference import Handler

Mode = Callable[["TaskContext"], "dict[str, Any] | None"]


class Task:
    """Base class of a task family; subclasses override what they support."""

    #: the dataclass schema of the ``task:`` block (None: unchecked)
    config_class: ClassVar[type | None] = None
    #: ``model.kind`` values this task can train or run (empty: any)
    model_kinds: ClassVar[tuple[str, ...]] = ()
    #: modes this task supports through the runner's Lightning path
    lightning_modes: ClassVar[tuple[str, ...]] = ("train", "evaluate", "predict")
    #: those of them that fit ``module()`` on ``datamodule()`` through the runner's training path (checkpoints,
    #: resume, evaluation, final model): ``train``, and e.g. a warm-started retraining whose ``module()`` comes
    #: with earlier weights
    training_modes: ClassVar[tuple[str, ...]] = ("train",)
    #: whether ``data.holdout`` (validate on part of the training set, test on the evaluation set) applies
    supports_holdout: ClassVar[bool] = False
    #: whether the task can train in several processes (strategy=ddp/fsdp)
    supports_multiprocess: ClassVar[bool] = True
    #: whether ``mode=serve`` may put :meth:`handler` behind an HTTP endpoint
    serves: ClassVar[bool] = False

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
    def validate(self) -> None:
        """Everything the contract can check from the config, then the task's own :meth:`check`."""
        from sagelab.schema import check_values, typed

        cfg = self.cfg
        if self.config_class is not None:
            check_values(typed(cfg.task, self.config_class, "task."), self.config_class, "task.")
        kind = cfg.model.get("kind")
        if self.model_kinds and kind not in self.model_kinds:
            raise ConfigError("model", f"'{cfg.model.get('name')}' is a {kind} model; task {self.name} takes "
                              f"{' or '.join(self.model_kinds)} models.")
        if cfg.data.get("holdout") is not None and not self.supports_holdout:
            raise ConfigError("data.holdout", f"task {self.name} has no holdout split; leave it null.")
        if not self.supports_multiprocess and (int(cfg.strategy.processes) > 1 or int(cfg.strategy.num_nodes) > 1):
            raise ConfigError("strategy", f"'{cfg.strategy.name}' runs several processes; task {self.name} trains "
                              "in one: use strategy=single.")
        for key in cfg.task.get("check_paths") or []:
            value = OmegaConf.select(cfg, key, default=None)
            if value is not None and Path(str(value)).is_absolute():
                check_file(key, value, "path")
        if str(cfg.mode) == "diagnose" and (problem := self.diagnose_problem()):
            raise ConfigError("mode", problem)
        self.check()

    def check(self) -> None:
        """Cross-field checks the schema cannot express; raise :class:`ConfigError` naming the key."""

    # -- the Lightning path -----------------------------------------------
    def datamodule(self) -> L.LightningDataModule:
        raise NotImplementedError(f"task {self.name} has no datamodule")

    def module(self) -> L.LightningModule:
        raise NotImplementedError(f"task {self.name} has no LightningModule")

    def module_from_state(self, state: dict[str, Any]) -> L.LightningModule:
        """:meth:`module` with a saved ``state_dict`` loaded (``checkpoint.load`` in evaluate, predict and a task's
        own modes). A task whose module is shaped by something fitted to data (a feature encoding, a node count)
        overrides this to take it from ``state`` instead of refitting it, which may give another shape."""
        module = self.module()
        module.load_state_dict(state)
        return module

    def handler(self) -> Handler:
        """How this task answers records: predict, batch transform, serve and the logged MLflow model use it."""
        raise NotImplementedError(f"task {self.name} does not answer records")

    def predict(self, context: TaskContext) -> dict[str, Any]:
        """``mode=predict`` / ``mode=batch_transform``: answer ``cfg.predict.input`` through :meth:`handler`."""
        from sagelab.transform import run_transform

        return run_transform(context, self.handler(), task=self)

    def on_evaluated(self, context: TaskContext, module: L.LightningModule, metrics: dict[str, float]) -> None:
        """Hook after evaluation, on global rank 0 only, e.g. to log prediction artifacts."""

    # -- mode=diagnose ------------------------------------------------------
    def diagnose_inputs(self, context: TaskContext) -> DiagnoseInputs:
        """Opt in to ``mode=diagnose``: the evaluation set scored by ``context.load_module()`` (probability of
        the positive class), its labels and texts, the training texts and labels for the data checks, and
        optionally a token attribution. :mod:`sagelab.diagnose` does the rest, knowing no task."""
        raise NotImplementedError(f"task {self.name} has no diagnose inputs")

    def diagnoses(self) -> bool:
        return type(self).diagnose_inputs is not Task.diagnose_inputs

    def diagnose_problem(self) -> str | None:
        """Why this configuration cannot be diagnosed (e.g. it is a regression), or None; checked by
        :meth:`validate` under ``mode=diagnose``, so the refusal is one line before anything heavy loads."""
        return None

    def diagnose(self, context: TaskContext) -> dict[str, float]:
        from sagelab.diagnose.mode import run_diagnose

        return run_diagnose(context, self.name, lambda: self.diagnose_inputs(context))

    # -- task-specific modes ----------------------------------------------
    def extra_modes(self) -> dict[str, Mode]:
        """Modes beyond the Lightning ones, each ``fn(context)``; the runner dispatches them. The contract's
        opt-in ``diagnose`` is one, so a task that adds its own merges ``super().extra_modes()``."""
        return {"diagnose": self.diagnose} if self.diagnoses() else {}

    def answers_records(self) -> bool:
        return type(self).handler is not Task.handler

    def modes(self) -> tuple[str, ...]:
        inference: tuple[str, ...] = ()
        if self.answers_records() and "predict" in self.lightning_modes:
            inference = ("batch_transform", "serve") if self.serves else ("batch_transform",)
        return self.lightning_modes + inference + tuple(self.extra_modes())
