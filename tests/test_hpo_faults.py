"""What users throw at a study: a killed study process, a second session, a hung trial, crashing trials.

Every wait here is on something the study or its processes leave behind (a trial record, a process, an exit);
the deadlines are only a safety net against a broken study, never a claim about speed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

from sagelab.config import PROJECT_ROOT
from test_hpo_study import study_args

DEADLINE_S = 300.0


def study_command(tmp: Path, *extra: str) -> list[str]:
    return [sys.executable, "run.py", *study_args(tmp, "search_space=glue_default", *extra)]


def wait_until(condition: Callable[[], object], what: str, proc: subprocess.Popen | None = None,
               log: Path | None = None) -> object:
    """``condition()`` once it is truthy; fails if ``proc`` exits first (showing ``log``) or at the safety deadline."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        value = condition()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            output = log.read_text()[-3000:] if log else ""
            pytest.fail(f"the study exited ({proc.returncode}) before {what}:\n{output}")
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.1)


def processes_of(tmp: Path) -> dict[int, str]:
    """Live processes whose command line names a path under ``tmp`` (the study, trial_entry.py, the trials)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:  # it ended while we looked
            continue
        if str(tmp) in cmdline and state not in ("Z", "X"):  # a zombie has ended; only its parent's wait is left
            found[int(entry.name)] = cmdline
    return found


def trial_programs(tmp: Path) -> dict[int, str]:
    """The trial programs themselves (``run.py`` or the synthetic one): they alone get a trial id."""
    return {pid: cmd for pid, cmd in processes_of(tmp).items() if "+callbacks.hpo.trial=" in cmd}


def trial_records(tmp: Path) -> dict[int, dict]:
    out = {}
    for path in tmp.glob("hpo/*/trials/*/trial.json"):
        try:
            record = json.loads(path.read_text())
        except json.JSONDecodeError:  # never half-written (atomic), but a listing may race a replace
            continue
        out[int(record["trial_id"])] = record
    return out


def result_file(tmp: Path, trial_id: int) -> Path:
    (path,) = tmp.glob(f"hpo/*/trials/{trial_id}/result.json")
    return path


# Syne Tune (through trial_entry.py) and Optuna; SIGKILL leaves the trials to notice alone, SIGTERM to a study
# whose worker threads all wait on hung trials must not wait with them
@pytest.mark.parametrize("algorithm, signum", [("random", signal.SIGKILL), ("nsga2", signal.SIGKILL),
                                               ("nsga2", signal.SIGTERM)])
def test_stopping_the_study_process_alone_leaves_no_trial_process(tmp_path, algorithm, signum):
    command = study_command(tmp_path, f"hpo={algorithm}", "hpo.max_trials=4", "hpo.n_workers=2",
                            "hpo.max_resource=1", "+synthetic.hang_trials=[0,1,2,3]")
    log = tmp_path / "study.log"
    with open(log, "w") as out:
        study = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    try:
        def two_trials_running() -> dict[int, str] | None:
            # one snapshot for both questions: two looks at /proc could see different worlds
            live = processes_of(tmp_path)
            return live if sum("+callbacks.hpo.trial=" in cmd for cmd in live.values()) == 2 else None

        everything = set(wait_until(two_trials_running, "two trials running", study, log)) - {study.pid}
        study.send_signal(signum)  # the study process only, not its group (trial_entry.py too, with Syne Tune)
        assert study.wait(timeout=DEADLINE_S) == (-signal.SIGKILL if signum == signal.SIGKILL else 130)
        wait_until(lambda: not set(processes_of(tmp_path)) & everything, "the trial processes to end")
    finally:
        for pid in processes_of(tmp_path):  # whatever a failing run left, so it does not outlive the test
            os.kill(pid, signal.SIGKILL)


def test_a_stop_that_lands_while_a_trial_is_being_launched_still_kills_it(tmp_path, monkeypatch):
    from sagelab.hpo import lifeline

    processes = lifeline.RunningTrials()
    real_launch = lifeline.launch

    def launch_then_stop(*args, **kwargs):
        proc = real_launch(*args, **kwargs)
        processes.kill_all()  # the study's stop, after the process started and before it is registered
        return proc

    monkeypatch.setattr(lifeline, "launch", launch_then_stop)
    with open(tmp_path / "out", "w") as out:
        proc = processes.launch([sys.executable, "-c", "import time; time.sleep(600)"], cwd=tmp_path,
                                stdout=out, stderr=out)
        # a trial the stop missed would sleep on until the safety net stops it (None)
        assert proc is not None and processes.wait(proc, DEADLINE_S) == -signal.SIGKILL
    assert processes.launch([sys.executable, "-c", "pass"], cwd=tmp_path, stdout=None, stderr=None) is None
    assert not processes.live


@pytest.mark.parametrize("algorithm", ["asha", "tpe"])
def test_a_hung_trial_is_stopped_by_the_trial_timeout_and_recorded_as_failed(tmp_path, algorithm):
    from test_hpo_study import run

    # every trial hangs, so the outcome cannot depend on how fast a healthy trial would have been
    summary = run(*study_args(tmp_path, f"hpo={algorithm}", "search_space=glue_default", "hpo.max_trials=2",
                              "hpo.max_resource=1", "hpo.trial_timeout_s=2", "+synthetic.hang_trials=[0,1]"))
    assert (summary["n_trials"], summary["n_failed"]) == (2, 2)
    for record in trial_records(tmp_path).values():
        assert record["status"] == "failed"
        assert record["reason"] == "ran longer than hpo.trial_timeout_s=2 s and was stopped"
        assert record["reason"] in record["error"]  # the trial's stderr says so too
    assert not trial_programs(tmp_path)


def test_a_second_session_of_a_running_study_is_refused(tmp_path):
    command = study_command(tmp_path, "hpo=random", "hpo.max_trials=2", "hpo.max_resource=1",
                            "+synthetic.hang_trials=[0,1]")
    log = tmp_path / "first.log"
    with open(log, "w") as out:
        first = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: trial_programs(tmp_path), "the first session's trial", first, log)
        second = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=DEADLINE_S)
        (study_dir,) = (tmp_path / "hpo").iterdir()
        assert second.returncode == 75
        refusal = [line for line in second.stderr.splitlines() if line.startswith("sagelab hpo:")]
        assert len(refusal) == 1 and refusal[0].startswith(
            f"sagelab hpo: study {study_dir.name} is already running (pid {first.pid} on {os.uname().nodename} since ")
        assert refusal[0].endswith("); let it finish or stop it, then run the command again.")
        assert len(json.loads((study_dir / "state.json").read_text())["sessions"]) == 1  # it touched nothing
    finally:
        first.kill()
        first.wait()
    from filelock import FileLock

    FileLock(str(study_dir / "session.lock")).acquire(timeout=0)  # a killed session holds nothing


@pytest.mark.parametrize("algorithm", ["random", "nsga2"])
def test_the_study_gives_up_past_max_failures_says_so_and_finalizes(tmp_path, algorithm, capsys):
    from test_hpo_study import run

    args = study_args(tmp_path, f"hpo={algorithm}", "search_space=glue_default", "hpo.max_trials=6",
                      "hpo.max_resource=1", "hpo.n_workers=1", "+synthetic.crash_trials=[1,2]")
    with pytest.raises(SystemExit) as stop:
        run(*args, "hpo.max_failures=1")
    assert stop.value.code == 1
    out, err = capsys.readouterr()
    (study_dir,) = (tmp_path / "hpo").iterdir()
    message = (f"sagelab hpo: study {study_dir.name} stopped: 2 trials failed, more than hpo.max_failures=1 "
               "allows; the results so far are finalized.")
    assert message in err
    # one progress line per finished trial: what it gave, the count, what is left, when it should end
    lines = [line for line in out.splitlines() if line.startswith("sagelab hpo: trial ")]
    assert [line.split(" | ")[0] for line in lines][1:] == ["sagelab hpo: trial 1 failed (exit code 1)",
                                                           "sagelab hpo: trial 2 failed (exit code 1)"]
    assert lines[0].startswith("sagelab hpo: trial 0 completed (error ")
    for done, line in enumerate(lines, start=1):
        assert f" | {done}/6 trials finished, {6 - done} to go, " in line and ", ETA " in line
    summary = json.loads((study_dir / "results" / "summary.json").read_text())
    assert (summary["n_trials"], summary["n_failed"], summary["n_completed"]) == (3, 2, 1)
    assert summary["best_trial"] == 0

    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    (parent,) = mlflow.search_runs(search_all_experiments=True, filter_string="tags.`sagelab.hpo.role` = 'parent'",
                                   output_format="list")
    assert parent.info.status == "FAILED" and "more than hpo.max_failures=1" in parent.data.tags["error"]

    with pytest.raises(SystemExit):  # the failures count over sessions: the same command gives up at once
        run(*args, "hpo.max_failures=1")
    assert message in capsys.readouterr().err and len(trial_records(tmp_path)) == 3
    summary = run(*args, "hpo.max_failures=5")  # more tolerance continues the same study
    assert (summary["n_trials"], summary["n_failed"], summary["n_completed"]) == (6, 2, 4)


@pytest.mark.slow  # kept out of CI for time; `make test-slow` runs it
def test_moasha_study_stopped_then_killed_resumes_as_if_never_interrupted(tmp_path):
    """SIGTERM, then SIGKILL before the study is done stopping (a scheduler's escalation), to the driver alone."""
    args = ["hpo=moasha", "search_space=glue_instances", "hpo.max_trials=5", "hpo.max_resource=2",
            "hpo.n_workers=1", "+synthetic.epoch_s=0.4"]
    work = tmp_path / "killed"
    command = [sys.executable, "run.py", *study_args(work, *args)]
    log = tmp_path / "first.log"
    with open(log, "w") as out:
        study = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT)

    def going() -> bool:
        statuses = [r["status"] for r in trial_records(work).values()]
        return sum(s in ("completed", "stopped") for s in statuses) >= 2 and "running" in statuses

    try:
        wait_until(lambda: going() and trial_programs(work), "two finished trials and a running one", study, log)
        trial_pids = set(processes_of(work)) - {study.pid}
        finished = {i: r for i, r in trial_records(work).items() if r["status"] in ("completed", "stopped")}
        stored = {i: result_file(work, i).read_bytes() for i in finished}
        study.send_signal(signal.SIGTERM)
        study.send_signal(signal.SIGKILL)
        study.wait(timeout=DEADLINE_S)
        wait_until(lambda: not set(processes_of(work)) & trial_pids, "the trial processes to end")  # no orphans
    finally:
        study.kill()

    again = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=DEADLINE_S)
    assert again.returncode == 0, again.stderr[-3000:]
    after = trial_records(work)
    assert sum(r["status"] in ("completed", "stopped", "pruned", "failed") for r in after.values()) == 5
    for i, content in stored.items():  # the finished trials are replayed from records left as they were
        assert result_file(work, i).read_bytes() == content
        assert after[i]["status"] == finished[i]["status"]
    assert not processes_of(work)

    # the same configurations in the same order, with the same fate, as a study that was never interrupted
    from test_hpo_study import run

    run(*study_args(tmp_path / "whole", *args))
    whole = trial_records(tmp_path / "whole")
    resumed = [after[i] for i in sorted(after) if after[i]["status"] != "interrupted"]
    assert [(r["config"], r["status"]) for r in resumed] == [(whole[i]["config"], whole[i]["status"])
                                                             for i in sorted(whole)]
