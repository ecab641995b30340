"""Faults a user's command meets, through ``run.py``: SIGTERM anywhere, a broken state file, storage that refuses.

Each SIGTERM comes from the process itself at a chosen point (tests/fault_probes.py), so no outcome depends on
timing. A stopped training run leaves a resumable checkpoint or a cleanly closed run -- never an MLflow run
stuck RUNNING, never a state file claiming a killed run completed -- and its resumed metrics equal an
uninterrupted run's.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, cli_env, mlflow_runs, tiny_overrides

STEPS = ["task=glue_cola", "trainer.max_epochs=3", "checkpoint.every_n_steps=4", "trainer.deterministic=true"]
METRICS = ("val/mcc", "val/loss", "val/accuracy")
SIGTERM_EXIT = 143


def run(tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    """The same training command every time (its checkpoint folder fixed), plus ``extra``."""
    cmd = [sys.executable, str(ROOT / "run.py"), *tiny_overrides(tmp), *STEPS, *extra]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=cli_env())


def probe(hook: str, stage: str, marker: Path) -> list[str]:
    return ["+callbacks.probe._target_=fault_probes.SigtermAt", f"+callbacks.probe.hook={hook}",
            f"+callbacks.probe.stage={stage}", f"+callbacks.probe.marker={marker}"]


def state(tmp: Path) -> dict:
    return json.loads((tmp / "ckpt" / "sagelab_state.json").read_text())


def runs(tmp: Path) -> list[dict]:
    return mlflow_runs(tmp, "glue_cola").to_dict("records")


def final_metrics(tmp: Path) -> dict:
    (only,) = runs(tmp)  # a resumed command continues its MLflow run
    assert only["status"] == "FINISHED"
    return {k: only[f"metrics.{k}"] for k in METRICS}


def assert_stopped(proc: subprocess.CompletedProcess, tmp: Path) -> None:
    assert proc.returncode == SIGTERM_EXIT, proc.stderr[-3000:]
    assert "sagelab: stopped by SIGTERM" in proc.stderr and "Traceback" not in proc.stderr
    assert all(r["status"] == "KILLED" for r in runs(tmp))
    assert not list((tmp / "ckpt").glob("*.partial"))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("plain")
    proc = run(tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"metrics": final_metrics(tmp), "final": tmp / "ckpt" / "final.ckpt"}


# -- SIGTERM --------------------------------------------------------------------------------------------
def test_sigterm_at_validation_start_then_at_model_load_then_resume(tmp_path, uninterrupted):
    marker = tmp_path / "fired"
    killed = run(tmp_path, *probe("on_validation_start", "fit", marker))
    assert_stopped(killed, tmp_path)
    assert marker.read_text().startswith("on_validation_start")
    assert state(tmp_path)["completed"] is False
    assert "re-run the same command to resume" in killed.stderr

    at_load = run(tmp_path, "model.name_or_path=pkg:fault_probes")  # resumes, and is stopped loading the model
    assert "resuming from" in at_load.stderr
    assert_stopped(at_load, tmp_path)
    assert state(tmp_path)["completed"] is False and (tmp_path / "ckpt" / "last.ckpt").exists()

    resumed = run(tmp_path, *probe("on_validation_start", "fit", marker))  # fired once already: a plain run
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stderr
    assert state(tmp_path)["completed"] is True
    assert final_metrics(tmp_path) == pytest.approx(uninterrupted["metrics"], abs=1e-6)


@pytest.mark.slow  # kept out of CI for time; `make test-slow` runs it
def test_sigterm_in_the_final_evaluation_resumes_without_training_again(tmp_path, uninterrupted):
    marker = tmp_path / "fired"
    killed = run(tmp_path, *probe("on_validation_batch_start", "validate", marker))
    assert_stopped(killed, tmp_path)
    assert state(tmp_path)["completed"] is False, "training ended, but the command did not"

    resumed = run(tmp_path, *probe("on_validation_batch_start", "validate", marker))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stderr
    assert final_metrics(tmp_path) == pytest.approx(uninterrupted["metrics"], abs=1e-6)


@pytest.mark.parametrize("where", ["model load", "validation"])
def test_sigterm_in_mode_evaluate_closes_the_run(tmp_path, uninterrupted, where):
    fault = (["model.name_or_path=pkg:fault_probes"] if where == "model load"
             else probe("on_validation_start", "validate", tmp_path / "fired"))
    proc = run(tmp_path, "mode=evaluate", f"checkpoint.load={uninterrupted['final']}", *fault)
    assert_stopped(proc, tmp_path)
    assert len(runs(tmp_path)) == 1


# -- a broken state file ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("content", "says"),
                         [(b"", "is empty"), (b'{"run_id": "0a1b', "cannot be read (JSONDecodeError)")])
@pytest.mark.slow  # kept out of CI for time; `make test-slow` runs it
def test_unreadable_state_file_starts_a_fresh_run(tmp_path, uninterrupted, content, says):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "sagelab_state.json").write_bytes(content)
    (tmp_path / "ckpt" / "last.ckpt").write_bytes(b"never resumed from")  # would fail loudly if it were
    proc = run(tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"sagelab_state.json {says}; starting a fresh run instead of resuming." in proc.stderr
    assert final_metrics(tmp_path) == pytest.approx(uninterrupted["metrics"], abs=1e-6)
    assert state(tmp_path)["completed"] is True


# -- storage that refuses ---------------------------------------------------------------------------------
def last_line(proc: subprocess.CompletedProcess) -> str:
    return proc.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("where", ["mlruns under a file", "mlruns in /proc", "artifacts under a file",
                                   "outputs under a file", "checkpoints under a file"])
def test_unwritable_folder_is_one_line_naming_it(tmp_path, where):
    blocker = tmp_path / "a_file"
    blocker.write_text("a file where a folder is needed")
    override, named = {
        "mlruns under a file": (f"logger.tracking_uri=sqlite:///{blocker}/mlflow.db", blocker),
        "mlruns in /proc": ("logger.tracking_uri=sqlite:////proc/sagelab-nope/mlflow.db", "/proc/sagelab-nope"),
        "artifacts under a file": (f"logger.artifact_location={blocker}/artifacts", blocker),
        "outputs under a file": (f"hydra.run.dir={blocker}/out", blocker),
        "checkpoints under a file": (f"checkpoint.dir={blocker}/ckpt", blocker),
    }[where]
    proc = run(tmp_path, override)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert last_line(proc).startswith(f"sagelab: cannot write {named}"), proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    if (tmp_path / "mlflow.db").exists():
        assert all(r["status"] == "FAILED" for r in runs(tmp_path)), "no run left RUNNING"


def dev_full_checkpoint(tmp: Path) -> None:
    """The checkpoint's temporary file is /dev/full: its write fails with ENOSPC, as on a full disk."""
    (tmp / "ckpt").mkdir()
    (tmp / "ckpt" / "last.ckpt.partial").symlink_to("/dev/full")


def test_full_disk_is_one_line_and_leaves_no_partial_file(tmp_path):
    dev_full_checkpoint(tmp_path)
    proc = run(tmp_path)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert last_line(proc) == f"sagelab: cannot write {tmp_path}/ckpt/last.ckpt: No space left on device"
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["sagelab_state.json"]
    assert state(tmp_path)["completed"] is False
    (failed,) = runs(tmp_path)
    assert failed["status"] == "FAILED" and "No space left on device" in failed["tags.error"]


def test_mlflow_failing_at_the_end_does_not_hide_the_error(tmp_path):
    proc = run(tmp_path, "+callbacks.probe._target_=fault_probes.BreakMlflowFinish")
    assert proc.returncode == 1
    warning = [line for line in proc.stderr.splitlines() if line.startswith("sagelab: warning: MLflow run")]
    assert len(warning) == 1 and "could not be ended as FAILED" in warning[0]
    assert "ConnectionError: probe: the tracking server went away" in warning[0]
    assert "RuntimeError: probe: training broke" in proc.stderr
    assert "ConnectionError" not in proc.stderr.replace(warning[0], "")  # the original error is what was raised


@pytest.mark.slow  # kept out of CI for time; `make test-slow` runs it
def test_full_disk_and_mlflow_failing_is_two_lines(tmp_path):
    dev_full_checkpoint(tmp_path)
    proc = run(tmp_path, "+callbacks.probe._target_=fault_probes.BreakMlflowFinish",
               "+callbacks.probe.fail_training=false")
    assert proc.returncode == 1
    assert last_line(proc) == f"sagelab: cannot write {tmp_path}/ckpt/last.ckpt: No space left on device"
    assert "sagelab: warning: MLflow run" in proc.stderr and "Traceback" not in proc.stderr


# -- the pieces ------------------------------------------------------------------------------------------
def test_checkpoint_is_fsynced_before_it_is_renamed(tmp_path, monkeypatch):
    import os

    import torch

    from sagelab.callbacks import AtomicCheckpointIO

    calls: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (calls.append(f"replace {Path(a).name}"), real_replace(a, b))[1])
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.ones(3)}}, tmp_path / "sub" / "last.ckpt")
    assert calls == ["fsync", "replace last.ckpt.partial", "fsync"]  # the file, the rename, the folder
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["last.ckpt"]
    assert torch.load(tmp_path / "sub" / "last.ckpt", weights_only=True)["state_dict"]["w"].sum() == 3


def test_a_kill_mid_write_keeps_the_previous_file(tmp_path):
    from sagelab.faults import Terminated
    from sagelab.safe_io import atomic_write

    target = tmp_path / "sagelab_state.json"
    atomic_write(target, lambda handle: handle.write(b'{"completed": false}'))

    def killed_midway(handle) -> None:
        handle.write(b'{"compl')
        raise Terminated()

    with pytest.raises(Terminated):
        atomic_write(target, killed_midway)
    assert target.read_bytes() == b'{"completed": false}'
    assert [p.name for p in tmp_path.iterdir()] == ["sagelab_state.json"]


def test_closing_the_run_after_a_failure_warns_instead_of_raising(capsys):
    from sagelab.faults import close_run

    class Refusing:
        run_id = "r1"

        def log_metrics(self, metrics):
            raise OSError("database is locked")

        def finish(self, status, error=None):
            raise ConnectionError("gone")

    close_run(Refusing(), ValueError("the real problem"), {})
    assert capsys.readouterr().err.strip() == ("sagelab: warning: MLflow run r1 could not be ended as FAILED: "
                                               "ConnectionError: gone")
    with pytest.raises(OSError, match="database is locked"):  # nothing failed before: this is the error
        close_run(Refusing(), None, {})


@pytest.mark.parametrize("code, status, stderr", [(None, 0, ""), (3, 3, ""), ("sagelab: stopped", 1, "sagelab: stopped\n")])
def test_exit_without_teardown_keeps_what_a_normal_exit_does(code, status, stderr):
    """run.py leaves through ``exit_process``: threads joined, exit hooks run, streams flushed, status kept."""
    script = (
        "import atexit, sys, threading, time, torch\n"
        "from sagelab.cli import exit_process\n"
        "atexit.register(lambda: print('hook ran', end=''))\n"
        "threading.Thread(target=lambda: (time.sleep(0.2), print('thread done ', end=''))).start()\n"
        "from concurrent.futures import ThreadPoolExecutor\n"
        "pool = ThreadPoolExecutor(1); pool.submit(time.sleep, 0)\n"  # left open, like MLflow's artifact workers
        "print('buffered ', end='')\n"
        f"exit_process({code!r})\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=cli_env(), capture_output=True, text=True,
                          timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (status, "buffered thread done hook ran", stderr)
