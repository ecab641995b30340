"""One study trial as a Ray Tune trainable: the same ``python run.py ...`` process, on whichever node Ray picks.

:class:`RunPyTrial` is a Ray Tune class trainable (``setup`` / ``step`` / ``cleanup``), chosen over a function
trainable because Ray calls ``cleanup`` when it stops a trial, which is where the trial's process must die:

* ``setup`` launches :meth:`StudySpec.trial_argv` through :func:`sagelab.hpo.lifeline.launch` (own process
  group, killed with this actor), stdout and stderr to ``trials/<id>/std.out`` / ``std.err``;
* ``step`` waits for the next round the run's :class:`~sagelab.hpo.report.TrialReporter` appends to
  ``trials/<id>/result.json`` and returns it to Ray Tune (epoch, the minimised objectives, the node). The
  full-fidelity round is returned only once the run has exited, so no scheduler can stop a run while it closes
  its MLflow record (what ``trial_entry.py`` does for Syne Tune); it ends the trial (``done``);
* ``cleanup`` stops a run that is still going (SIGTERM: the runner ends its MLflow run KILLED; SIGKILL after a
  grace period) -- the scheduler stopped it, or the study ended.

The study folder (``hpo.dir``), the project and the Python at ``hpo.command`` must be at the same paths on every
node -- one machine, or shared storage -- as must the MLflow store. ``setup`` says so in one line when the
study's ``spec.json`` cannot be read on its node.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

from ray import tune

from sagelab.hpo.records import read_json, write_json
from sagelab.hpo.spec import StudySpec

TRIAL_KEY = "_sagelab_trial"  # the study's trial id, carried in the config Ray hands the trainable
RETRY_KEY = "_sagelab_retry_of"  # the interrupted trial this one runs again, if any
EXIT_KEY = "sagelab_exit"  # in a trial's last result: the exit status of its run (0: it ran to its end)
POLL_S = 0.2
STOP_GRACE_S = 5.0


def sampled(config: dict[str, Any]) -> dict[str, Any]:
    """The hyperparameters of a Ray trial's config, without the study's bookkeeping keys."""
    return {k: v for k, v in config.items() if not k.startswith("_sagelab")}


def node() -> dict[str, str]:
    """Where this process runs: Ray's node id and the node's IP address."""
    import ray

    return {"node_id": ray.get_runtime_context().get_node_id(), "node_ip": ray.util.get_node_ip_address()}


class TrialFailed(RuntimeError):
    """The run failed (its exit status, no report, a timeout); Ray records the trial as ERROR."""


class RunPyTrial(tune.Trainable):
    """A study trial: launches the run in ``setup``, hands Ray one validation round per ``step``."""

    def setup(self, config: dict[str, Any], spec_path: str = "") -> None:
        from sagelab.config import PROJECT_ROOT
        from sagelab.hpo.lifeline import launch

        if not Path(spec_path).is_file():
            raise TrialFailed(f"{spec_path} cannot be read on Ray node {node()['node_ip']}: hpo.dir must be on "
                              "storage every node of the cluster sees (and the project at the same path).")
        self.spec = StudySpec.load(spec_path)
        self.trial = int(config[TRIAL_KEY])
        self.dir = self.spec.trial_dir(self.trial)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.where = node()
        argv = self.spec.trial_argv(self.trial, sampled(config))
        (self.dir / "command.txt").write_text(" ".join(argv) + "\n")
        with open(self.dir / "std.out", "a") as out, open(self.dir / "std.err", "a") as err:
            self.proc: subprocess.Popen | None = launch(argv, cwd=PROJECT_ROOT, stdout=out, stderr=err)
        self.seen = 0
        self.started = time.monotonic()

    def step(self) -> dict[str, Any]:
        """The next round of the run (blocks until it is written), ``done`` with the last one."""
        assert self.proc is not None
        while True:
            code = self.proc.poll()  # before reading: a round written just before the exit is still seen
            history = (read_json(self.dir / "result.json") or {}).get("history") or []
            if len(history) > self.seen:
                entry = history[self.seen]
                final = int(entry["round"]) >= self.spec.max_resource
                if not final or code is not None:
                    self.seen += 1
                    if final:
                        return self._last(entry, code)
                    return self._payload(entry)
            elif code is not None:  # it exited after its last reported round (or before any)
                return self._last(history[-1] if history else None, code)
            self._check_timeout()
            time.sleep(POLL_S)

    def _payload(self, entry: dict[str, Any]) -> dict[str, Any]:
        from sagelab.hpo.report import syne_tune_payload  # epoch, minimised objectives, raw numeric metrics

        return {**{k.replace("/", "_"): v for k, v in syne_tune_payload(entry).items()}, **self.where}

    def _last(self, entry: dict[str, Any] | None, code: int) -> dict[str, Any]:
        self.proc = None
        if code != 0 or entry is None:
            reason = f"exit code {code}" if code != 0 else "no validation round reported"
            write_json(self.dir / "exit.json", {"returncode": code, "reason": reason})
            raise TrialFailed(f"trial {self.trial} failed ({reason}); see {self.dir / 'std.err'}")
        write_json(self.dir / "exit.json", {"returncode": 0})
        return {**self._payload(entry), EXIT_KEY: 0, "done": True}

    def _check_timeout(self) -> None:
        from sagelab.hpo.lifeline import TIMEOUT_EXIT, stop, timed_out

        limit = self.spec.trial_timeout_s
        if limit is None or time.monotonic() - self.started < limit or self.proc is None:
            return
        stop(self.proc)
        self.proc = None
        with open(self.dir / "std.err", "a") as err:
            reason = timed_out(self.trial, limit, err)
        write_json(self.dir / "exit.json", {"returncode": TIMEOUT_EXIT, "reason": reason})
        raise TrialFailed(f"trial {self.trial} {reason}")

    def cleanup(self) -> None:
        from sagelab.hpo.lifeline import stop

        proc = getattr(self, "proc", None)
        if proc is not None and proc.poll() is None:
            stop(proc, grace_s=STOP_GRACE_S)
            write_json(self.dir / "exit.json", {"returncode": proc.returncode, "reason": "stopped by Ray Tune"})
        self.proc = None
