"""Inside a trial process: turn one validation round into objectives and tell the scheduler.

:class:`TrialReporter` has no Lightning in it, so the Lightning callback and the
synthetic trial program (``python -m sagelab.hpo.synthetic``) share it. Each
round it

1. computes the objectives (error, latency, cost, time) from what was measured;
2. writes ``trials/<id>/result.json`` atomically (the study's record of the trial);
3. reports to the scheduler: a Syne Tune ``Reporter`` line on stdout, or
   ``trial.report`` + ``trial.should_prune`` against Optuna's RDB storage.

The last round at full fidelity is not printed to Syne Tune from here: a
scheduler seeing it would stop the process while the run still closes its
MLflow record. ``sagelab.hpo.trial_entry`` prints it once the run has exited.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping

from sagelab.hpo.objectives import scheduler_values, trial_metrics
from sagelab.hpo.records import read_json, write_json
from sagelab.hpo.spec import REEVAL_PREFIX, StudySpec

EPOCH_KEY = "epoch"  # the resource attribute Syne Tune's multi-fidelity schedulers compare


class TrialReporter:
    def __init__(self, spec: str | Path, trial: int | str, price_per_hour: float | None = None) -> None:
        self.spec = StudySpec.load(spec)
        self.trial = str(trial)
        self.objectives = self.spec.objective_list()
        self.price_per_hour = float(price_per_hour or 0.0)
        self.dir = self.spec.trial_dir(self.trial)
        self.scheduled = not self.trial.startswith(REEVAL_PREFIX)  # a re-evaluation run only writes result.json
        self.path = self.dir / "result.json"
        self.started = time.perf_counter()
        self.history: list[dict[str, Any]] = []
        self.run_id: str | None = None
        self.pruned = False
        self._st_reporter: Any = None
        self._optuna_trial: Any = None

    # -- measurement -> record -------------------------------------------------------
    def report(
        self,
        task_metric_value: float,
        latency_ms: float | None = None,
        logged: Mapping[str, float] | None = None,
        train_time_s: float | None = None,
    ) -> bool:
        """Record one round; returns True when the scheduler wants the trial to stop (Optuna pruning)."""
        train_time = time.perf_counter() - self.started if train_time_s is None else train_time_s
        metrics = trial_metrics(
            task_metric_value, self.spec.task_mode, train_time, self.price_per_hour, latency_ms, logged
        )
        values = scheduler_values(metrics, self.objectives)
        entry = {"round": len(self.history) + 1, **metrics, "objectives": values, "time": time.time()}
        self.history.append(entry)
        final = entry["round"] >= self.spec.max_resource
        should_stop = False
        if self.scheduled and self.spec.backend == "optuna" and self.spec.multi_fidelity and not final:
            should_stop = self._optuna_round(values, entry["round"])
        self._write(deferred=final and self.scheduled and self.spec.backend == "syne_tune")
        if self.scheduled and self.spec.backend == "syne_tune" and not final:
            self._syne_tune_line(entry)
        return should_stop

    def set_run_id(self, run_id: str | None) -> None:
        self.run_id = run_id
        self._write(deferred=bool((read_json(self.path) or {}).get("deferred")))

    def _write(self, deferred: bool) -> None:
        write_json(
            self.path,
            {
                "trial_id": self.trial,
                "rounds": len(self.history),
                "mlflow_run_id": self.run_id,
                "pruned": self.pruned,
                "deferred": deferred,
                "history": self.history,
            },
        )

    # -- Syne Tune ------------------------------------------------------------------------
    def _syne_tune_line(self, entry: Mapping[str, Any]) -> None:
        from syne_tune import Reporter

        if self._st_reporter is None:
            self._st_reporter = Reporter()
        self._st_reporter(**syne_tune_payload(entry))

    # -- Optuna ---------------------------------------------------------------------------
    def _optuna_round(self, values: Mapping[str, float], step: int) -> bool:
        trial = self._optuna()
        trial.report(float(values[self.objectives[0].key]), step)
        if trial.should_prune():
            self.pruned = True
            return True
        return False

    def _optuna(self) -> Any:
        if self._optuna_trial is None:
            import optuna

            from sagelab.hpo.optuna_study import make_pruner

            optuna.logging.set_verbosity(optuna.logging.WARNING)
            from sagelab.hpo.storage import engine_kwargs

            url = self.spec.optuna_storage
            storage = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs(url))
            study = optuna.load_study(study_name=self.spec.name, storage=storage, pruner=make_pruner(self.spec))
            study_id = storage.get_study_id_from_name(self.spec.name)
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, int(self.trial))
            self._optuna_trial = optuna.trial.Trial(study, trial_id)
        return self._optuna_trial


def syne_tune_payload(entry: Mapping[str, Any]) -> dict[str, Any]:
    """What Syne Tune sees of one round: the resource, the minimised objectives and the raw metrics."""
    payload = {EPOCH_KEY: int(entry["round"]), **entry["objectives"]}
    for key, value in entry.items():
        if key not in ("round", "objectives", "time") and key not in payload and isinstance(value, (int, float)):
            payload[key] = value
    return payload
