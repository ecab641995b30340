"""One Optuna study, several worker processes, a PostgreSQL storage (``hpo.storage``).

Trials are the synthetic stand-in (``+synthetic.mlflow=true``: each makes its MLflow run as a real trial does).
"Mid-trial" is made exact with ``+synthetic.gate=<file>``: every trial waits for that file before its first
report, so the test decides what has happened before any trial may finish. Every wait is on something the
processes leave behind; deadlines are only a safety net.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import mlflow_store
from sagelab.config import PROJECT_ROOT
from test_hpo_faults import DEADLINE_S, processes_of, wait_until
from test_hpo_study import study_args

TRIALS = 12


def shared_command(tmp: Path, storage: str, *extra: str) -> list[str]:
    return [sys.executable, "run.py", *study_args(
        tmp, "hpo=tpe", "search_space=glue_default", f"hpo.max_trials={TRIALS}", "hpo.max_resource=2",
        f"hpo.storage={storage}", "hpo.study_name=shared", "hpo.heartbeat_s=1", "hpo.grace_s=10",
        "+synthetic.mlflow=true", f"+synthetic.gate={tmp / 'go'}", *extra)]


def trial_processes(tmp: Path, study: str = "shared") -> dict[int, int]:
    """pid -> parent pid of the live trial programs whose MLflow run exists (a trial's parent process is the
    worker that launched it; at the gate, a trial has made its run and reported nothing)."""
    out = {}
    for pid, cmd in processes_of(tmp).items():
        if "+callbacks.hpo.trial=" not in cmd:
            continue
        trial = cmd.split("+callbacks.hpo.trial=", 1)[1].split()[0]
        result = tmp / "hpo" / study / "trials" / trial / "result.json"
        try:
            if json.loads(result.read_text()).get("mlflow_run_id"):
                out[pid] = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError):  # not written yet, or the process ended
            continue
    return out


def load(storage: str, study: str = "shared"):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=study, storage=storage)


def finished(study) -> list:
    from optuna.trial import TrialState

    return [t for t in study.get_trials() if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]


def child_runs(tmp: Path, tracking_uri: str | None = None):
    """(the parent run, its child runs) in the study's MLflow store."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri or f"sqlite:///{tmp}/mlflow.db")
    experiments = [e.experiment_id for e in client.search_experiments()]
    (parent,) = client.search_runs(experiments, "tags.`sagelab.hpo.role` = 'parent'")
    children = client.search_runs(experiments, f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
                                  max_results=1000)
    return client, parent, children


@pytest.mark.slow  # kept out of CI for time; `make test-slow` runs it
def test_two_workers_share_one_study_of_exactly_12_trials(tmp_path, postgres):
    storage = postgres.database("shared_two")
    command = shared_command(tmp_path, storage, "hpo.n_workers=2")  # one command, two worker processes
    log = tmp_path / "study.log"
    with open(log, "w") as out:
        study_proc = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT,
                                      start_new_session=True)
    try:
        # both workers hold a trial before any trial may end: each of them runs trials, whatever the timing
        workers = wait_until(lambda: len(set(trial_processes(tmp_path).values())) == 2, "a trial in each worker",
                             study_proc, log)
        assert workers
        (tmp_path / "go").touch()
        assert study_proc.wait(timeout=DEADLINE_S) == 0, log.read_text()[-3000:]
    finally:
        if study_proc.poll() is None:
            os.killpg(study_proc.pid, signal.SIGKILL)
    study = load(storage)
    done = finished(study)
    assert len(done) == TRIALS and len({t.number for t in done}) == TRIALS
    assert len({tuple(sorted(t.params.items())) for t in done}) == TRIALS  # no parameters drawn twice
    assert len({t.user_attrs["sagelab.worker"] for t in done}) == 2
    # nothing else ran: the only other trials are ones a worker asked for in the last slot's race and dropped
    others = [t for t in study.get_trials() if t not in done]
    assert all(t.user_attrs.get("sagelab.status") == "over_budget" and not t.params for t in others)
    output = log.read_text()
    assert f"study shared: {TRIALS} trials" in output

    client, parent, children = child_runs(tmp_path)
    assert parent.info.status == "FINISHED" and parent.data.metrics["n_trials"] == TRIALS
    assert len(children) == TRIALS and {r.info.status for r in children} == {"FINISHED"}
    assert sorted(int(r.data.tags["sagelab.hpo.trial"]) for r in children) == sorted(t.number for t in done)
    trials_csv = (tmp_path / "hpo" / "shared" / "results" / "trials.csv").read_text().splitlines()
    assert len(trials_csv) == 1 + TRIALS


def start_workers(command: list[str], logs: list[Path]) -> list[subprocess.Popen]:
    """One worker process per log, each in a session of its own (as on separate machines)."""
    procs = []
    for log in logs:
        with open(log, "w") as out:
            procs.append(subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT,
                                          start_new_session=True))
    return procs


def test_a_worker_killed_mid_trial_loses_nothing(tmp_path, postgres):
    storage = postgres.database("shared_kill")
    command = shared_command(tmp_path, storage)  # two independent workers, as on two machines
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    procs = start_workers(command, logs)
    a, b = procs
    try:
        def each_worker_has_a_trial() -> dict[int, int] | None:
            assert a.poll() is None, logs[0].read_text()[-3000:]
            running = trial_processes(tmp_path)
            return running if {a.pid, b.pid} <= set(running.values()) else None

        running = wait_until(each_worker_has_a_trial, "a trial in each worker", b, logs[1])
        (a_trial,) = [pid for pid, parent in running.items() if parent == a.pid]
        os.kill(a.pid, signal.SIGKILL)  # mid-trial: every trial waits at the gate
        assert a.wait(timeout=DEADLINE_S) == -signal.SIGKILL
        wait_until(lambda: a_trial not in processes_of(tmp_path), "the killed worker's trial to die with it")
        (tmp_path / "go").touch()
        assert b.wait(timeout=DEADLINE_S) == 0, logs[1].read_text()[-3000:]
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    from optuna.trial import TrialState

    study = load(storage)
    done = finished(study)
    assert len(done) == TRIALS and len({tuple(sorted(t.params.items())) for t in done}) == TRIALS
    (lost,) = [t for t in study.get_trials() if t.state == TrialState.FAIL]  # failed by its stale heartbeat...
    (retry,) = [t for t in done if t.user_attrs.get("retry_of") == lost.number]  # ...and run again, as it was
    assert retry.params == lost.params and retry.user_attrs["sagelab.worker"].endswith(f":{b.pid}")
    assert not [t for t in study.get_trials() if t.state in (TrialState.RUNNING, TrialState.WAITING)]

    client, parent, children = child_runs(tmp_path)
    assert parent.info.status == "FINISHED"
    statuses = {int(r.data.tags["sagelab.hpo.trial"]): r.info.status for r in children}
    assert sorted(n for n, s in statuses.items() if s == "FINISHED") == sorted(t.number for t in done)
    assert statuses[lost.number] == "KILLED" and len(statuses) == TRIALS + 1  # the lost run is closed, not left
    summary = (tmp_path / "hpo" / "shared" / "results" / "summary.json").read_text()
    assert '"n_interrupted": 1' in summary and '"n_trials": 13' in summary


def test_the_budget_is_the_first_max_trials_claims_in_trial_order(tmp_path):
    """The exactness rule on its own: which asked trial may run, given what the trials before it hold."""
    import optuna
    from optuna.trial import TrialState

    from sagelab.hpo.optuna_shared import claims, in_budget, tally

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/o.db")
    first, second, third = study.ask(), study.ask(), study.ask()
    assert in_budget(study, second.number, 2) and not in_budget(study, third.number, 2)
    study.tell(first, 1.0)
    assert not in_budget(study, third.number, 2)  # finished or running, both hold their place
    study.tell(second, state=TrialState.FAIL)  # lost (no sagelab.status): its place is free again
    assert in_budget(study, third.number, 2)
    crashed = study.ask()
    crashed.set_user_attr("sagelab.status", "failed")
    study.tell(crashed, state=TrialState.FAIL)  # a crashed trial counts, as in a local study
    dropped = study.ask()
    dropped.set_user_attr("sagelab.status", "over_budget")
    study.tell(dropped, state=TrialState.FAIL)
    study.enqueue_trial({})  # a retry waiting to be asked holds its place too
    trials = study.get_trials(deepcopy=False)
    assert [claims(t) for t in trials] == [True, False, True, True, False, True]
    now = tally(trials)
    assert (now.finished, now.failed, now.waiting, now.claimed, now.running) == (2, 1, 1, 3, (third.number,))


def test_a_worker_of_another_setup_is_refused(tmp_path):
    import optuna

    from sagelab.config import ConfigError
    from sagelab.hpo.optuna_shared import same_study
    from sagelab.hpo.spec import build_spec
    from test_hpo_study import compose

    def spec(*extra: str):
        overrides = study_args(tmp_path, "hpo=tpe", "search_space=glue_default", "hpo.study_name=s",
                               f"hpo.storage=sqlite:///{tmp_path}/o.db", *extra)
        return build_spec(compose(*overrides), overrides)

    study = optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path}/o.db")
    same_study(spec(), study)
    same_study(spec("hpo.max_trials=99"), study)  # a budget is not the setup: raising it extends the study
    with pytest.raises(ConfigError) as err:
        same_study(spec("data.train_limit=8"), study)
    assert err.value.key == "hpo.study_name" and "different setup" in err.value.message


@pytest.mark.slow  # kept out of CI for time; `make test-slow` runs it
def test_a_stopped_worker_leaves_its_trial_for_the_next_one(tmp_path, postgres):
    """SIGTERM to a lone worker: exit 130, its trial stays RUNNING, the parent ends KILLED; the same command run
    again fails that trial by its old heartbeat, runs it again and finishes the study."""
    storage = postgres.database("shared_stop")
    command = shared_command(tmp_path, storage)
    command = [c for c in command if not c.startswith("hpo.max_trials=")] + ["hpo.max_trials=3"]
    log = tmp_path / "first.log"
    with open(log, "w") as out:
        first = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        (trial_pid,) = wait_until(lambda: trial_processes(tmp_path), "the worker's trial", first, log)
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=DEADLINE_S) == 130, log.read_text()[-3000:]
        wait_until(lambda: trial_pid not in processes_of(tmp_path), "the trial to stop with its worker")
    finally:
        if first.poll() is None:
            first.kill()
    from optuna.trial import TrialState

    (left,) = load(storage).get_trials()
    assert left.state == TrialState.RUNNING
    _, parent, _ = child_runs(tmp_path)
    assert parent.info.status == "KILLED"
    (tmp_path / "go").touch()
    second = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=DEADLINE_S)
    assert second.returncode == 0, second.stderr[-3000:]
    study = load(storage)
    done = finished(study)
    assert len(done) == 3 and [t.user_attrs.get("retry_of") for t in done].count(left.number) == 1
    (retry,) = [t for t in done if t.user_attrs.get("retry_of") == left.number]
    assert retry.params == left.params
    _, parent, children = child_runs(tmp_path)
    assert parent.info.status == "FINISHED" and sum(r.info.status == "FINISHED" for r in children) == 3


@pytest.mark.parametrize(("overrides", "expected"), [
    (["hpo=tpe", "hpo.storage=nonsense"], "hpo.storage: 'nonsense' is not a database URL"),
    (["hpo=tpe", "hpo.storage=redis://127.0.0.1/0"], "hpo.storage: 'redis://127.0.0.1/0': Optuna's RDB storage"),
    (["hpo=tpe", "hpo.storage=postgresql+psycopg://u:secret@127.0.0.1/db"], "hpo.storage: holds a password"),
    (["hpo=asha", "hpo.storage=sqlite:////tmp/x.db"], "hpo.storage: is an Optuna storage, and hpo=asha runs on"),
    (["hpo=tpe", "hpo.storage=sqlite:////tmp/x.db", "hpo.heartbeat_s=5", "hpo.grace_s=5"], "hpo.grace_s: (5)"),
])
def test_a_bad_storage_is_one_line_naming_the_key(run_cli, tmp_path, overrides, expected):
    result = run_cli("task=glue_mrpc", "search_space=glue_default", f"hpo.dir={tmp_path}/hpo", *overrides,
                     tiny=False, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == f"sagelab: bad config: {expected}" or \
        result.stderr.strip().startswith(f"sagelab: bad config: {expected}"), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_an_unreachable_database_is_one_line_naming_the_key(run_cli, tmp_path):
    from servers import free_port

    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/optuna"  # nothing listens there
    result = run_cli("task=glue_mrpc", "search_space=glue_default", "hpo=tpe", f"hpo.dir={tmp_path}/hpo",
                     f"hpo.storage={url}", f"logger.tracking_uri=sqlite:///{tmp_path}/mlflow.db", tiny=False,
                     timeout=120)
    assert result.returncode == 2, result.stderr
    line = result.stderr.strip()
    assert line.startswith(f"sagelab: bad config: hpo.storage: cannot open {url}: ") and "\n" not in line, line
    assert not (tmp_path / "mlflow.db").exists()  # refused before the parent run


@pytest.mark.parametrize("algorithm", ["tpe", "asha"])
def test_parallel_trials_get_their_share_of_the_cores(tmp_path, algorithm):
    from sagelab.hardware import available_cores
    from sagelab.hpo.spec import build_spec
    from test_hpo_study import compose

    def argv(*extra: str) -> list[str]:
        overrides = study_args(tmp_path, f"hpo={algorithm}", "search_space=glue_default", *extra)
        return build_spec(compose(*overrides), overrides).trial_argv(0, {"lr": 1e-5})

    share = f"instance.threads={max(1, available_cores() // 2)}"
    assert share in argv("hpo.n_workers=2")
    assert not [a for a in argv("hpo.n_workers=1") if a.startswith("instance.threads=")]
    pinned = [a for a in argv("hpo.n_workers=2", "instance.threads=2") if a.startswith("instance.threads=")]
    assert pinned == ["instance.threads=2"]  # the user's own setting, inherited once, not overridden


@pytest.mark.slow
def test_real_bert_tiny_trials_survive_a_killed_worker(tmp_path, postgres):
    """The real thing: two workers of run.py trials (bert_tiny, TPE, 12 trials), one killed -9 mid-trial."""
    import time

    from optuna.trial import TrialState

    from conftest import TINY as TINY_MODEL
    from sagelab.hardware import describe

    storage = postgres.database("shared_real")
    command = [sys.executable, "run.py", "task=glue_mrpc", *TINY_MODEL, f"hpo.dir={tmp_path}/hpo",
               f"hpo.experiment_dir={tmp_path}/conf/experiment", f"logger.tracking_uri={mlflow_store(tmp_path)}",
               f"logger.artifact_location={tmp_path}/artifacts", "hpo=tpe", "search_space=glue_default",
               f"hpo.max_trials={TRIALS}", "hpo.max_resource=2", f"hpo.storage={storage}", "hpo.study_name=real",
               "hpo.heartbeat_s=2", "hpo.grace_s=6"]
    started = time.monotonic()
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    procs = start_workers(command, logs)
    a, b = procs
    try:
        def a_is_training() -> dict[int, int] | None:  # its trial's run exists: the trial is under way
            assert a.poll() is None, logs[0].read_text()[-3000:]
            running = {pid: parent for pid, parent in trial_processes(tmp_path, "real").items() if parent == a.pid}
            return running or None

        (a_trial,) = wait_until(a_is_training, "worker a's trial to start", b, logs[1])
        os.kill(a.pid, signal.SIGKILL)
        assert a.wait(timeout=DEADLINE_S) == -signal.SIGKILL
        wait_until(lambda: a_trial not in processes_of(tmp_path), "the killed worker's trial to die with it")
        assert b.wait(timeout=3600) == 0, logs[1].read_text()[-3000:]
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    wall = time.monotonic() - started
    study = load(storage, "real")
    done = finished(study)
    lost = [t for t in study.get_trials() if t.state == TrialState.FAIL and not t.user_attrs.get("sagelab.status")]
    assert len(done) == TRIALS and len({tuple(sorted(t.params.items())) for t in done}) == TRIALS
    assert len(lost) == 1 and [t.user_attrs.get("retry_of") for t in done].count(lost[0].number) == 1
    client, parent, children = child_runs(tmp_path)
    finished_runs = [r for r in children if r.info.status == "FINISHED"]
    assert parent.info.status == "FINISHED" and len(finished_runs) == TRIALS
    pruned = sum(t.state == TrialState.PRUNED for t in done)
    print(f"\nshared study, real trials: {len(done)} finished ({pruned} pruned), {len(lost)} lost and retried, "
          f"{len(children)} child runs ({len(finished_runs)} FINISHED), wall {wall:.0f} s on {describe()}")
