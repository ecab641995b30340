"""Spot-instance semantics as a Lightning callback.

Managed spot training gives a job a checkpoint folder and may stop it at any
time; re-running the job resumes. :class:`SpotCheckpointing` makes that exact:

* SIGTERM (the spot notice) during a training step -> a checkpoint at the end of the step, then
  :class:`~sagelab.faults.Terminated` (under DDP the ranks agree on the step, so they checkpoint together);
  during a validation round inside ``fit`` -> :class:`~sagelab.faults.Terminated` at once (the round is not
  worth the wait: the last checkpoint resumes exactly);
* ``instance.max_run_s`` -> a checkpoint at the time budget and a clean stop;
* the end of training -> ``last.ckpt`` holds it, so a run stopped in its final evaluation resumes there;
* on resume, the batch sampler skips the batches the checkpoint already consumed and the
  RNG states are restored, so the resumed run sees the same batches and dropout masks as an
  uninterrupted one.

Periodic checkpoints come from Lightning's own ``ModelCheckpoint``; every checkpoint is written through
:class:`AtomicCheckpointIO`.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from sagelab import faults
from sagelab.safe_io import atomic_write


def keep_sigterm_ours(trainer: L.Trainer) -> None:
    """Every stage of ``trainer`` keeps the command's SIGTERM handler (:mod:`sagelab.faults`).

    Lightning installs its own at the start of each stage, and it broadcasts from inside the handler: a rank
    that is in another collective at that moment hangs or breaks. Lightning's other handlers (SLURM's requeue
    signal) are still installed; ours raises, or waits for the end of a training step, and passes the first
    signal on to the DDP children Lightning launched.
    """
    connector = trainer._signal_connector  # no public switch for this in Lightning 2.x
    connector.register_signal_handlers = _RegisterThenOurs(connector)
    faults.current().forward = getattr(trainer.strategy.launcher, "kill", None)


class _RegisterThenOurs:
    """A class, not a closure: ``strategy=ddp_spawn`` pickles the trainer."""

    def __init__(self, connector: Any) -> None:
        self.connector = connector

    def __call__(self) -> None:
        type(self.connector).register_signal_handlers(self.connector)
        faults.current().install()


class SpotCheckpointing(L.Callback):
    def __init__(self, last_path: Path, max_run_s: float | None = None) -> None:
        self.last_path = Path(last_path)
        self.max_run_s = max_run_s
        self.started = time.monotonic()
        self.interrupted: str | None = None  # "time budget" once training was cut short
        self._resume_batches = 0
        self._rng_to_restore: dict[str, Any] | None = None
        self._saved_step = -1

    # -- stopping ---------------------------------------------------------------
    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if self.interrupted is not None:
            return
        sigterm = faults.current()
        code = 2 if sigterm.received else int(bool(self.max_run_s and time.monotonic() - self.started > self.max_run_s))
        if trainer.world_size > 1:  # all ranks must checkpoint at the same step, or save's barrier deadlocks
            flag = torch.tensor([code], device=trainer.strategy.root_device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            code = int(flag.item())
        if code:
            trainer.save_checkpoint(self.last_path)
        if code == 2:
            sigterm.received = True  # another rank's signal
            sigterm.stop_deferring()
        elif code == 1:
            self.interrupted = "time budget"
            trainer.should_stop = True

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "fit":
            faults.current().stop_deferring()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "fit":
            faults.current().deferring = True

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        self._saved_step = trainer.global_step

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.interrupted is None and self._saved_step != trainer.global_step:
            trainer.save_checkpoint(self.last_path)  # the end of training, for a run stopped after it
        faults.current().stop_deferring()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        faults.current().deferring = False

    # -- exact resume -----------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        # numpy's key array as a tensor keeps the checkpoint loadable with torch.load(weights_only=True)
        return {
            "torch": torch.get_rng_state(),
            "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)),
            "python": random.getstate(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._rng_to_restore = state

    def on_train_batch_start(self, *args: Any) -> None:
        # Restored here, not at load time: creating the epoch's DataLoader iterator draws from the
        # global RNG, and in the uninterrupted run that draw happened before the checkpoint was taken.
        state, self._rng_to_restore = self._rng_to_restore, None
        if state is None:
            return
        torch.set_rng_state(state["torch"])
        kind, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        random.setstate(state["python"])

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        progress = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_loop.batch_progress", {})
        self._resume_batches = int(progress.get("current", {}).get("processed", 0))

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        faults.current().deferring = True  # from here on a SIGTERM waits for the end of the current step
        # A run resumed mid-epoch gets no on_train_epoch_start, so the sampler is positioned here.
        sampler = _batch_sampler(trainer)
        if sampler is not None:
            sampler.set_epoch(trainer.current_epoch)
            sampler.skip_next(self._resume_batches % max(1, len(sampler)))
        self._resume_batches = 0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning calls set_epoch on samplers only, not on batch samplers: reshuffle per epoch here.
        sampler = _batch_sampler(trainer)
        if sampler is not None:
            sampler.set_epoch(trainer.current_epoch)


def _batch_sampler(trainer: L.Trainer) -> Any:
    sampler = getattr(trainer.train_dataloader, "batch_sampler", None)
    return sampler if hasattr(sampler, "skip_next") else None


class TrainTimer(L.Callback):
    """Seconds spent training, validation inside ``fit`` excluded: the figure throughput is computed from."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._since: float | None = None

    def _start(self, *args: Any) -> None:
        self._since = time.perf_counter()

    def _stop(self, *args: Any) -> None:
        if self._since is not None:
            self.seconds += time.perf_counter() - self._since
            self._since = None

    on_train_start = on_validation_end = _start
    on_train_end = on_validation_start = _stop


class MemoryMeter(L.Callback):
    """Bytes of parameters + optimizer state this process holds (a shard under ``strategy=fsdp``), and its
    peak resident memory; printed per rank, logged for rank 0."""

    def __init__(self) -> None:
        self.metrics: dict[str, float] = {}

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if trainer.global_step != 1 or self.metrics:  # after the first step, when optimizer state exists
            return
        tensors = list(pl_module.parameters())
        for optimizer in trainer.optimizers:
            tensors += [t for state in optimizer.state.values() for t in state.values() if torch.is_tensor(t)]
        local = [t.to_local() if hasattr(t, "to_local") else t for t in tensors]
        self.metrics["memory/param_optim_mb"] = sum(t.numel() * t.element_size() for t in local) / 2**20

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        import resource

        self.metrics["memory/peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        summary = ", ".join(f"{k.split('/')[1]} {v:.1f}" for k, v in self.metrics.items())
        print(f"[rank {trainer.global_rank}] {summary}", flush=True)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, made atomic and durable: a kill mid-write never leaves a torn
    ``last.ckpt``, a full disk never leaves a ``.partial`` (:func:`sagelab.safe_io.atomic_write`)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda handle: torch.save(checkpoint, handle))
