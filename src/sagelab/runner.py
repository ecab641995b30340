"""The one Lightning runner: every task trains, evaluates and predicts through here.

Read top to bottom, a command does this:

1. pick the hardware (instance profile -> threads, processes, Lightning strategy);
2. find its checkpoint folder; if an earlier run of the same command was interrupted,
   resume it (same checkpoint, same MLflow run);
3. open the MLflow run (rank 0 only) and run the mode: ``train`` fits then evaluates,
   ``evaluate`` and ``predict`` load a checkpoint, a task's own modes get this runner;
4. log metrics, cost and the final model, and close the run as FINISHED, KILLED or FAILED.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from sagelab import instances, tracking
from sagelab.config import ConfigError
from sagelab.tasks.base import Task

LAUNCHER_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")  # set by Lightning's DDP launcher
STATE_FILE = "sagelab_state.json"  # {"run_id": ..., "completed": bool} beside the checkpoints


class Runner:
    def __init__(self, cfg: DictConfig, task: Task) -> None:
        self.cfg = cfg
        self.task = task
        self.output_dir = Path(cfg.get("output_dir") or _hydra_output_dir())
        self.checkpoint_dir = Path(str(cfg.checkpoint.dir))
        self.record: tracking.RunRecord | None = None
        self.metrics: dict[str, float] = {}

    # -- the whole command --------------------------------------------------------
    def run(self) -> dict[str, float]:
        import lightning as L
        import torch

        _quiet_known_noise()
        instances.check_hardware(self.cfg)
        torch.set_num_threads(instances.threads_per_process(self.cfg))
        L.seed_everything(int(self.cfg.seed), workers=True, verbose=False)
        _keep_ddp_children_out_of_the_sweep(self.cfg)

        launcher_env = {k: os.environ.get(k) for k in LAUNCHER_ENV}
        resume_ckpt, run_id = self._resume_point()
        self.record = tracking.RunRecord(self.cfg, run_id, self.is_global_zero)
        started = time.monotonic()
        status, error = "FINISHED", None
        try:
            mode = str(self.cfg.mode)
            extra = self.task.extra_modes()
            if mode in extra:
                self.metrics.update(extra[mode](self) or {})
            elif mode == "train":
                self._train(resume_ckpt)
            elif mode == "evaluate":
                self.evaluate(self.load_module(), self.task.datamodule())
            elif mode == "predict":
                self.metrics.update(self.task.predict(self) or {})
            if self._interrupted:
                status = "KILLED"
        except BaseException as err:  # record every failure, then let it propagate
            from lightning.pytorch.utilities.exceptions import SIGTERMException

            interrupted = isinstance(err, (KeyboardInterrupt, SystemExit))
            status, error = ("KILLED", None) if interrupted else ("FAILED", _error_text(err))
            if isinstance(err, SIGTERMException):  # a SIGTERM before our handler took over
                raise SystemExit(128 + signal.SIGTERM) from err
            raise
        finally:
            wall = time.monotonic() - started
            self.log_metrics({"wall_time_s": wall, "cost_usd": instances.cost_usd(self.cfg, wall)})
            self.record.finish(status, error)
            _leave_process_group(launcher_env)
        self._print_summary(wall)
        if self._interrupted == "sigterm":
            raise SystemExit(128 + signal.SIGTERM)
        return self.metrics

    @property
    def is_global_zero(self) -> bool:
        from lightning.pytorch.utilities.rank_zero import rank_zero_only

        return getattr(rank_zero_only, "rank", 0) == 0

    @property
    def run_id(self) -> str | None:
        return self.record.run_id if self.record else None

    # -- training and evaluation ----------------------------------------------------
    def _train(self, resume_ckpt: Path | None) -> None:
        module, datamodule = self.task.module(), self.task.datamodule()
        trainer = self.fit(module, datamodule, resume_ckpt)
        if self._interrupted == "sigterm":  # the instance is going away: checkpoint written, leave now
            return
        self.evaluate(module, datamodule, trainer)
        if self.cfg.checkpoint.save_model and not self._interrupted:
            final = self.checkpoint_dir / "final.ckpt"
            trainer.save_checkpoint(final, weights_only=True)
            if self.is_global_zero:
                self.log_artifact(final, "model")

    def fit(self, module: Any, datamodule: Any, resume_ckpt: Path | None = None) -> Any:
        """Train with checkpoints every ``checkpoint.every_n_steps`` and spot-style interruption."""
        from lightning.pytorch.callbacks import ModelCheckpoint

        from sagelab.callbacks import MemoryMeter, SpotCheckpointing, TrainTimer

        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        self._write_state(completed=False)
        every = int(self.cfg.checkpoint.every_n_steps) or None
        periodic = ModelCheckpoint(
            dirpath=self.checkpoint_dir, filename="last", every_n_train_steps=every, save_top_k=1,
            enable_version_counter=False,
        )
        self.spot = SpotCheckpointing(self.checkpoint_dir / "last.ckpt", self.cfg.instance.get("max_run_s"))
        timer, memory = TrainTimer(), MemoryMeter()
        trainer = self.trainer(callbacks=[periodic, self.spot, timer, memory])
        trainer.fit(module, datamodule=datamodule, ckpt_path=str(resume_ckpt) if resume_ckpt else None)
        self._interrupted = self.spot.interrupted
        self.log_metrics({"train_time_s": timer.seconds, **memory.metrics})
        if not self._interrupted:
            self._write_state(completed=True)
        elif self.is_global_zero:
            print(f"training stopped ({self._interrupted}); checkpoint in {self.checkpoint_dir}: "
                  "re-run the same command to resume.", file=sys.stderr)
        return trainer

    def evaluate(self, module: Any, datamodule: Any, trainer: Any = None) -> dict[str, float]:
        trainer = trainer or self.trainer(callbacks=[])
        results = trainer.validate(module, datamodule=datamodule, verbose=False)
        metrics = {k: float(v) for k, v in (results[0] if results else {}).items()}
        if getattr(datamodule, "has_test_split", False):
            # data nobody selected on (GLUE's dev set under data.holdout): scored once, here at the end
            results = trainer.test(module, datamodule=datamodule, verbose=False)
            metrics.update({k: float(v) for k, v in (results[0] if results else {}).items()})
        self.metrics.update(metrics)
        if self.is_global_zero:
            self.log_metrics(metrics, step=int(trainer.global_step))
        self.task.on_evaluated(self, module, metrics)
        return metrics

    def trainer_kwargs(self) -> dict[str, Any]:
        cfg = self.cfg
        return dict(
            accelerator="gpu" if cfg.instance.accelerator == "gpu" else "cpu",
            devices=instances.processes(cfg),
            num_nodes=int(cfg.strategy.num_nodes),
            strategy=instances.build_strategy(cfg),
            max_epochs=int(cfg.trainer.max_epochs),
            max_steps=int(cfg.trainer.max_steps),
            precision=str(cfg.trainer.precision),
            accumulate_grad_batches=int(cfg.trainer.accumulate_grad_batches),
            val_check_interval=cfg.trainer.val_check_interval,
            log_every_n_steps=int(cfg.trainer.log_every_n_steps),
            gradient_clip_val=cfg.trainer.gradient_clip_val,
            deterministic=bool(cfg.trainer.deterministic),
            enable_progress_bar=bool(cfg.trainer.enable_progress_bar),
            use_distributed_sampler=False,  # our batch sampler shards by rank itself
            enable_model_summary=False,
            num_sanity_val_steps=0,
            default_root_dir=str(self.output_dir),
        )

    def trainer(self, callbacks: list[Any]) -> Any:
        import lightning as L
        from hydra.utils import instantiate

        extra = [instantiate(spec) for spec in (self.cfg.get("callbacks") or {}).values()]
        logger = tracking.lightning_logger(self.record) if self.record else False
        plugins = []
        if self.cfg.strategy.name != "fsdp":  # the sharded strategy writes its checkpoints itself
            from sagelab.callbacks import AtomicCheckpointIO

            plugins.append(AtomicCheckpointIO())
        if self.cfg.strategy.name == "fsdp" and str(self.cfg.trainer.precision) == "bf16-mixed":
            # fully_shard keeps bf16 parameters itself; Lightning's mixed plugin is not supported there
            kwargs = {**self.trainer_kwargs(), "precision": "32-true"}
        else:
            kwargs = self.trainer_kwargs()
        return L.Trainer(**kwargs, callbacks=[*callbacks, *extra], logger=logger, plugins=plugins)

    # -- checkpoints ------------------------------------------------------------------
    def _resume_point(self) -> tuple[Path | None, str | None]:
        """(checkpoint, MLflow run id) to continue, if this command was interrupted before."""
        policy = str(self.cfg.checkpoint.resume)
        if self.cfg.mode != "train" or policy == "never":
            return None, None
        if policy != "auto":
            return Path(policy), None
        state = self._read_state()
        last = self.checkpoint_dir / "last.ckpt"
        if state and not state.get("completed") and last.exists():
            if self.is_global_zero:
                print(f"resuming from {last} (MLflow run {state.get('run_id')})", file=sys.stderr)
            return last, state.get("run_id")
        return None, None

    def _read_state(self) -> dict[str, Any] | None:
        path = self.checkpoint_dir / STATE_FILE
        return json.loads(path.read_text()) if path.exists() else None

    def _write_state(self, completed: bool) -> None:
        if self.is_global_zero:
            state = {"run_id": self.run_id, "completed": completed}
            (self.checkpoint_dir / STATE_FILE).write_text(json.dumps(state))

    def load_module(self) -> Any:
        """``task.module()`` with the weights of ``checkpoint.load`` (a .ckpt or an MLflow run id),
        or of this command's last training run."""
        import torch

        source = self.cfg.checkpoint.get("load")
        if source is None:
            path = self.checkpoint_dir / "final.ckpt"
            if not path.exists():
                path = self.checkpoint_dir / "last.ckpt"
            if not path.exists():
                raise ConfigError("checkpoint.load", f"no checkpoint given and none found in {self.checkpoint_dir}; "
                                  "pass a .ckpt path or an MLflow run id.")
        elif Path(str(source)).exists():
            path = Path(str(source))
        else:
            try:
                path = tracking.download_artifact(str(self.cfg.logger.tracking_uri), str(source), "model/final.ckpt")
            except Exception as err:
                raise ConfigError("checkpoint.load", f"'{source}' is neither a file nor an MLflow run with a "
                                  f"model/final.ckpt artifact ({type(err).__name__}).") from err
        module = self.task.module()
        state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
        module.load_state_dict(state)
        if self.record:
            self.record.set_tag("checkpoint.loaded", str(path))
        return module

    # -- logging (rank 0 only; no-ops elsewhere) -----------------------------------------
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.metrics.update({k: float(v) for k, v in metrics.items()})
        if self.record:
            self.record.log_metrics(metrics, step)

    def log_params(self, params: dict[str, Any]) -> None:
        if self.record:
            self.record.log_params(params)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        if self.record:
            self.record.log_artifact(path, artifact_path)

    def log_dict(self, obj: Any, filename: str) -> None:
        if self.record:
            self.record.log_dict(obj, filename)

    def log_figure(self, figure: Any, filename: str) -> None:
        if self.record:
            self.record.log_figure(figure, filename)

    def _print_summary(self, wall: float) -> None:
        if not self.is_global_zero:
            return
        rows = {**self.metrics, "wall_time_s": wall}
        width = max(len(k) for k in rows)
        print(f"\n{self.task.name} · {self.cfg.mode} · MLflow run {self.run_id}")
        for key in sorted(rows):
            print(f"  {key:<{width}}  {rows[key]:.4f}")

    _interrupted: str | None = None


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


def _keep_ddp_children_out_of_the_sweep(cfg: DictConfig) -> None:
    """Under ``--multirun``, Lightning would start DDP children with the whole sweep command line.

    Give it this job's overrides instead, so each child runs exactly its parent's point.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if cfg.strategy.name != "ddp" or not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode == RunMode.MULTIRUN:
        sys.argv = [sys.argv[0], *hydra_cfg.overrides.task]
        OmegaConf.set_readonly(hydra_cfg, False)
        hydra_cfg.run.dir = hydra_cfg.runtime.output_dir


def _leave_process_group(launcher_env: dict[str, str | None]) -> None:
    """Close this run's process group and undo the launcher's environment, so the next job of a
    ``--multirun`` launches and rendezvous on its own instead of joining this one's dead group."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    for key, value in launcher_env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _error_text(err: BaseException) -> str:
    return "".join(traceback.format_exception(type(err), err, err.__traceback__))
