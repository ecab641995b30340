"""Syne Tune studies: Tuner + Scheduler + LocalBackend, kept apart as Syne Tune does.

* Scheduler: ``asha`` (ASHA, one objective), ``moasha`` (MO-ASHA, non-dominated
  sorting over all objectives), ``random`` (random search, one or more
  objectives) and ``bo`` (BORE, Bayesian optimisation by density-ratio
  estimation, one objective). Multi-fidelity schedulers compare trials on
  ``epoch`` up to ``hpo.max_resource``.
* Backend: :class:`StudyBackend`, Syne Tune's LocalBackend with trial ids that
  continue across sessions, running ``sagelab/hpo/trial_entry.py`` (which runs
  ``python run.py ...``) in ``n_workers`` processes.
* Tuner: Syne Tune's, with a stop criterion for the wall-clock and cost budget
  and a callback that keeps the study's journal (:mod:`sagelab.hpo.records`).

Resume: a new session replays every finished trial's reports into a fresh
scheduler (so ASHA's rungs and BORE's model see them), numbers new trials after
the old ones and spends only what is left of the budget.
"""

from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from sagelab.hpo.records import (
    Budget,
    StudyState,
    finish_trial,
    load_trials,
    open_session,
    read_json,
    tail,
    update_trial,
)
from sagelab.hpo.lifeline import STUDY_PID_ENV
from sagelab.hpo.report import EPOCH_KEY
from sagelab.hpo.spec import StudySpec
from sagelab.hpo.trial_entry import SPEC_ENV


def make_scheduler(spec: StudySpec, seed: int) -> Any:
    """The Syne Tune scheduler of ``spec.algorithm`` over the minimised objective keys."""
    from syne_tune.optimizer import baselines
    from syne_tune.optimizer.schedulers.multiobjective.moasha import MOASHA

    space = spec.search_space().syne_tune()
    keys = [o.key for o in spec.objective_list()]
    fidelity = dict(time_attr=EPOCH_KEY, max_t=spec.max_resource, grace_period=spec.grace_period,
                    reduction_factor=spec.reduction_factor)
    if spec.algorithm == "asha":
        return baselines.ASHA(space, metric=keys[0], do_minimize=True, random_seed=seed, **fidelity)
    if spec.algorithm == "moasha":
        return MOASHA(space, metrics=keys, do_minimize=True, random_seed=seed, **fidelity)
    if spec.algorithm == "random":
        if len(keys) == 1:
            return baselines.RandomSearch(space, metrics=keys, do_minimize=True, random_seed=seed)
        # Syne Tune's RandomSearch baseline takes one metric; its multi-objective searcher does the same sampling
        from syne_tune.optimizer.schedulers.searchers.random_searcher import MultiObjectiveRandomSearcher
        from syne_tune.optimizer.schedulers.single_fidelity_scheduler import SingleFidelityScheduler

        searcher = MultiObjectiveRandomSearcher(config_space=space, random_seed=seed)
        return SingleFidelityScheduler(space, metrics=keys, do_minimize=True, searcher=searcher, random_seed=seed)
    if spec.algorithm == "bo":
        return baselines.BORE(space, metric=keys[0], do_minimize=True, random_seed=seed)
    raise ValueError(f"not a Syne Tune algorithm: {spec.algorithm}")


def _capped(inner: Any, max_new: int | None) -> Any:
    """Wrap a scheduler so it suggests at most ``max_new`` trials, then lets running ones finish."""
    from syne_tune.optimizer.scheduler import TrialScheduler

    class Capped(TrialScheduler):
        def __init__(self) -> None:
            super().__init__(random_seed=inner.random_seed)
            self.inner, self.started = inner, 0

        def suggest(self) -> Any:
            if max_new is not None and self.started >= max_new:
                return None  # the Tuner waits for running trials, then ends
            suggestion = self.inner.suggest()
            if suggestion is not None:
                self.started += 1
            return suggestion

        def on_trial_add(self, trial: Any) -> None:
            self.inner.on_trial_add(trial)

        def on_trial_error(self, trial: Any) -> None:
            self.inner.on_trial_error(trial)

        def on_trial_result(self, trial: Any, result: dict[str, Any]) -> str:
            return self.inner.on_trial_result(trial, result)

        def on_trial_complete(self, trial: Any, result: dict[str, Any]) -> None:
            self.inner.on_trial_complete(trial, result)

        def on_trial_remove(self, trial: Any) -> None:
            self.inner.on_trial_remove(trial)

        def metric_names(self) -> list[str]:
            return self.inner.metric_names()

        def metric_mode(self) -> str:
            return self.inner.metric_mode()

        def metadata(self) -> dict[str, Any]:
            return self.inner.metadata()

    return Capped()


def replay(scheduler: Any, records: list[dict[str, Any]]) -> int:
    """Feed earlier sessions' trials to a fresh scheduler as the Tuner would have; returns how many."""
    from syne_tune.backend.trial_status import Trial
    from syne_tune.optimizer.scheduler import SchedulerDecision

    from sagelab.hpo.report import syne_tune_payload

    count = 0
    for record in records:
        if record.get("status") not in ("completed", "stopped", "failed"):
            continue
        trial = Trial(trial_id=int(record["trial_id"]), config=dict(record["config"]), creation_time=datetime.now())
        scheduler.on_trial_add(trial)
        history = (record.get("result") or {}).get("history") or []
        removed = False
        for entry in history:
            if scheduler.on_trial_result(trial, syne_tune_payload(entry)) == SchedulerDecision.STOP:
                scheduler.on_trial_remove(trial)
                removed = True
                break
        if not removed:
            if history and record["status"] == "completed":
                scheduler.on_trial_complete(trial, syne_tune_payload(history[-1]))
            else:
                scheduler.on_trial_error(trial)
        count += 1
    return count


def _study_backend(entry_point: str, first_id: int) -> Any:
    from syne_tune.backend import LocalBackend

    class StudyBackend(LocalBackend):
        """LocalBackend whose trial ids continue after ``first_id`` (earlier sessions' trials)."""

        def new_trial_id(self) -> int:
            return first_id + len(self.trial_ids)

    return StudyBackend(entry_point=entry_point, pass_args_as_json=True, rotate_gpus=False)


def _callbacks(spec: StudySpec, state: StudyState, session: int) -> list[Any]:
    from syne_tune.backend.trial_status import Status
    from syne_tune.optimizer.scheduler import SchedulerDecision
    from syne_tune.results_callback import StoreResultsCallback
    from syne_tune.tuner_callback import TunerCallback

    class Journal(TunerCallback):
        """Keeps ``trials/<id>/trial.json`` in step with what the Tuner sees."""

        def __init__(self) -> None:
            self.last_tick = 0.0

        def on_start_trial(self, trial: Any) -> None:
            update_trial(spec.trial_dir(trial.trial_id), trial_id=trial.trial_id, config=dict(trial.config),
                         status="running", session=session, started=time.time())

        def on_trial_result(self, trial: Any, status: str, result: dict[str, Any], decision: str) -> None:
            if decision != SchedulerDecision.STOP:
                return
            if int(result.get(EPOCH_KEY, 0)) >= spec.max_resource:
                # the full-fidelity report is printed only after the run exited cleanly
                finish_trial(spec.trial_dir(trial.trial_id), spec.keep_checkpoints, status="completed")
            else:
                finish_trial(spec.trial_dir(trial.trial_id), spec.keep_checkpoints, status="stopped",
                             reason="scheduler")

        def on_fetch_status_results(self, trial_status_dict: dict, new_results: list) -> None:
            for trial_id, (_trial, status) in trial_status_dict.items():
                tdir = spec.trial_dir(trial_id)
                if status == Status.failed:
                    exit_info = read_json(tdir / "exit.json") or {}
                    reason = exit_info.get("reason") or f"exit code {exit_info.get('returncode', 'unknown')}"
                    finish_trial(tdir, spec.keep_checkpoints, status="failed", reason=reason,
                                 error=tail(tdir / "std.err"))
                elif status == Status.completed:
                    if (read_json(tdir / "trial.json") or {}).get("status") == "running":
                        finish_trial(tdir, spec.keep_checkpoints, status="completed")

        def on_loop_end(self) -> None:
            if time.monotonic() - self.last_tick > 2.0:
                state.tick()
                self.last_tick = time.monotonic()

    return [StoreResultsCallback(), Journal()]


class StopAtBudget:
    """Syne Tune stop criterion: this session's share of the wall-clock and cost budgets is spent."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget

    def __call__(self, status: Any) -> bool:
        wall_s, cost_usd = self.budget.wall_left, self.budget.max_cost_usd
        if wall_s is not None and status.wallclock_time >= wall_s:
            return True
        if cost_usd is not None:
            spent = sum(s.last_metrics.get("cost_usd", 0.0) for s in status.trial_metric_statistics.values())
            return self.budget.cost_before + spent >= cost_usd
        return False


def run(spec: StudySpec, state: StudyState) -> dict[str, Any]:
    """Run (or continue) a Syne Tune study; returns what this session did."""
    import numpy as np
    from syne_tune import Tuner

    session, interrupted, records, budget = open_session(spec, state)
    seed = spec.seed + 1000 * session  # a resumed session must not redraw the first session's configs
    np.random.seed(seed % 2**32)  # MO-ASHA samples through numpy's global generator
    scheduler = make_scheduler(spec, seed)
    replayed = replay(scheduler, records)
    info = {"session": session, "replayed": replayed, "interrupted_before": interrupted, "new_trials": 0}
    if budget.exhausted:
        return info
    first_id = 1 + max((int(r["trial_id"]) for r in records), default=-1)
    backend = _study_backend(str(Path(__file__).with_name("trial_entry.py")), first_id)
    old_env = {k: os.environ.get(k) for k in (SPEC_ENV, "SYNETUNE_FOLDER", STUDY_PID_ENV)}
    os.environ[SPEC_ENV] = str(spec.spec_path)
    os.environ[STUDY_PID_ENV] = str(os.getpid())
    os.environ["SYNETUNE_FOLDER"] = str(spec.dir / "syne_tune")
    try:
        tuner = Tuner(
            trial_backend=backend,
            scheduler=_capped(scheduler, budget.trials_left),
            stop_criterion=StopAtBudget(budget),
            n_workers=spec.n_workers,
            sleep_time=0.5,
            results_update_interval=5.0,
            print_update_interval=60.0,
            max_failures=spec.max_failures if spec.max_failures is not None else 10**9,
            tuner_name=f"session-{session}",
            suffix_tuner_name=False,
            save_tuner=False,
            callbacks=_callbacks(spec, state, session),
            trial_backend_path=str(spec.dir / "trials"),
        )
        aborted = True
        try:
            tuner.run()
            aborted = False
        finally:
            state.tick()
            # trials the Tuner killed at the end of the budget were stopped; on an interrupt they
            # were cut short and the next session does not count them
            for record in load_trials(spec.dir):
                if record.get("status") == "running" and record.get("session") == session:
                    fields = {"status": "interrupted"} if aborted else {"status": "stopped", "reason": "budget"}
                    finish_trial(spec.trial_dir(record["trial_id"]), spec.keep_checkpoints, **fields)
        info["new_trials"] = len(backend.trial_ids)
    finally:
        for key, value in old_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return info
