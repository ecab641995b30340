"""Ray Tune studies (``hpo.backend=ray``): the same trials, executed by Ray Tune on a Ray cluster.

Ray Tune is the executor: each trial is :class:`~sagelab.hpo.ray_trial.RunPyTrial`, an actor asking Ray for one
CPU, which runs the same ``python run.py ...`` process as the other backends on whichever node Ray places it
(``hpo.n_workers`` trials at once). The scheduler is Ray Tune's own:

* ``hpo=asha``: :class:`ray.tune.schedulers.AsyncHyperBandScheduler` (ASHA) on the first objective over
  ``epoch`` (``grace_period``, ``max_resource``, ``reduction_factor``), as Syne Tune's ASHA does locally;
* ``hpo=random``: Ray's FIFO scheduler; every trial runs to ``max_resource`` and reports all objectives, so
  several objectives work and the study's Pareto front is as a local one's.

Why not MO-ASHA on Ray: no Ray Tune scheduler ranks trials on several objectives (they stop on one ``metric``),
and Syne Tune 0.16 no longer ships its Ray bridge (``RayTuneScheduler``, which ran Ray schedulers inside Syne
Tune, the other way round). Driving Syne Tune's MO-ASHA from Ray's scheduler hooks would be glue of our own on
Ray's developer API; ``hpo=moasha`` with ``hpo.backend=ray`` is refused (``hpo.backend``) instead.

Configurations come from the study's own random searcher and the trial records, progress lines and budget stop
are kept by a Ray Tune callback and stopper in this process (:mod:`sagelab.hpo.ray_journal`). A resumed Ray
study spends what is left of the budget with fresh ASHA rungs (earlier trials are
not replayed into Ray's scheduler).

``hpo.ray_address`` null starts a local Ray in this process; an address (``<head>:6379``) joins that cluster.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from pathlib import Path
from typing import Any

from sagelab.config import ConfigError
from sagelab.hpo.progress import Progress
from sagelab.hpo.records import StudyState, end_session_trials, lost_trials, open_session
from sagelab.hpo.spec import StudySpec

CPUS_PER_TRIAL = 1  # what each trial asks Ray for: a node with N CPUs runs up to N trials at once
CONNECT_TIMEOUT_S = 5.0


def check_address(address: str | None) -> None:
    """One line (``hpo.ray_address``) when the cluster's head cannot be reached, before the study starts."""
    if not address or address == "auto":
        return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError("hpo.ray_address", f"is '{address}'; give the head node as <host>:<port> "
                          "(e.g. 10.0.0.5:6379, the address `ray start --head` printed).")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as err:
        raise ConfigError("hpo.ray_address", f"{address} cannot be reached ({err.strerror or err}); start the "
                          "cluster with `ray start --head --port <port>`, or leave it null for a local Ray.") from None


def _scheduler(spec: StudySpec) -> Any:
    from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler

    from sagelab.hpo.report import EPOCH_KEY

    if spec.algorithm == "asha":
        return AsyncHyperBandScheduler(
            time_attr=EPOCH_KEY, metric=spec.objective_list()[0].key, mode="min", max_t=spec.max_resource,
            grace_period=spec.grace_period, reduction_factor=spec.reduction_factor, brackets=1)
    if spec.algorithm == "random":
        return FIFOScheduler()
    raise ValueError(f"not a Ray Tune algorithm: {spec.algorithm}")


def _connect(spec: StudySpec) -> bool:
    """Join ``hpo.ray_address`` (or start a local Ray); True when this call did, so the session shuts it down.

    Ray's workers get this process's ``sagelab`` first on their ``PYTHONPATH`` (the actors unpickle
    :class:`RunPyTrial` from it, and the trial processes inherit it).
    """
    import ray

    import sagelab

    if ray.is_initialized():
        return False
    src = str(Path(sagelab.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        ray.init(address=spec.ray_address, runtime_env={"env_vars": {"PYTHONPATH": path}},
                 include_dashboard=False, log_to_driver=False, configure_logging=False)
    except ConnectionError as err:
        raise ConfigError("hpo.ray_address", f"Ray at {spec.ray_address} did not answer: {err}") from None
    finally:
        # Ray's driver installs a SIGTERM handler that aborts the process; the study's own (which ends it as
        # KILLED and resumable) goes back in place
        if threading.current_thread() is threading.main_thread():
            for sig, handler in handlers.items():
                if handler is not None:
                    signal.signal(sig, handler)
    return True


def run(spec: StudySpec, state: StudyState) -> dict[str, Any]:
    """Run (or continue) a study with Ray Tune; returns what this session did."""
    session, interrupted, records, budget = open_session(spec, state)
    lost = lost_trials(records)
    info: dict[str, Any] = {"session": session, "interrupted_before": interrupted,
                            "rerun": [int(r["trial_id"]) for r in lost], "new_trials": 0}
    if budget.exhausted:
        return {**info, "gave_up": budget.too_many_failures(0)}
    started_ids = [int(d.name) for d in (spec.dir / "trials").glob("*") if d.name.isdigit()]
    first_id = 1 + max([int(r["trial_id"]) for r in records] + started_ids, default=-1)
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")  # Ctrl-C / SIGTERM end the study as the others do
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    owned = _connect(spec)
    try:
        from ray import tune

        from sagelab.hpo.ray_journal import AtBudget, Journal, StudySearcher
        from sagelab.hpo.ray_trial import RunPyTrial

        journal = Journal(spec, state, session, budget, Progress(spec, budget, records))
        trainable = tune.with_resources(tune.with_parameters(RunPyTrial, spec_path=str(spec.spec_path)),
                                        {"cpu": CPUS_PER_TRIAL})
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=StudySearcher(spec, records, first_id, lost, budget.trials_left),
                scheduler=_scheduler(spec),
                num_samples=-1 if budget.trials_left is None else budget.trials_left,
                max_concurrent_trials=spec.n_workers,
                time_budget_s=budget.wall_left,
                reuse_actors=False,
            ),
            run_config=tune.RunConfig(
                name=f"session-{session}", storage_path=str(spec.dir / "ray"), callbacks=[journal],
                stop=AtBudget(journal), failure_config=tune.FailureConfig(max_failures=0), verbose=0,
                # a class trainable is checkpointed at its end by default; a trial's run keeps its own
                checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=False)),
        )
        aborted = True
        try:
            tuner.fit()
            aborted = False
        finally:
            state.tick()
            end_session_trials(spec, cut_short=aborted or journal.gave_up())
        info.update(new_trials=journal.new_trials, gave_up=journal.gave_up(),
                    nodes=sorted({r.get("node_id") for r in _session_records(spec, session)} - {None}))
    finally:
        if owned:
            import ray

            ray.shutdown()
    return info


def _session_records(spec: StudySpec, session: int) -> list[dict[str, Any]]:
    from sagelab.hpo.records import load_trials

    return [r for r in load_trials(spec.dir) if r.get("session") == session]
