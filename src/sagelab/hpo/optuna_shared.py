"""One Optuna study, many worker processes: ``hpo.storage=<RDB URL>``.

Every ``python run.py ... hpo=tpe hpo.storage=<url> hpo.study_name=<name>`` process is a worker of the same
study, on this machine or another; ``hpo.n_workers=N`` starts N of them here (:func:`launch_workers`). A
worker loops (:func:`work`): fail the trials whose worker's heartbeat stopped (Optuna enqueues each again with
its parameters), count the study in the storage, ``ask`` a trial, run it as the local backend does
(:class:`sagelab.hpo.optuna_study._Trials`), ``tell`` the outcome, until ``hpo.max_trials`` trials have finished.

Exactly ``max_trials``, whatever the interleaving. The storage numbers trials atomically in creation order, so
each asked trial takes its place in one total order; it runs only if fewer than ``max_trials`` trials *before
it* claim the budget (waiting, running, completed, pruned, or failed/stopped as the local journal counts
them). A trial over budget has asked nothing of the sampler yet: it is told FAIL with ``sagelab.status =
over_budget`` and never appears in results. Of ``max_trials + 1`` trials that would finish, the last in the
order saw all the others claiming, so it cannot have run. A trial that is over budget while another worker's
trial could still be lost is not a loss either: workers leave only once ``max_trials`` have *finished*, and
wait (never give up) while the budget is claimed by running trials, whose heartbeat fails them if their
worker died; the retry is a WAITING trial, which every worker asks for first.

Parameters never repeat through a race: a WAITING trial is popped by one worker only (the storage's state
change), and a fresh trial's sampler is seeded with the study's seed plus the trial's number, so TPE's startup
draws are a function of the number, not of which worker asked.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, replace
from typing import Any

from sagelab.hpo import storage as rdb
from sagelab.hpo.records import Budget, finish_trial, read_json
from sagelab.hpo.spec import StudySpec

WORKER_ENV = "SAGELAB_HPO_WORKER"  # set on the processes hpo.n_workers starts: they work, they start no others
COUNTED = ("failed", "stopped")    # FAIL trials the budget counts (the local journal counts them as finished)


@dataclass(frozen=True)
class Tally:
    """The study as the storage holds it now."""

    finished: int  # completed, pruned, failed, stopped
    failed: int
    cost: float
    waiting: int
    claimed: int   # finished + running (a running trial holds its place in the budget)
    running: tuple[int, ...]  # their numbers


def claims(frozen: Any) -> bool:
    """Whether a trial holds a place in the budget."""
    from optuna.trial import TrialState

    from sagelab.hpo.seeding import ORIGIN

    if frozen.user_attrs.get(ORIGIN) == "warm_start":  # an earlier study's trial, added to seed the model
        return False
    if frozen.state in (TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return frozen.state == TrialState.FAIL and frozen.user_attrs.get(rdb.STATUS) in COUNTED


def tally(trials: list[Any]) -> Tally:
    from optuna.trial import TrialState

    finished = [t for t in trials if claims(t) and t.state not in (TrialState.WAITING, TrialState.RUNNING)]
    running = tuple(t.number for t in trials if t.state == TrialState.RUNNING)
    return Tally(finished=len(finished),
                 failed=sum(1 for t in trials if t.user_attrs.get(rdb.STATUS) == "failed"),
                 cost=sum(float(t.user_attrs.get("cost_usd", 0.0)) for t in trials),
                 waiting=sum(1 for t in trials if t.state == TrialState.WAITING),
                 claimed=len(finished) + len(running), running=running)


def in_budget(study: Any, number: int, max_trials: int | None) -> bool:
    """Whether trial ``number`` is among the first ``max_trials`` claims of the study's order."""
    if max_trials is None:
        return True
    return sum(1 for t in study.get_trials(deepcopy=False) if t.number < number and claims(t)) < max_trials


def fail_stale(study: Any) -> None:
    """Fail running trials whose heartbeat is older than ``hpo.grace_s``; the retry callback enqueues them."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def stop_reason(spec: StudySpec, now: Tally, deadline: float | None) -> str | None:
    """Why this worker asks for no more trials: the study is done, gave up, or a budget is spent."""
    if spec.max_trials is not None and now.finished >= spec.max_trials:
        return "done"
    if spec.max_failures is not None and now.failed > spec.max_failures:
        return "gave_up"
    if spec.max_cost_usd is not None and now.cost >= spec.max_cost_usd:
        return "cost"
    if deadline is not None and time.monotonic() >= deadline:
        return "wallclock"
    return None


def work(spec: StudySpec, study: Any, storage: Any) -> dict[str, Any]:
    """Run trials of the shared study until it is done (or this worker's budget is spent); what it did."""
    from sagelab.hpo.lifeline import interrupt_on_signals
    from sagelab.hpo.optuna_study import _Trials
    from sagelab.hpo.progress import Progress

    deadline = None if spec.max_wallclock_s is None else time.monotonic() + spec.max_wallclock_s
    first = tally(study.get_trials(deepcopy=False))
    budget = Budget(trials_left=None if spec.max_trials is None else spec.max_trials - first.finished,
                    wall_left=spec.max_wallclock_s, cost_before=first.cost, max_cost_usd=spec.max_cost_usd,
                    failed_before=first.failed, max_failures=spec.max_failures)
    progress = Progress(spec, budget, [])
    progress.finished_before = first.finished
    runner = _Trials(spec, deadline, progress)
    poll = max(0.2, min(2.0, spec.heartbeat_s / 2))
    ran: list[int] = []
    held: dict[str, int | None] = {"trial": None}  # the trial this worker holds now
    try:
        with interrupt_on_signals(runner.kill_all):
            reason = _loop(spec, study, storage, runner, progress, deadline, poll, ran, held)
    except KeyboardInterrupt:  # SIGTERM / Ctrl-C: the running trial stays RUNNING for another worker to rerun
        return {"worker": worker_name(), "ran": ran, "interrupted": True, "left_running": held["trial"]}
    return {"worker": worker_name(), "ran": ran, "stopped_because": reason, "gave_up": reason == "gave_up"}


def _loop(spec: StudySpec, study: Any, storage: Any, runner: Any, progress: Any, deadline: float | None,
          poll: float, ran: list[int], held: dict[str, int | None]) -> str:
    """The worker's loop (see :func:`work`); returns why it stopped."""
    from optuna.storages._heartbeat import get_heartbeat_thread

    while True:
        fail_stale(study)
        now = tally(study.get_trials(deepcopy=False))
        reason = stop_reason(spec, now, deadline)
        if reason is not None:
            return reason
        if not now.waiting and spec.max_trials is not None and now.claimed >= spec.max_trials:
            time.sleep(poll)  # the budget is held by running trials: wait for them, or for their heartbeat
            continue
        with warnings.catch_warnings(), rdb.ask_lock(spec):  # "heartbeat is meant for Study.optimize": it beats below
            warnings.filterwarnings("ignore", message="Heartbeat of storage")
            trial = study.ask()
        held["trial"] = trial.number
        with get_heartbeat_thread(trial._trial_id, storage):
            if not in_budget(study, trial.number, spec.max_trials):
                trial.set_user_attr(rdb.STATUS, "over_budget")
                study.tell(trial, state=_state("FAIL"))
                held["trial"] = None
                continue
            progress.finished_before = now.finished - progress.done
            run_trial(spec, study, trial, runner)
            ran.append(trial.number)
            held["trial"] = None


def _state(name: str) -> Any:
    from optuna.trial import TrialState

    return TrialState[name]


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_trial(spec: StudySpec, study: Any, trial: Any, runner: Any) -> None:
    """Sample (or take the enqueued parameters of) one trial, run it, and tell the storage how it ended."""
    import optuna

    from sagelab.hpo.optuna_study import TrialFailed, make_sampler

    study.sampler = make_sampler(spec, spec.seed + trial.number)  # the draw depends on the number alone
    history = study._storage.get_trial_system_attrs(trial._trial_id).get("retry_history") or []
    trial.set_user_attr(rdb.WORKER, worker_name())
    trial.set_user_attr(rdb.STARTED, time.time())
    if history:
        trial.set_user_attr("retry_of", history[-1])
    tdir = spec.trial_dir(trial.number)
    state, values, status = _state("COMPLETE"), None, None
    try:
        values = runner.objective(trial)
    except optuna.TrialPruned:
        state = _state("PRUNED")
    except TrialFailed:
        if runner.stopping:  # interrupted with this worker: left RUNNING, another worker runs it again
            raise KeyboardInterrupt from None
        state, status = _state("FAIL"), (read_json(tdir / "trial.json") or {}).get("status", "failed")
        trial.set_user_attr(rdb.STATUS, status)
    except BaseException:
        finish_trial(tdir, keep_checkpoints=True, status="interrupted")
        raise
    result = read_json(tdir / "result.json")
    if result is not None:
        trial.set_user_attr(rdb.RESULT, result)
    try:
        study.tell(trial, values, state=state)
    except optuna.exceptions.UpdateFinishedTrialError:  # this worker stalled past hpo.grace_s: taken for dead
        finish_trial(tdir, keep_checkpoints=True, status="interrupted")
        print(f"sagelab hpo: trial {trial.number} had been failed for a stale heartbeat; another worker runs it "
              "again", file=sys.stderr)


def launch_workers(spec: StudySpec) -> dict[str, Any]:
    """``hpo.n_workers`` worker processes on this machine, each the study's own command; waits for all of them.

    Each runs in its own process group, dies with this process (lifeline), and logs to ``workers/<k>.log``.
    SIGTERM or Ctrl-C here is passed on as SIGTERM: each worker stops its trial and leaves it to be run again.
    """
    import signal

    from sagelab.config import PROJECT_ROOT
    from sagelab.hpo.lifeline import interrupt_on_signals, launch, stop

    folder = spec.dir / "workers"
    folder.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, str(PROJECT_ROOT / "run.py"), *spec.study_overrides]
    procs: list[subprocess.Popen] = []

    def pass_on() -> None:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    print(f"sagelab hpo: {spec.n_workers} workers on study {spec.name}, logs in {folder}", flush=True)
    try:
        with interrupt_on_signals(pass_on):
            for k in range(spec.n_workers):
                with open(folder / f"{k}.log", "a") as log:
                    procs.append(launch([*argv, f"hydra.run.dir={folder / str(k)}"], cwd=PROJECT_ROOT, stdout=log,
                                        stderr=subprocess.STDOUT, env={**os.environ, WORKER_ENV: "1"}))
            codes = [proc.wait() for proc in procs]
    except KeyboardInterrupt:
        for proc in procs:
            if proc.poll() is None:
                stop(proc, grace_s=30.0)
        return {"workers": spec.n_workers, "interrupted": True, "exit_codes": [p.returncode for p in procs]}
    return {"workers": spec.n_workers, "exit_codes": codes, "gave_up": any(c == 1 for c in codes)}


def run_shared(cfg: Any, spec: StudySpec) -> dict[str, Any]:
    """A worker (or, with ``hpo.n_workers > 1``, the starter of workers) of a study in ``hpo.storage``.

    The parent MLflow run is the study's, whoever created it; the summary is built from the storage, so the
    worker that finishes last writes complete results whatever the others ran. On this machine the workers
    finalize one at a time (``results.lock``): they write the same folder.
    """
    from filelock import FileLock

    from sagelab.hpo.optuna_study import create
    from sagelab.hpo.study import _print_summary, finalize

    store = rdb.open_storage(spec.storage, spec.heartbeat_s, spec.grace_s)
    from sqlalchemy.exc import SQLAlchemyError

    try:
        study = create(spec, store, spec.seed)
    except SQLAlchemyError as err:  # e.g. the server went away since open_storage
        raise _unreachable(spec, err) from None
    same_study(spec, study)
    parent = join_parent(cfg, spec, store, on_claim=lambda: seed_shared(spec, study))
    wait_seeded(spec, study)
    spec.parent_run_id = parent.run_id
    spec.save()
    parent.log_artifact(spec.spec_path)
    role = "worker" if os.environ.get(WORKER_ENV) or spec.n_workers <= 1 else "starter"
    print(f"sagelab hpo: {role} {worker_name()} on study {spec.name} ({spec.algorithm}) in "
          f"{rdb.shown(spec.storage)}", flush=True)
    started = time.monotonic()
    try:
        info = work(spec, study, store) if role == "worker" else launch_workers(spec)
    except BaseException as err:
        parent.finish("FAILED", f"{type(err).__name__}: {err}")
        raise
    if os.environ.get(WORKER_ENV):
        return _leave_to_starter(spec, info)
    trials = study.get_trials(deepcopy=False)
    records = rdb.records(study)
    spec.results_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(spec.dir / "results.lock")):
        summary = {**finalize(spec, parent, records), "session": info, "session_s": time.monotonic() - started}
    close_lost_runs(spec, parent, records)
    now = tally(trials)
    done = stop_reason(spec, now, None) is not None
    if now.failed and spec.max_failures is not None and now.failed > spec.max_failures:
        from sagelab.hpo.records import give_up_message

        message = give_up_message(spec.name, now.failed, spec.max_failures)
        parent.finish("FAILED", message)
        _print_summary(spec, summary)
        print(f"sagelab hpo: {message}", file=sys.stderr)
        raise SystemExit(1)
    # a starter answers for all its workers; a worker for the trials it ran and the one it left running
    ours = {*info.get("ran", []), info.get("left_running")}
    others_running = [] if role == "starter" else [n for n in now.running if n not in ours]
    if info.get("interrupted"):
        if not others_running:
            parent.finish("KILLED")
        print(f"sagelab hpo: worker {worker_name()} interrupted; {summary['n_trials']} trials so far. Run the same "
              "command again to go on (a trial it left is run again by any worker).", file=sys.stderr)
        raise SystemExit(130)
    if done or not others_running:
        parent.finish("FINISHED")
    _print_summary(spec, summary)
    return summary


def _leave_to_starter(spec: StudySpec, info: dict[str, Any]) -> dict[str, Any]:
    """A worker started by ``hpo.n_workers`` ends here: its starter writes the results and closes the parent run
    once, after every worker has exited (each worker finalizing in turn cost seconds per study for nothing)."""
    print(f"sagelab hpo: worker {worker_name()} done (ran trials {info.get('ran', [])}); the starter of study "
          f"{spec.name} writes the results", flush=True)
    if info.get("interrupted"):
        raise SystemExit(130)
    if info.get("gave_up"):
        raise SystemExit(1)
    return info


def same_study(spec: StudySpec, study: Any) -> None:
    """Workers joining by name must run the same study (task, overrides, space, objectives, fidelity, seed): the
    first one records the identity in the storage, later ones are refused if theirs differs."""
    from sagelab.config import ConfigError

    known = study.user_attrs.get("sagelab.identity")
    if known is None:
        study.set_user_attr("sagelab.identity", spec.identity)
    elif known != spec.identity:
        raise ConfigError("hpo.study_name", f"study '{spec.name}' in {rdb.shown(spec.storage or '')} was started with "
                          "a different setup (task, overrides, space, objectives or fidelity); give this one another "
                          "hpo.study_name.")


def _unreachable(spec: StudySpec, err: Exception) -> Exception:
    from sagelab.config import ConfigError

    return ConfigError("hpo.storage", f"cannot use {rdb.shown(spec.storage or '')}: {rdb._reason(err)}")


SEEDED = "sagelab.seeded"  # study user attribute: the claiming worker has enqueued the study's first trials


def seed_shared(spec: StudySpec, study: Any) -> None:
    """Run by the one worker whose parent-run claim landed: the study's first trials (default configuration,
    points, warm start; :func:`sagelab.hpo.optuna_study.seed_study`), then the mark the others wait for."""
    from sagelab.hpo.optuna_study import seed_study

    seed_study(spec, study)
    study.set_user_attr(SEEDED, True)


def wait_seeded(spec: StudySpec, study: Any) -> None:
    """Hold a worker until the claiming worker has seeded the study, so none asks for a trial first and the
    default configuration stays trial 0; a claimer that died before seeding is given up on after grace_s."""
    from sagelab.hpo.seeding import SEED_INDEX

    if not (spec.points or spec.warm_trials):
        return
    trials = study.get_trials(deepcopy=False)
    if trials and not study.user_attrs.get(SEEDED) and not any(SEED_INDEX in t.user_attrs for t in trials):
        return  # a study begun before studies were seeded: nobody will seed it
    deadline = time.monotonic() + spec.grace_s
    while not study.user_attrs.get(SEEDED):
        if time.monotonic() >= deadline:
            print(f"sagelab hpo: study {spec.name}'s first worker did not enqueue its first trials (default "
                  f"configuration, points) within hpo.grace_s={spec.grace_s}; going on without them",
                  file=sys.stderr)
            return
        time.sleep(0.2)


def join_parent(cfg: Any, spec: StudySpec, store: Any, on_claim: Any = None) -> Any:
    """The study's parent MLflow run: the claimed one, or this worker's candidate if its claim lands first
    (then ``on_claim()`` runs: exactly one worker of a study ever runs it)."""
    from sagelab import tracking

    claimed = rdb.parent_of(store, spec.name)
    if claimed is not None:
        return tracking.RunRecord(cfg, claimed, is_global_zero=True, mark_resumed=False)
    tags = {"mlflow.runName": f"hpo {spec.name}", "sagelab.hpo.study": spec.name, "sagelab.hpo.role": "parent",
            "sagelab.hpo.algorithm": spec.algorithm, "sagelab.hpo.storage": rdb.shown(spec.storage or "")}
    candidate = tracking.RunRecord(cfg, None, is_global_zero=True, tags=tags)
    winner = rdb.claim_parent(store, spec.name, candidate.run_id)
    if winner == candidate.run_id:
        if on_claim is not None:
            on_claim()
        return candidate
    candidate.client.delete_run(candidate.run_id)  # lost the race: one parent per study
    return tracking.RunRecord(cfg, winner, is_global_zero=True, mark_resumed=False)


def close_lost_runs(spec: StudySpec, parent: Any, records: list[dict[str, Any]]) -> None:
    """A trial whose worker was killed left its MLflow run RUNNING (nobody else knows its id): close it KILLED."""
    client = parent.client
    lost = [r["trial_id"] for r in records if r["status"] == "interrupted"]
    if client is None or not lost:
        return
    experiment = client.get_run(parent.run_id).info.experiment_id
    for number in lost:
        query = (f"tags.`mlflow.parentRunId` = '{parent.run_id}' and tags.`sagelab.hpo.trial` = '{number}' "
                 "and attributes.status = 'RUNNING'")
        for run in client.search_runs([experiment], filter_string=query):
            client.set_tag(run.info.run_id, "sagelab.hpo.status", "interrupted")
            client.set_terminated(run.info.run_id, "KILLED")
