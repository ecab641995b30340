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
import warnings
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

    # -- before fit: a latency objective needs a predict step; the trial's MLflow run is a child of the study's --
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if "latency_ms" in [o.name for o in self.reporter.objectives] and not has_predict_step(pl_module):
            raise RuntimeError(f"objective latency_ms times the module's predict_step, and {type(pl_module).__name__} "
                               "defines neither predict_step nor forward.")
        if not trainer.is_global_zero:
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

    # -- latency: the module's own predict_step on the first validation batch, after warm-up ------
    def _measure_latency(self, trainer: L.Trainer, pl_module: L.LightningModule) -> float | None:
        """Milliseconds per example of ``pl_module.predict_step`` on the first validation batch, taken as it is.

        The batch is moved like any batch (``trainer.strategy.batch_to_device``: the module's transfer hooks), timed
        in eval mode under ``torch.inference_mode`` and the precision plugin's predict context, and counted by
        :func:`examples_in`. Nothing here knows the task's batch format. ``None`` when there is no validation
        loader, or the module has no inference step to time (and latency_ms is not an objective: see setup).
        """
        loader = trainer.val_dataloaders
        if isinstance(loader, (list, tuple)):
            loader = loader[0] if loader else None
        if loader is None or not has_predict_step(pl_module):
            return None
        rng = torch.get_rng_state()  # drawing the batch (and any sampling in predict_step) must not move training's RNG
        was_training = pl_module.training
        try:
            batch = trainer.strategy.batch_to_device(next(iter(loader)), dataloader_idx=0)
            count = examples_in(pl_module, batch)
            pl_module.eval()
            with torch.inference_mode(), trainer.precision_plugin.predict_step_context():
                return measure_latency_ms(
                    lambda: pl_module.predict_step(batch, 0),
                    count,
                    warmup=int(self.reporter.spec.latency.get("warmup", 2)),
                    repeats=int(self.reporter.spec.latency.get("repeats", 5)),
                )
        finally:
            pl_module.train(was_training)
            torch.set_rng_state(rng)


def has_predict_step(module: L.LightningModule | type[L.LightningModule]) -> bool:
    """Whether a module can predict: its own ``predict_step``, or Lightning's default one over its own ``forward``."""
    cls = module if isinstance(module, type) else type(module)
    return cls.predict_step is not L.LightningModule.predict_step or cls.forward is not L.LightningModule.forward


def examples_in(module: L.LightningModule, batch: Any) -> int:
    """How many examples ``batch`` holds: the module's ``batch_size_of(batch)`` if it defines that hook, else the
    length of the first tensor in the batch (Lightning's ``extract_batch_size``), else 1 (an opaque batch)."""
    hook = getattr(module, "batch_size_of", None)
    if callable(hook):
        return int(hook(batch))
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from lightning.pytorch.utilities.data import extract_batch_size

    with warnings.catch_warnings():  # its "ambiguous collection" advice is about self.log; the first tensor decides
        warnings.simplefilter("ignore")
        try:
            return int(extract_batch_size(batch))
        except MisconfigurationException:
            return 1
