"""The one Lightning runner: every task trains, evaluates and predicts through here.

Read top to bottom, a command does this:

1. pick the hardware: processes, threads and precision from the instance profile and what this machine
   runs natively (``auto``), printed once and tagged on the run;
2. find its checkpoint folder; if an earlier run of the same command was interrupted, resume it (same
   checkpoint, same MLflow run);
3. open the MLflow run (rank 0 only), build the task's :class:`~sagelab.context.TaskContext` and run the
   mode: ``train`` fits then evaluates, ``evaluate`` loads a checkpoint, ``predict`` / ``batch_transform``
   stream a file through the task's handler, ``serve`` puts it behind HTTP, and a task's own modes get the
   context;
4. log metrics, cost and the final model (checkpoint and MLflow model), and close the run as FINISHED, KILLED or FAILED.

SIGTERM anywhere in this (:mod:`sagelab.faults`) ends the command through the same ``finally``: the run is
closed KILLED, the state file stays resumable, and the exit status is 143.

The runner knows the :class:`~sagelab.tasks.base.Task` contract and nothing about any task.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from sagelab import cluster, faults, hardware, instances, launch, progress, tracking
from sagelab.config import ConfigError
from sagelab.context import TaskContext
from sagelab.run_state import resume_point, write_state
from sagelab.safe_io import load_checkpoint
from sagelab.tasks.base import Task

class Runner:
    def __init__(self, cfg: DictConfig, task: Task) -> None:
        self.cfg = cfg
        self.task = task
        self.output_dir = Path(cfg.get("output_dir") or _hydra_output_dir())
        self.checkpoint_dir = Path(str(cfg.checkpoint.dir))
        self.precision = hardware.resolve_precision(str(cfg.trainer.precision), str(cfg.instance.accelerator))
        self.threads = hardware.resolve_threads(cfg.instance.threads, instances.processes(cfg))
        self.record: tracking.RunRecord | None = None
        self._interrupted: str | None = None

    # -- the whole command --------------------------------------------------------
    def run(self) -> dict[str, float]:
        import torch

        _quiet_known_noise()
        progress.configure(bool(self.cfg.trainer.enable_progress_bar))
        instances.check_hardware(self.cfg)
        torch.set_num_threads(int(self.threads.value))
        if self.own_mode:  # the task runs it without Lightning: importing Lightning would be most of its time
            seed_without_lightning(int(self.cfg.seed))
        else:
            import lightning as L

            cluster.check(self.cfg)  # started by torchrun / SLURM: the config must describe their world
            L.seed_everything(int(self.cfg.seed), workers=True, verbose=False)
        launch.keep_children_out_of_the_sweep(self.cfg)

        launcher_env = launch.launcher_env()
        with faults.sigterm_raises() as sigterm:
            started, failure = time.monotonic(), None
            try:
                resume_ckpt, run_id = resume_point("train" if self.trains else str(self.cfg.mode),
                                                   str(self.cfg.checkpoint.resume), self.checkpoint_dir,
                                                   self.is_global_zero)
                with sigterm.deferred():  # the MLflow run is opened whole, so it can always be closed
                    self.record = tracking.RunRecord(self.cfg, run_id, self.is_global_zero)
                self._announce_hardware()
                self._run_mode(resume_ckpt)
            except BaseException as err:  # recorded in the run, then on to the CLI
                failure = faults.as_terminated(err)
                if failure is err:
                    raise
                raise failure from err
            finally:
                wall = time.monotonic() - started
                with sigterm.deferred(raise_after=False):
                    faults.close_run(self.record, failure, {"wall_time_s": wall,
                                                            "cost_usd": instances.cost_usd(self.cfg, wall)},
                                     status="KILLED" if self._interrupted else "FINISHED")
                    if isinstance(failure, faults.Terminated):
                        self._say_stopped()
                launch.leave_process_group(launcher_env)
        self._print_summary(wall)
        return dict(self.record.metrics)

    def _run_mode(self, resume_ckpt: Path | None) -> None:
        context = TaskContext(self.cfg, self.output_dir, self.record, self.load_module, self.is_global_zero,
                              self.precision.value)
        mode = str(self.cfg.mode)
        extra = self.task.extra_modes()
        if mode in extra:
            self.record.log_metrics(extra[mode](context) or {})
        elif self.trains:
            self._train(context, resume_ckpt)
        elif mode == "evaluate":
            self.evaluate(context, self.load_module(), self.task.datamodule())
        elif mode in ("predict", "batch_transform"):  # one streamed transform; predict is its small-input name
            self.record.log_metrics(self.task.predict(context) or {})
        elif mode == "serve":
            from sagelab.serving import serve

            self.record.log_metrics(serve(context, self.task.handler()))

    def _say_stopped(self) -> None:
        if not self.is_global_zero:
            return
        where = f"MLflow run {self.run_id} ended KILLED" if self.run_id else "no MLflow run was opened"
        if self.trains:
            last = self.checkpoint_dir / "last.ckpt"
            where += (f"; checkpoint {last}: re-run the same command to resume" if last.exists()
                      else "; no checkpoint yet: re-running the same command starts again")
        print(f"sagelab: stopped by SIGTERM; {where}.", file=sys.stderr)

    @property
    def trains(self) -> bool:
        """Whether this command's mode fits a model (``train``, or one of the task's other ``training_modes``)."""
        return str(self.cfg.mode) in self.task.training_modes

    @property
    def own_mode(self) -> bool:
        """Whether the mode is one of the task's own (``extra_modes``), which it runs without the Trainer."""
        return str(self.cfg.mode) in self.task.extra_modes()

    @property
    def is_global_zero(self) -> bool:
        return cluster.global_rank() == 0

    @property
    def run_id(self) -> str | None:
        return self.record.run_id if self.record else None

    def _announce_hardware(self) -> None:
        if str(self.cfg.mode) not in self.task.modes() or str(self.cfg.mode) in self.task.extra_modes():
            return  # a task's own modes pick their own hardware
        assert self.record is not None
        self.record.set_tag("precision", self.precision.value)
        self.record.set_tag("precision.reason", self.precision.reason)
        self.record.set_tag("threads_per_process", self.threads.value)
        if self.is_global_zero:
            print(f"sagelab: precision {self.precision.value} ({self.precision.reason}); "
                  f"{self.threads.value} thread(s) per process ({self.threads.reason})", file=sys.stderr)

    # -- training and evaluation ----------------------------------------------------
    def _train(self, context: TaskContext, resume_ckpt: Path | None) -> None:
        module, datamodule = self.task.module(), self.task.datamodule()
        trainer = self.fit(module, datamodule, resume_ckpt)
        self.evaluate(context, module, datamodule, trainer)
        if self._interrupted:  # the time budget: evaluated, but not a finished training
            return
        if self.cfg.checkpoint.save_model:
            final = self.checkpoint_dir / "final.ckpt"
            trainer.save_checkpoint(final, weights_only=True)
            if self.is_global_zero:
                self.record.log_artifact(final, "checkpoint")
                self._log_mlflow_model(final)
        self._write_state(completed=True)  # only now: a run stopped before this resumes

    def _log_mlflow_model(self, final: Path) -> None:
        if not self.task.answers_records():
            print(f"sagelab: task {self.task.name} answers no records, so no MLflow model is logged "
                  f"(the checkpoint is checkpoint/final.ckpt).", file=sys.stderr)
            return
        from sagelab import mlflow_model

        mlflow_model.log(self.record, self.task, self.cfg, final)

    def fit(self, module: Any, datamodule: Any, resume_ckpt: Path | None = None) -> Any:
        """Train with checkpoints every ``checkpoint.every_n_steps`` and spot-style interruption."""
        from lightning.pytorch.callbacks import ModelCheckpoint

        from sagelab.callbacks import MemoryMeter, SpotCheckpointing, TrainTimer

        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        if resume_ckpt is None and self.is_global_zero:
            # A finished run's last.ckpt, gone before the state says "not completed": DDP ranks launched from
            # here read the state themselves, and must not resume what this fresh run does not.
            (self.checkpoint_dir / "last.ckpt").unlink(missing_ok=True)
        self._write_state(completed=False)
        every = int(self.cfg.checkpoint.every_n_steps) or None
        periodic = ModelCheckpoint(
            dirpath=self.checkpoint_dir, filename="last", every_n_train_steps=every, save_top_k=1,
            enable_version_counter=False,
        )
        spot = SpotCheckpointing(self.checkpoint_dir / "last.ckpt", self.cfg.instance.get("max_run_s"))
        timer, memory = TrainTimer(), MemoryMeter()
        trainer = self.trainer(callbacks=[periodic, spot, timer, memory])
        trainer.fit(module, datamodule=datamodule, ckpt_path=str(resume_ckpt) if resume_ckpt else None,
                    weights_only=True)
        self._interrupted = spot.interrupted
        if timer.seconds:  # a resumed run whose training had already ended trains nothing
            self.record.log_metrics({"train_time_s": timer.seconds, **memory.metrics})
        if self._interrupted and self.is_global_zero:
            print(f"training stopped ({self._interrupted}); checkpoint in {self.checkpoint_dir}: "
                  "re-run the same command to resume.", file=sys.stderr)
        return trainer

    def evaluate(self, context: TaskContext, module: Any, datamodule: Any, trainer: Any = None) -> dict[str, float]:
        trainer = trainer or self.trainer(callbacks=[])
        results = trainer.validate(module, datamodule=datamodule, verbose=False)
        metrics = {k: float(v) for k, v in (results[0] if results else {}).items()}
        if getattr(datamodule, "has_test_split", False):
            # data nobody selected on (GLUE's dev set under data.holdout): scored once, here at the end
            results = trainer.test(module, datamodule=datamodule, verbose=False)
            metrics.update({k: float(v) for k, v in (results[0] if results else {}).items()})
        if self.is_global_zero:
            self.record.log_metrics(metrics, step=int(trainer.global_step))
            self.task.on_evaluated(context, module, metrics)
        return metrics

    def trainer(self, callbacks: list[Any]) -> Any:
        """``lightning.Trainer(**trainer.*)`` plus what the runner owns: devices, strategy, logger, checkpoint IO,
        SIGTERM."""
        import lightning as L
        from hydra.utils import get_method, instantiate

        from sagelab.callbacks import AtomicCheckpointIO, keep_sigterm_ours

        cfg, strategy = self.cfg, self.cfg.strategy
        kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
        kwargs["precision"] = self.precision.value
        if not strategy.mixed_precision_plugin and kwargs["precision"].endswith("-mixed"):
            kwargs["precision"] = "32-true"  # the strategy applies the dtype itself (fully_shard)
        plugins = [AtomicCheckpointIO()] if strategy.atomic_checkpoints else []
        backend = strategy.backend if strategy.backend != "auto" else (
            "nccl" if cfg.instance.accelerator == "gpu" else "gloo")
        build = get_method(str(strategy._target_))
        extra = [instantiate(spec) for spec in (cfg.get("callbacks") or {}).values()]
        trainer = L.Trainer(
            **kwargs,
            accelerator="gpu" if cfg.instance.accelerator == "gpu" else "cpu",
            devices=instances.processes(cfg),
            num_nodes=int(strategy.num_nodes),
            strategy=build(processes=instances.processes(cfg), num_nodes=int(strategy.num_nodes), backend=backend),
            callbacks=[*callbacks, *extra],
            # rank 0 only: another rank's MlflowClient would open (and race to create) the store for nothing
            logger=tracking.lightning_logger(self.record) if self.record and self.record.active else False,
            plugins=plugins,
            use_distributed_sampler=False,  # our batch sampler shards by rank itself
            enable_model_summary=False,
            num_sanity_val_steps=0,
            default_root_dir=str(self.output_dir),
        )
        keep_sigterm_ours(trainer)
        return trainer

    # -- checkpoints ------------------------------------------------------------------
    def _write_state(self, completed: bool) -> None:
        if self.is_global_zero:
            write_state(self.checkpoint_dir, run_id=self.run_id, completed=completed)

    def load_module(self) -> Any:
        """``task.module()`` with the weights of ``checkpoint.load`` (a .ckpt, an MLflow run id or model URI:
        resolved by :func:`sagelab.tracking.resolve_model`), or of this command's last training run. Only tensors
        and plain data are unpickled."""
        source = self.cfg.checkpoint.get("load")
        if source is None:
            path = self.checkpoint_dir / "final.ckpt"
            if not path.exists():
                path = self.checkpoint_dir / "last.ckpt"
            if not path.exists():
                raise ConfigError("checkpoint.load", f"no checkpoint given and none found in {self.checkpoint_dir}; "
                                  "pass a .ckpt path, an MLflow run id or a runs:/ or models:/ URI.")
        else:
            path = tracking.resolve_model("checkpoint.load", str(source), str(self.cfg.logger.tracking_uri))
        if self.record:
            self.record.set_tag("checkpoint.loaded", str(source or path))
        if path.is_dir():
            from sagelab import mlflow_model

            return mlflow_model.load_module(path, self.task)
        state = load_checkpoint(path, "checkpoint.load").get("state_dict")
        if not isinstance(state, dict):
            raise ConfigError("checkpoint.load", f"'{path}' has no state_dict: not a Lightning checkpoint.")
        return self.task.module_from_state(state)

    def _print_summary(self, wall: float) -> None:
        if not self.is_global_zero:
            return
        rows = {**self.record.metrics, "wall_time_s": wall}
        width = max(len(k) for k in rows)
        print(f"\n{self.task.name} · {self.cfg.mode} · MLflow run {self.run_id}")
        for key in sorted(rows):
            print(f"  {key:<{width}}  {rows[key]:.4f}")


def seed_without_lightning(seed: int) -> None:
    """What ``lightning.seed_everything`` seeds (Python, NumPy, torch, and the variable its workers read), by
    hand: importing Lightning costs seconds, and a task's own modes may not need it at all."""
    import random

    import numpy as np
    import torch

    os.environ["PL_GLOBAL_SEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _quiet_known_noise() -> None:
    import logging
    import warnings

    for message in (
        ".*sync_dist=True.*",  # torchmetrics values are already synced across processes
        "Checkpoint directory .* exists and is not empty",  # it holds our state file by design
        ".*LeafSpec.*",
        ".*smaller than the logging interval.*",
        ".*your dataloader is not resumable.*",  # SpotCheckpointing repositions our batch sampler itself
    ):
        warnings.filterwarnings("ignore", message=message)
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(
        lambda record: "litlogger" not in record.getMessage()
    )


def _hydra_output_dir() -> str:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().runtime.output_dir if HydraConfig.initialized() else os.getcwd()
