"""Spot semantics: a killed run, started again with the same command, ends exactly where an uninterrupted one does."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, mlflow_runs, tiny_overrides

STEPS = ["task=glue_cola", "data.train_limit=480", "trainer.max_epochs=2", "checkpoint.every_n_steps=10",
         "optim.batch_size=8", "trainer.deterministic=true", "trainer.log_every_n_steps=5"]


def command(tmp: Path, ckpt: Path) -> list[str]:
    return [sys.executable, str(ROOT / "run.py"), *tiny_overrides(tmp), *STEPS, f"checkpoint.dir={ckpt}"]


def final_metrics(tmp: Path) -> dict:
    runs = mlflow_runs(tmp, "glue_cola")
    assert len(runs) == 1, "a resumed command continues its MLflow run"
    run = runs.iloc[0]
    assert run["status"] == "FINISHED"
    return {k: run[f"metrics.{k}"] for k in ("val/mcc", "val/loss", "val/accuracy")}


def interrupt_after_first_checkpoint(cmd: list[str], ckpt: Path, sig: int) -> tuple[int, float]:
    """Start ``cmd``, send ``sig`` once ``last.ckpt`` exists; return (exit code, seconds it took to stop)."""
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not (ckpt / "last.ckpt").exists():
        assert proc.poll() is None, "the run ended before its first checkpoint"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    sent = time.monotonic()
    proc.send_signal(sig)
    code = proc.wait(timeout=60)
    return code, time.monotonic() - sent


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("plain")
    subprocess.run(command(tmp, tmp / "ckpt"), cwd=ROOT, check=True, capture_output=True, timeout=600)
    return final_metrics(tmp)


def test_sigkill_then_same_command_resumes_to_the_same_result(tmp_path, uninterrupted):
    ckpt = tmp_path / "ckpt"
    cmd = command(tmp_path, ckpt)
    code, _ = interrupt_after_first_checkpoint(cmd, ckpt, signal.SIGKILL)
    assert code == -signal.SIGKILL
    assert json.loads((ckpt / "sagelab_state.json").read_text())["completed"] is False

    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming from" in again.stderr
    assert final_metrics(tmp_path) == pytest.approx(uninterrupted, abs=1e-6)


@pytest.mark.slow  # kept out of CI for time; `make test-slow` runs it
def test_sigterm_checkpoints_promptly_and_resumes(tmp_path, uninterrupted):
    ckpt = tmp_path / "ckpt"
    cmd = command(tmp_path, ckpt)
    code, seconds = interrupt_after_first_checkpoint(cmd, ckpt, signal.SIGTERM)
    assert code != 0
    assert seconds < 10, f"took {seconds:.1f}s to checkpoint and stop after SIGTERM"
    runs = mlflow_runs(tmp_path, "glue_cola")
    assert runs.iloc[0]["status"] == "KILLED"

    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert final_metrics(tmp_path) == pytest.approx(uninterrupted, abs=1e-6)


@pytest.mark.slow  # kept out of CI for time; `make test-slow` runs it
def test_finished_command_starts_fresh(tmp_path):
    ckpt = tmp_path / "ckpt"
    cmd = command(tmp_path, ckpt)[:-3] + ["data.train_limit=32", "trainer.max_epochs=1", f"checkpoint.dir={ckpt}"]
    for _ in range(2):
        subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, timeout=600)
    assert len(mlflow_runs(tmp_path, "glue_cola")) == 2


def test_default_checkpoint_folder_follows_the_resolved_config(make_cfg):
    """Same training setup -> same folder, however it is spelled; anything that changes training -> a new one."""
    from sagelab.config import default_checkpoint_dir

    def folder(*overrides: str) -> Path:
        return default_checkpoint_dir(make_cfg("task=glue_cola", "checkpoint.dir=null", *overrides))

    default = folder()
    assert default.parent == ROOT / "outputs" / "checkpoints" / "glue_cola"
    assert folder("optim.lr=1e-3") == default  # the value tiny_overrides already sets, spelled again
    assert folder("mode=evaluate", "strategy=ddp", "trainer.enable_progress_bar=true") == default
    assert folder("optim.lr=2e-3") != default
    assert folder("seed=7") != default
    assert folder("task=glue_mrpc").parent.name == "glue_mrpc"
    graph = ["task=link_prediction", "model=graphsage"]
    assert folder(*graph, "mode=recommend", "task.node=Henry", "task.k=3") == folder(*graph)  # task.run_only_keys
