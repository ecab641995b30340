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

Resume (:mod:`sagelab.hpo.syne_resume`): a new session replays every earlier
trial into a fresh scheduler with the study's seed (so ASHA's rungs and BORE's
model see them and the random stream moves on as it did), runs the trials the
last session lost again first, numbers new trials after the old ones and spends
only what is left of the budget.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Callable

from sagelab.hpo.lifeline import STUDY_PID_ENV
from sagelab.hpo.progress import Progress
from sagelab.hpo.records import (
    Budget,
    StudyState,
    end_session_trials,
    open_session,
    read_json,
    tail,
    update_trial,
)
from sagelab.hpo.report import EPOCH_KEY
from sagelab.hpo.spec import StudySpec
from sagelab.hpo.syne_resume import capped, replay
from sagelab.hpo.trial_entry import SPEC_ENV


GLOBAL_STREAM = 1  # numpy's global generator: SeedSequence([study seed, this]), apart from every searcher's own


def make_scheduler(spec: StudySpec, seed: int) -> Any:
    """The Syne Tune scheduler of ``spec.algorithm`` over the minimised objective keys.

    Its ``points_to_evaluate`` are :meth:`StudySpec.first_configs` (the default configuration first): a
    searcher hands them out before it samples, so a resumed session's replay consumes them as the first
    session's Tuner did. MO-ASHA takes no such argument; :func:`_moasha` gives it the same behaviour."""
    from syne_tune.optimizer import baselines

    search_space = spec.search_space()
    space = search_space.syne_tune()
    keys = [o.key for o in spec.objective_list()]
    # Syne Tune has no conditional spaces: it samples every branch (lr@minilm, lr@bert_tiny) and the trial applies
    # the chosen one's; a point sets the chosen branch and the others' middle (Syne Tune wants complete configs)
    points = [search_space.to_backend(p, fill=True) for p in spec.first_configs()]
    fidelity = dict(time_attr=EPOCH_KEY, max_t=spec.max_resource, grace_period=spec.grace_period,
                    reduction_factor=spec.reduction_factor)
    if spec.algorithm == "asha":
        # the ASHA baseline hands its points to the searcher twice over and Syne Tune warns that it uses one
        logging.getLogger("syne_tune.optimizer.schedulers.searchers.last_value_multi_fidelity_searcher") \
            .setLevel(logging.ERROR)
        return baselines.ASHA(space, metric=keys[0], do_minimize=True, random_seed=seed,
                              points_to_evaluate=points, **fidelity)
    if spec.algorithm == "moasha":
        return _moasha(points)(space, metrics=keys, do_minimize=True, random_seed=seed, **fidelity)
    if spec.algorithm == "random":
        if len(keys) == 1:
            return baselines.RandomSearch(space, metrics=keys, do_minimize=True, random_seed=seed,
                                          points_to_evaluate=points)
        # Syne Tune's RandomSearch baseline takes one metric; its multi-objective searcher does the same sampling
        from syne_tune.optimizer.schedulers.searchers.random_searcher import MultiObjectiveRandomSearcher
        from syne_tune.optimizer.schedulers.single_fidelity_scheduler import SingleFidelityScheduler

        searcher = MultiObjectiveRandomSearcher(config_space=space, random_seed=seed, points_to_evaluate=points)
        return SingleFidelityScheduler(space, metrics=keys, do_minimize=True, searcher=searcher, random_seed=seed)
    if spec.algorithm == "bo":
        return baselines.BORE(space, metric=keys[0], do_minimize=True, random_seed=seed, points_to_evaluate=points)
    raise ValueError(f"not a Syne Tune algorithm: {spec.algorithm}")


def _moasha(points: list[dict[str, Any]]) -> Any:
    """MO-ASHA suggesting ``points`` (in order) before it samples, as Syne Tune's searchers do."""
    from syne_tune.optimizer.scheduler import TrialSuggestion
    from syne_tune.optimizer.schedulers.multiobjective.moasha import MOASHA

    class SeededMOASHA(MOASHA):
        def suggest(self) -> Any:
            if points:
                return TrialSuggestion.start_suggestion(points.pop(0))
            return super().suggest()

    return SeededMOASHA


def _study_backend(entry_point: str, first_id: int) -> Any:
    from syne_tune.backend import LocalBackend

    class StudyBackend(LocalBackend):
        """LocalBackend whose trial ids continue after ``first_id`` (earlier sessions' trials)."""

        def new_trial_id(self) -> int:
            return first_id + len(self.trial_ids)

    return StudyBackend(entry_point=entry_point, pass_args_as_json=True, rotate_gpus=False)


def _journal(spec: StudySpec, state: StudyState, session: int, scheduler: Any, progress: Progress) -> Any:
    from syne_tune.backend.trial_status import Status
    from syne_tune.optimizer.scheduler import SchedulerDecision
    from syne_tune.tuner_callback import TunerCallback

    class Journal(TunerCallback):
        """Keeps ``trials/<id>/trial.json`` in step with what the Tuner sees, and counts the failures."""

        def __init__(self) -> None:
            self.last_tick = 0.0
            self.ended: set[int] = set()
            self.failed: set[int] = set()

        def end(self, trial_id: int, **fields: Any) -> None:
            # a trial that exits after its full-fidelity report is seen both as completed and as stopped there
            if trial_id not in self.ended:
                self.ended.add(trial_id)
                progress.end_trial(trial_id, **fields)

        def on_start_trial(self, trial: Any) -> None:
            update_trial(spec.trial_dir(trial.trial_id), trial_id=trial.trial_id, config=dict(trial.config),
                         status="running", session=session, started=time.time(),
                         retry_of=scheduler.retry_of.get(trial.trial_id))

        def on_trial_result(self, trial: Any, status: str, result: dict[str, Any], decision: str) -> None:
            if decision != SchedulerDecision.STOP:
                return
            if int(result.get(EPOCH_KEY, 0)) >= spec.max_resource:
                # the full-fidelity report is printed only after the run exited cleanly
                self.end(trial.trial_id, status="completed")
            else:
                self.end(trial.trial_id, status="stopped", reason="scheduler")

        def on_fetch_status_results(self, trial_status_dict: dict, new_results: list) -> None:
            for trial_id, (_trial, status) in trial_status_dict.items():
                tdir = spec.trial_dir(trial_id)
                if status == Status.failed and trial_id not in self.ended:
                    self.failed.add(trial_id)
                    exit_info = read_json(tdir / "exit.json") or {}
                    reason = exit_info.get("reason") or f"exit code {exit_info.get('returncode', 'unknown')}"
                    self.end(trial_id, status="failed", reason=reason, error=tail(tdir / "std.err"))
                elif status == Status.completed:
                    self.end(trial_id, status="completed")

        def on_loop_end(self) -> None:
            if time.monotonic() - self.last_tick > 2.0:
                state.tick()
                self.last_tick = time.monotonic()

    return Journal()


class StopAtBudget:
    """Syne Tune stop criterion: this session's share of the wall-clock and cost budgets is spent, or
    ``give_up()`` (too many failed trials)."""

    def __init__(self, budget: Budget, give_up: Callable[[], bool]) -> None:
        self.budget, self.give_up = budget, give_up

    def __call__(self, status: Any) -> bool:
        if self.give_up():
            return True
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
    from syne_tune.results_callback import StoreResultsCallback

    session, interrupted, records, budget = open_session(spec, state)
    # every session starts the study's random stream afresh and replays its way to where the last one stopped.
    # MO-ASHA and random search sample through numpy's global generator, and so does ASHA's searcher once it has 5
    # results (before, it draws from its own RandomState(seed)): seeded alike, the two streams are one, and ASHA
    # ran its first random configurations again as new trials. Hence a global stream of its own.
    np.random.seed(np.random.SeedSequence([spec.seed, GLOBAL_STREAM]).generate_state(1)[0])
    inner = make_scheduler(spec, spec.seed)
    lost = replay(inner, records)
    info: dict[str, Any] = {"session": session, "replayed": len(records), "interrupted_before": interrupted,
                            "rerun": [t.trial_id for t in lost], "new_trials": 0}
    if budget.exhausted:
        return {**info, "gave_up": budget.too_many_failures(0)}
    # a trial started just before its session died may have a folder and no record yet: never reuse its id
    started_ids = [int(d.name) for d in (spec.dir / "trials").glob("*") if d.name.isdigit()]
    first_id = 1 + max([int(r["trial_id"]) for r in records] + started_ids, default=-1)
    backend = _study_backend(str(Path(__file__).with_name("trial_entry.py")), first_id)
    progress = Progress(spec, budget, records)
    scheduler = capped(inner, budget.trials_left, lost)
    journal = _journal(spec, state, session, scheduler, progress)
    scheduler.give_up = lambda: budget.too_many_failures(len(journal.failed))
    old_env = {k: os.environ.get(k) for k in (SPEC_ENV, "SYNETUNE_FOLDER", STUDY_PID_ENV)}
    os.environ[SPEC_ENV] = str(spec.spec_path)
    os.environ["SYNETUNE_FOLDER"] = str(spec.dir / "syne_tune")
    os.environ[STUDY_PID_ENV] = str(os.getpid())
    try:
        tuner = Tuner(
            trial_backend=backend,
            scheduler=scheduler,
            stop_criterion=StopAtBudget(budget, scheduler.give_up),
            n_workers=spec.n_workers,
            sleep_time=0.5,
            results_update_interval=5.0,
            print_update_interval=60.0,
            max_failures=10**9,  # hpo.max_failures counts over sessions: scheduler.give_up
            tuner_name=f"session-{session}",
            suffix_tuner_name=False,
            save_tuner=False,
            callbacks=[StoreResultsCallback(), journal],
            trial_backend_path=str(spec.dir / "trials"),
        )
        aborted = True
        try:
            tuner.run()
            aborted = False
        finally:
            state.tick()
            end_session_trials(spec, cut_short=aborted or scheduler.give_up())  # the Tuner's kills at the budget
        info["new_trials"] = len(backend.trial_ids)
        info["gave_up"] = scheduler.give_up()
    finally:
        for key, value in old_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return info
