"""The Lightning callback that makes an ordinary sagelab run an HPO trial.

The study adds it to a trial's command line::

    +callbacks.hpo._target_=sagelab.hpo.callback.HPOCallback
    +callbacks.hpo.spec=<study>/spec.json +callbacks.hpo.trial=<id>
    +callbacks.hpo.price_per_hour=${instance.price_per_hour}

and the runner instantiates it like any other entry of ``callbacks``. After
every validation round during ``fit`` it reports the objectives (see
:mod:`sagelab.hpo.report`); ASHA/MO-ASHA may then stop the process, Optuna may
prune it (the callback sets ``trainer.should_stop`` and the run ends normally).
It also tags the trial's MLflow run with its study and trial id (the study nests it under its parent run
through ``logger.parent_run_id``).
"""

from __future__ import annotations

import time
from typing import Any

import lightning as L
import torch

from sagelab.hpo.objectives import measure_latency_ms
from sagelab.hpo.report import TrialReporter


class HPOCallback(L.Callback):
    def __init__(self, spec: str, trial: int | str, price_per_hour: float | None = None) -> None:
        self.reporter = TrialReporter(spec, trial, price_per_hour)
        self.latency_ms: float | None = None
        self._train_start: float | None = None

    # -- MLflow: the trial's run is a child of the study's run ------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit" or not trainer.is_global_zero:
            return
        spec = self.reporter.spec
        for logger in trainer.loggers:
            run_id = getattr(logger, "run_id", None)
            client = getattr(logger, "experiment", None)
            if run_id is None or not hasattr(client, "set_tag"):
                continue
            tags = {"sagelab.hpo.study": spec.name, "sagelab.hpo.trial": self.reporter.trial}
            for key, value in tags.items():
                client.set_tag(run_id, key, value)
            self.reporter.set_run_id(run_id)
            break

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._train_start = time.perf_counter()

    # -- one report per validation round during fit --------------------------------------------
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit" or not trainer.is_global_zero:
            return
        spec = self.reporter.spec
        value = trainer.callback_metrics.get(spec.task_metric)
        if value is None:
            have = ", ".join(sorted(trainer.callback_metrics)) or "nothing"
            raise RuntimeError(f"task.metric '{spec.task_metric}' was not logged by validation (logged: {have})")
        if self.latency_ms is None:
            self.latency_ms = self._measure_latency(trainer, pl_module)
        logged = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        elapsed = time.perf_counter() - (self._train_start or self.reporter.started)
        if self.reporter.report(float(value), self.latency_ms, logged, train_time_s=elapsed):
            trainer.should_stop = True

    # -- latency: a fixed validation batch, after warm-up, in this process's thread setting ------
    def _measure_latency(self, trainer: L.Trainer, pl_module: L.LightningModule) -> float | None:
        loader = trainer.val_dataloaders
        if isinstance(loader, (list, tuple)):
            loader = loader[0] if loader else None
        if loader is None:
            return None
        rng = torch.get_rng_state()  # creating an iterator draws a seed; keep training's RNG stream intact
        try:
            batch = next(iter(loader))
        finally:
            torch.set_rng_state(rng)
        n = int(self.reporter.spec.latency.get("batch_size", 8))
        batch, count = _head(batch, n)
        batch = _to_device(batch, pl_module.device)
        forward = _inference_fn(pl_module, batch)
        was_training = pl_module.training
        pl_module.eval()
        try:
            with torch.inference_mode(), trainer.precision_plugin.forward_context():
                return measure_latency_ms(
                    forward,
                    count,
                    warmup=int(self.reporter.spec.latency.get("warmup", 2)),
                    repeats=int(self.reporter.spec.latency.get("repeats", 5)),
                )
        finally:
            pl_module.train(was_training)


def _head(batch: Any, n: int) -> tuple[Any, int]:
    """The first ``n`` examples of a batch (dict / tuple of tensors, or a tensor) and their count."""
    if isinstance(batch, torch.Tensor):
        return batch[:n], min(n, len(batch))
    if isinstance(batch, dict):
        sizes = [len(v) for v in batch.values() if isinstance(v, torch.Tensor) and v.dim() > 0]
        count = min([n, *sizes]) if sizes else n
        return {k: (v[:n] if isinstance(v, torch.Tensor) and v.dim() > 0 else v) for k, v in batch.items()}, count
    if isinstance(batch, (list, tuple)):
        parts = [_head(b, n) for b in batch]
        return type(batch)(p[0] for p in parts), min((p[1] for p in parts), default=n)
    return batch, n


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(b, device) for b in batch)
    return batch


def _inference_fn(module: L.LightningModule, batch: Any) -> Any:
    """Plain inference on ``batch``: the module's own forward, else its wrapped ``model``, else predict_step."""
    inputs = {k: v for k, v in batch.items() if k not in ("labels", "label")} if isinstance(batch, dict) else batch
    if type(module).forward is not L.LightningModule.forward:
        return lambda: module(**inputs) if isinstance(inputs, dict) else module(inputs)
    model = getattr(module, "model", None)
    if isinstance(model, torch.nn.Module):
        return lambda: model(**inputs) if isinstance(inputs, dict) else model(inputs)
    return lambda: module.predict_step(batch, 0)
