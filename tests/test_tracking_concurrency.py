"""Several processes logging to one new SQLite MLflow store at once (HPO workers, the joblib launcher).

Each worker is this file run as a script: it opens its run through ``RunRecord`` (which creates the store and
the experiment if it is the first), writes a ``ready`` file, waits for the test's ``go`` file so that all of them
write at the same time, logs its metric batches and ends the run. Nothing is timed: the outcome is the store.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

WORKERS = 4
BATCHES = 500


def worker(root: Path, index: int) -> None:
    from conftest import compose_config
    from sagelab.tracking import RunRecord

    cfg = compose_config("task=glue_cola", f"logger.tracking_uri=sqlite:///{root}/mlflow.db",
                         f"logger.artifact_location={root}/artifacts", f"logger.run_name=writer-{index}")
    record = RunRecord(cfg, None, is_global_zero=True)
    (root / f"ready-{index}").write_text(record.run_id)
    while not (root / "go").exists():
        time.sleep(0.01)
    for step in range(BATCHES):
        record.log_metrics({"train/loss": 1.0 / (step + 1), "writer": float(index)}, step=step)
    record.finish("FINISHED")


def wait_for(paths: list[Path], procs: list[subprocess.Popen], deadline_s: float = 300) -> None:
    """Until every path exists (a worker that exits first fails the test with its output)."""
    deadline = time.monotonic() + deadline_s  # a safety net only: the workers decide when they are ready
    while not all(p.exists() for p in paths):
        for proc in procs:
            if proc.poll() is not None:
                raise AssertionError(proc.stdout.read() if proc.stdout else f"worker exited {proc.returncode}")
        assert time.monotonic() < deadline, "workers never got ready"
        time.sleep(0.05)


@pytest.mark.slow  # kept out of CI for time; `make test-slow` runs it
def test_four_processes_log_to_one_new_store_at_once(tmp_path):
    procs = [subprocess.Popen([sys.executable, __file__, str(tmp_path), str(i)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for i in range(WORKERS)]
    try:
        wait_for([tmp_path / f"ready-{i}" for i in range(WORKERS)], procs)
        (tmp_path / "go").touch()
        outputs = [proc.communicate(timeout=600)[0] for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
    for proc, out in zip(procs, outputs):
        assert proc.returncode == 0, out[-3000:]
        assert "database is locked" not in out

    import sqlite3

    with sqlite3.connect(tmp_path / "mlflow.db") as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # readers never block the writer
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    for i in range(WORKERS):
        run = client.get_run((tmp_path / f"ready-{i}").read_text())
        assert run.info.status == "FINISHED" and run.data.tags["mlflow.runName"] == f"writer-{i}"
        history = client.get_metric_history(run.info.run_id, "train/loss")
        assert sorted(m.step for m in history) == list(range(BATCHES))
        assert {m.value for m in client.get_metric_history(run.info.run_id, "writer")} == {float(i)}


def test_a_call_that_finds_the_store_locked_is_tried_again():
    from mlflow.exceptions import MlflowException

    from sagelab.tracking import retry_locked

    calls: list[int] = []

    def flaky(value: int) -> int:
        calls.append(value)
        if len(calls) < 3:  # what MLflow raises when SQLite gives up waiting for another writer
            raise MlflowException("(sqlite3.OperationalError) database is locked")
        return value

    assert retry_locked(flaky, 7) == 7 and calls == [7, 7, 7]

    def broken() -> None:
        calls.append(0)
        raise MlflowException("no such run")

    calls.clear()
    with pytest.raises(MlflowException, match="no such run"):
        retry_locked(broken)
    assert calls == [0]  # any other error is raised at once


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    worker(Path(sys.argv[1]), int(sys.argv[2]))
