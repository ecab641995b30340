"""Spot-instance semantics as a Lightning callback.

Managed spot training gives a job a checkpoint folder and may stop it at any
time; re-running the job resumes. :class:`SpotCheckpointing` makes that exact:

* SIGTERM (the spot notice) -> a checkpoint at the end of the current step, then a clean stop;
* ``instance.max_run_s`` -> the same at the time budget;
* on resume, the batch sampler skips the batches the checkpoint already consumed and the
  RNG states are restored, so the resumed run sees the same batches and dropout masks as an
  uninterrupted one.

Periodic checkpoints come from Lightning's own ``ModelCheckpoint``.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch


class SpotCheckpointing(L.Callback):
    def __init__(self, last_path: Path, max_run_s: float | None = None) -> None:
        self.last_path = Path(last_path)
        self.max_run_s = max_run_s
        self.started = time.monotonic()
        self.interrupted: str | None = None  # "sigterm" | "time budget" once training was cut short
        self._resume_batches = 0

    # -- stopping ---------------------------------------------------------------
    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        reason = None
        if trainer.received_sigterm:
            reason = "sigterm"
        elif self.max_run_s and time.monotonic() - self.started > self.max_run_s:
            reason = "time budget"
        if reason and self.interrupted is None:
            self.interrupted = reason
            trainer.save_checkpoint(self.last_path)
            trainer.should_stop = True

    # -- exact resume -----------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "torch": torch.get_rng_state(),
            "numpy": np.random.get_state(),
            "python": random.getstate(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        torch.set_rng_state(state["torch"])
        np.random.set_state(state["numpy"])
        random.setstate(state["python"])

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        progress = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_loop.batch_progress", {})
        self._resume_batches = int(progress.get("current", {}).get("processed", 0))

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._resume_batches:
            return
        sampler = getattr(trainer.train_dataloader, "batch_sampler", None)
        if hasattr(sampler, "skip_next"):
            sampler.skip_next(self._resume_batches % max(1, len(sampler)))
        self._resume_batches = 0
