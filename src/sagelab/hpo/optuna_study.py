"""Optuna studies: NSGA-II and TPE, with the study in an RDB (SQLite) storage under mlruns/.

Each trial is the same ``python run.py ...`` subprocess as with Syne Tune
(:meth:`StudySpec.trial_argv`). The parent samples the configuration
(``trial.suggest_*``), the child's :class:`~sagelab.hpo.callback.HPOCallback`
reports every epoch to the same storage and asks ``should_prune`` (TPE with one
objective, successive-halving pruner over epochs; Optuna cannot prune
multi-objective trials), and the parent reads the final objectives from the
trial's ``result.json``.

Resume: the storage keeps every finished trial. Trials that were running when
the study died are marked FAIL in the storage and enqueued again with the same
parameters, so a resumed study re-runs exactly what it lost. One study process
per study is assumed here (more parallelism: ``hpo.n_workers`` threads). A study
in a shared ``hpo.storage`` runs in any number of worker processes instead:
:mod:`sagelab.hpo.optuna_shared`, which reuses :class:`_Trials` to run each trial.
"""

from __future__ import annotations

import threading
import time
from typing import Any, NoReturn

from sagelab.hpo.lifeline import RunningTrials, interrupt_on_signals, timed_out
from sagelab.hpo.progress import Progress
from sagelab.hpo.records import (
    StudyState,
    end_running,
    finish_trial,
    lost_trials,
    open_session,
    read_json,
    tail,
    update_trial,
)
from sagelab.hpo.spec import StudySpec


class TrialFailed(Exception):
    """A trial process failed; Optuna records the trial as FAIL and the study goes on."""


def make_pruner(spec: StudySpec) -> Any:
    import optuna

    if not spec.multi_fidelity:
        return optuna.pruners.NopPruner()
    return optuna.pruners.SuccessiveHalvingPruner(
        min_resource=spec.grace_period, reduction_factor=int(spec.reduction_factor), min_early_stopping_rate=0
    )


def make_sampler(spec: StudySpec, seed: int) -> Any:
    import optuna

    if spec.algorithm == "nsga2":
        population = max(2, min(20, (spec.max_trials or 40) // 4))
        return optuna.samplers.NSGAIISampler(population_size=population, seed=seed)
    if spec.algorithm == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(3, min(10, (spec.max_trials or 40) // 4)))
    raise ValueError(f"not an Optuna algorithm: {spec.algorithm}")


def open_study(spec: StudySpec, seed: int) -> tuple[Any, Any]:
    """(study, storage): created on the first session, loaded on later ones."""
    from sagelab.hpo.storage import open_storage

    storage = open_storage(spec.optuna_storage)
    return create(spec, storage, seed), storage


def create(spec: StudySpec, storage: Any, seed: int) -> Any:
    """The study in ``storage``, created by whoever comes first (``load_if_exists``), with this process's sampler."""
    import optuna

    study = optuna.create_study(
        study_name=spec.name,
        storage=storage,
        sampler=make_sampler(spec, seed),
        pruner=make_pruner(spec),
        directions=["minimize"] * len(spec.objectives),
        load_if_exists=True,
    )
    if len(spec.objectives) > 1:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([o.key for o in spec.objective_list()])
    return study


def requeue_lost(study: Any, storage: Any, lost: list[dict[str, Any]]) -> None:
    """Re-run what a dead study process lost: fail its RUNNING trials, enqueue their configurations again."""
    from optuna.trial import TrialState

    study_id = storage.get_study_id_from_name(study.study_name)
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, frozen.number)
        storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
    # a session that died before running what it enqueued left it waiting: it runs first anyway
    waiting = {t.user_attrs.get("retry_of") for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))}
    for record in lost:
        if record.get("config") and int(record["trial_id"]) not in waiting:
            study.enqueue_trial(record["config"], user_attrs={"retry_of": int(record["trial_id"])})


def seed_study(spec: StudySpec, study: Any) -> None:
    """The study's first trials, once per study: enqueue :attr:`StudySpec.points` (the default configuration
    first, so it is trial 0) and add the warm-start study's trials as finished ones (TPE models them; they are
    not trials of this study: no folder, no budget, not in its results). Idempotent: each enqueued point is
    marked with its index and warm trials with their origin, so a resumed study never adds one twice."""
    import optuna

    from sagelab.hpo.seeding import ORIGIN, SEED_INDEX

    trials = study.get_trials(deepcopy=False)
    space = spec.search_space()  # points are effective configs; Optuna names a conditional lr by its branch
    seeded = {t.user_attrs.get(SEED_INDEX) for t in trials if SEED_INDEX in t.user_attrs}
    for i, point in enumerate(spec.points):
        if i not in seeded:
            origin = "default" if i == 0 and spec.default_config is not None else "point"
            study.enqueue_trial(space.to_backend(point), user_attrs={ORIGIN: origin, SEED_INDEX: i})
    if spec.warm_trials and not any(t.user_attrs.get(ORIGIN) == "warm_start" for t in trials):
        distributions = space.optuna()
        keys = [o.key for o in spec.objective_list()]
        params = [space.to_backend(t["config"]) for t in spec.warm_trials]
        study.add_trials([optuna.trial.create_trial(
            params=p, distributions={n: distributions[n] for n in p},
            values=[float(t["values"][k]) for k in keys],
            user_attrs={ORIGIN: "warm_start", "sagelab.warm_from": f"{spec.warm_start}#{t['trial_id']}"},
        ) for t, p in zip(spec.warm_trials, params)])


def _taken(study: Any) -> int:
    """Trials of this study that were asked for (enqueued ones still waiting and warm-start ones are not)."""
    from optuna.trial import TrialState

    from sagelab.hpo.seeding import ORIGIN

    return sum(1 for t in study.get_trials(deepcopy=False)
               if t.state != TrialState.WAITING and t.user_attrs.get(ORIGIN) != "warm_start")


def one_pop_at_a_time(study: Any) -> None:
    """Make taking an enqueued trial atomic among this process's ``n_workers`` threads.

    Optuna pops a WAITING trial by reading it, then setting it RUNNING if it still is WAITING; on SQLite the
    row lock it asks for does not exist, so two threads asking at once both take the default configuration and
    one fails telling it ("Cannot tell a COMPLETE trial"). A local study has one process (the session lock), so
    a lock around the pop is enough."""
    pop = study._pop_waiting_trial_id
    lock = threading.Lock()

    def locked_pop() -> int | None:
        with lock:
            return pop()

    study._pop_waiting_trial_id = locked_pop


class _Trials:
    """Runs trial processes and kills whatever is still running when the study stops."""

    def __init__(self, spec: StudySpec, deadline: float | None, progress: Progress) -> None:
        self.spec, self.deadline, self.progress = spec, deadline, progress
        self.failed = 0
        self.processes = RunningTrials()
        self.kill_all = self.processes.kill_all

    def objective(self, trial: Any) -> tuple[float, ...] | float:
        import optuna

        spec = self.spec
        config = spec.search_space().suggest(trial)
        tdir = spec.trial_dir(trial.number)
        tdir.mkdir(parents=True, exist_ok=True)
        update_trial(tdir, trial_id=trial.number, config=config, status="running", started=time.time(),
                     retry_of=trial.user_attrs.get("retry_of"))
        argv = spec.trial_argv(trial.number, config)
        (tdir / "command.txt").write_text(" ".join(argv) + "\n")
        from sagelab.config import PROJECT_ROOT

        budget_left = None if self.deadline is None else max(1.0, self.deadline - time.monotonic())
        limit = min((t for t in (budget_left, spec.trial_timeout_s) if t is not None), default=None)
        with open(tdir / "std.out", "a") as out, open(tdir / "std.err", "a") as err:
            proc = self.processes.launch(argv, cwd=PROJECT_ROOT, stdout=out, stderr=err)
            code = None if proc is None else self.processes.wait(proc, limit)
        if self.processes.stopping:
            raise TrialFailed(f"trial {trial.number} interrupted with its study")
        if code is None and limit == spec.trial_timeout_s:
            with open(tdir / "std.err", "a") as err:
                reason = timed_out(trial.number, limit, err)
            self._failed(trial.number, reason)
        if code is None:
            finish_trial(tdir, spec.keep_checkpoints, status="stopped", reason="budget")
            raise TrialFailed(f"trial {trial.number} stopped at the study's wall-clock budget")
        result = read_json(tdir / "result.json") or {}
        history = result.get("history") or []
        if code != 0 or not history:
            self._failed(trial.number, f"exit code {code}" if code != 0 else "no validation round reported")
        last = history[-1]
        trial.set_user_attr("cost_usd", float(last.get("cost_usd", 0.0)))
        trial.set_user_attr("rounds", len(history))
        if result.get("pruned"):
            self.progress.end_trial(trial.number, status="pruned")
            raise optuna.TrialPruned(f"pruned after {len(history)} epoch(s)")
        self.progress.end_trial(trial.number, status="completed")
        values = tuple(float(last["objectives"][o.key]) for o in spec.objective_list())
        return values if len(values) > 1 else values[0]

    def _failed(self, number: int, reason: str) -> NoReturn:
        with self.processes.lock:
            self.failed += 1
        tdir = self.spec.trial_dir(number)
        self.progress.end_trial(number, status="failed", reason=reason, error=tail(tdir / "std.err"))
        raise TrialFailed(f"trial {number} failed ({reason}); see {tdir / 'std.err'}")


def run(spec: StudySpec, state: StudyState) -> dict[str, Any]:
    """Run (or continue) an Optuna study; returns what this session did."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    session, interrupted, records, budget = open_session(spec, state)
    study, storage = open_study(spec, spec.seed + 1000 * session)
    lost = lost_trials(records)
    requeue_lost(study, storage, lost)
    seed_study(spec, study)  # under the session lock: no other process seeds this study now
    one_pop_at_a_time(study)
    info: dict[str, Any] = {"session": session, "interrupted_before": interrupted,
                            "rerun": [int(r["trial_id"]) for r in lost], "new_trials": 0}
    if budget.exhausted:
        return {**info, "gave_up": budget.too_many_failures(0)}
    deadline = None if budget.wall_left is None else time.monotonic() + budget.wall_left
    runner = _Trials(spec, deadline, Progress(spec, budget, records))
    started = _taken(study)

    def after_trial(study: Any, frozen: Any) -> None:
        state.tick()
        if spec.max_cost_usd is not None:
            spent = sum(float(t.user_attrs.get("cost_usd", 0.0)) for t in study.get_trials(deepcopy=False))
            if spent >= spec.max_cost_usd:
                study.stop()
        if budget.too_many_failures(runner.failed):
            study.stop()
            runner.kill_all()  # as Syne Tune's Tuner does at a stop: what runs now is run again on resume

    try:
        with interrupt_on_signals(runner.kill_all):
            study.optimize(
                runner.objective,
                n_trials=budget.trials_left,
                timeout=budget.wall_left,
                n_jobs=spec.n_workers,
                catch=(TrialFailed,),
                callbacks=[after_trial],
                gc_after_trial=False,
            )
    finally:
        runner.kill_all()
        end_running(spec.dir, spec.keep_checkpoints, status="interrupted")
        state.tick()
    info["new_trials"] = _taken(study) - started
    info["gave_up"] = budget.too_many_failures(runner.failed)
    return info
