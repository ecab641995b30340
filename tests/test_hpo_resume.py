"""An interrupted study, re-run with the same command, continues without losing finished trials."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sagelab.config import PROJECT_ROOT
from test_hpo_study import study_args


def trial_records(tmp: Path) -> dict[int, dict]:
    out = {}
    for path in tmp.glob("hpo/*/trials/*/trial.json"):
        try:
            record = json.loads(path.read_text())
        except json.JSONDecodeError:
            continue
        record["result"] = path.with_name("result.json").read_text() if path.with_name("result.json").exists() else None
        out[int(record["trial_id"])] = record
    return out


@pytest.mark.parametrize("algorithm, signum", [("random", signal.SIGKILL), ("nsga2", signal.SIGTERM)])
def test_killed_study_resumes_with_the_same_command(tmp_path, algorithm, signum):
    command = [sys.executable, "run.py", *study_args(
        tmp_path, f"hpo={algorithm}", "search_space=glue_default", "hpo.max_trials=4", "hpo.max_resource=2",
        "hpo.n_workers=1", "+synthetic.epoch_s=0.4",
    )]
    with open(tmp_path / "first.log", "w") as log:
        # its own process group, like a terminal job: SIGKILL to the group leaves nothing to clean up
        first = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            records = trial_records(tmp_path)
            done = [r for r in records.values() if r["status"] == "completed"]
            if len(done) >= 2 and any(r["status"] == "running" for r in records.values()):
                break
            assert first.poll() is None, (tmp_path / "first.log").read_text()
            time.sleep(0.2)
        else:
            pytest.fail("the study did not get going")
        if signum == signal.SIGKILL:
            os.killpg(first.pid, signal.SIGKILL)  # the harshest stop: nothing gets to write anything
        else:
            first.send_signal(signum)  # only the study process: it must stop its own trials
        code = first.wait(timeout=60)
    assert code == (-9 if signum == signal.SIGKILL else 130)
    before = {i: r for i, r in trial_records(tmp_path).items() if r["status"] == "completed"}
    # SIGKILL leaves the lost trial "running"; a study stopped by SIGTERM marks it interrupted itself
    running = [i for i, r in trial_records(tmp_path).items() if r["status"] in ("running", "interrupted")]
    assert len(before) >= 2 and len(running) == 1

    second = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resuming study" in second.stdout
    after = trial_records(tmp_path)
    for i, record in before.items():  # finished trials are kept as they were
        assert after[i]["status"] == "completed" and after[i]["result"] == record["result"]
    assert after[running[0]]["status"] == "interrupted"
    finished = [r for r in after.values() if r["status"] in ("completed", "stopped", "failed", "pruned")]
    assert len(finished) == 4  # the budget counts finished trials across both sessions
    assert min(i for i in after if i not in before and i != running[0]) > max(before)
    # both backends re-run exactly the configuration that was lost, first
    retries = [r for r in after.values() if r.get("retry_of") == running[0]]
    assert len(retries) == 1 and retries[0]["config"] == after[running[0]]["config"]
    assert retries[0]["trial_id"] == max(before) + 2 and retries[0]["status"] == "completed"

    study_dir = next((tmp_path / "hpo").iterdir())
    state = json.loads((study_dir / "state.json").read_text())
    assert len(state["sessions"]) == 2
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    parents = mlflow.search_runs(search_all_experiments=True, filter_string="tags.`sagelab.hpo.role` = 'parent'")
    assert len(parents) == 1 and parents.iloc[0]["run_id"] == state["parent_run_id"]
    assert parents.iloc[0]["status"] == "FINISHED" and parents.iloc[0]["metrics.n_completed"] >= 3


def test_a_session_starts_from_what_earlier_sessions_left(tmp_path):
    """Both backends open a session the same way: lost trials marked, budgets counted over all sessions."""
    from types import SimpleNamespace

    from sagelab.hpo.records import StudyState, open_session, update_trial, write_json

    spec = SimpleNamespace(dir=tmp_path, max_trials=5, max_wallclock_s=100.0, max_cost_usd=1.0, max_failures=None)
    trials = [(0, "completed", 0.25), (1, "failed", 0.0), (2, "pruned", 0.25), (3, "running", 0.1)]
    for trial_id, status, cost in trials:
        update_trial(tmp_path / "trials" / str(trial_id), trial_id=trial_id, status=status)
        write_json(tmp_path / "trials" / str(trial_id) / "result.json", {"history": [{"cost_usd": cost}]})
    state = StudyState(tmp_path)
    state.data["sessions"] = [{"elapsed_s": 30.0}]
    session, interrupted, records, budget = open_session(spec, state)
    assert session == 1 and interrupted == [3] and [r["status"] for r in records][-1] == "interrupted"
    assert budget.trials_left == 2  # three finished; the interrupted one is run again, not counted
    assert budget.wall_left == 70.0 and budget.cost_before == 0.6 and not budget.exhausted
    assert budget.failed_before == 1 and not budget.too_many_failures(0)
    for spent in ({"max_trials": 3}, {"max_wallclock_s": 30.0}, {"max_cost_usd": 0.6}, {"max_failures": 0}):
        _, _, _, budget = open_session(SimpleNamespace(**{**vars(spec), **spent}), StudyState(tmp_path))
        assert budget.exhausted, spent
    _, _, _, budget = open_session(SimpleNamespace(dir=tmp_path, max_trials=None, max_wallclock_s=None,
                                                   max_cost_usd=None, max_failures=1), StudyState(tmp_path))
    assert (budget.trials_left, budget.wall_left, budget.exhausted) == (None, None, False)
