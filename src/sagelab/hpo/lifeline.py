"""Trial processes that cannot outlive their study, and a time limit per trial.

A study killed with SIGKILL runs no clean-up, so each trial process has to learn of its parent's death by
itself: Linux's ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` has the kernel kill it when the thread that started it
ends. The setting survives ``exec``, so :func:`launch` starts every trial program as
``python -m sagelab.hpo.lifeline <study pid> <program...>``, which sets it and then becomes the program. (A
``preexec_fn`` would do the same without the extra interpreter start, but it is unsafe in a process with
threads, and an Optuna study with ``n_workers > 1`` launches its trials from worker threads.)

Syne Tune's LocalBackend starts ``trial_entry.py`` with a plain ``Popen`` that takes no such hook, so
``trial_entry.py`` calls :func:`die_with_parent` itself as its first step and launches ``run.py`` with
:func:`launch`. Either way a trial program runs in a process group of its own, so :func:`stop` ends all of it
(data-loader workers included) and a terminal's Ctrl-C reaches the study, which stops its trials itself.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Callable, Iterator, Sequence

STUDY_PID_ENV = "SAGELAB_HPO_STUDY_PID"  # Syne Tune's trial_entry.py learns its study's pid from here
PR_SET_PDEATHSIG = 1
TIMEOUT_EXIT = 124  # as coreutils' timeout: the trial ran past hpo.trial_timeout_s


def die_with_parent(parent_pid: int) -> None:
    """Be killed when ``parent_pid`` (this process's parent) ends; exit now if it already has (Linux only)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    # the parent may have died before the call above: then this process was already handed to init
    if os.getppid() != parent_pid:
        os._exit(1)


def launch(argv: Sequence[str], cwd: Path, stdout: IO | int | None = None, stderr: IO | int | None = None,
           env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start a trial program (or a shared study's worker) in its own process group, bound to die with this
    process."""
    wrapper = [sys.executable, "-m", "sagelab.hpo.lifeline", str(os.getpid())]
    return subprocess.Popen([*wrapper, *argv], cwd=cwd, stdout=stdout, stderr=stderr, env=env,
                            start_new_session=True)


def stop(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """End a launched trial and everything in its process group: SIGTERM first (the runner then closes its
    MLflow run as KILLED), SIGKILL after ``grace_s`` seconds (at once with 0)."""
    if grace_s > 0:
        _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
    _signal_group(proc, signal.SIGKILL)
    proc.wait()


def _signal_group(proc: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(proc.pid, signum)
    except (ProcessLookupError, PermissionError):  # the whole group has already exited
        pass


def kill(proc: subprocess.Popen) -> None:
    """SIGKILL a launched trial's process group without waiting (safe in a signal handler: whoever waits on
    ``proc`` reaps it)."""
    _signal_group(proc, signal.SIGKILL)


@contextmanager
def interrupt_on_signals(before: Callable[[], None] | None = None) -> Iterator[None]:
    """SIGTERM (a scheduler's or ``kill``'s stop) and Ctrl-C both end the study as KeyboardInterrupt, after
    ``before()``: the Optuna study kills its trials there, or the interrupt would wait on the worker threads
    that wait on them. Only the main thread receives signals; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if before is not None:
            before()
        raise KeyboardInterrupt

    # a signal the process was started ignoring (SIGINT of a background job) stays ignored
    watched = [sig for sig in (signal.SIGTERM, signal.SIGINT) if signal.getsignal(sig) is not signal.SIG_IGN]
    previous = {sig: signal.signal(sig, handler) for sig in watched}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def wait(proc: subprocess.Popen, timeout_s: float | None) -> int | None:
    """The exit code of a launched trial, or None when it ran past ``timeout_s`` (it has then been stopped)."""
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        stop(proc)
        return None


class RunningTrials:
    """The processes a study's worker threads have launched, so that stopping the study kills every one.

    Launching and registering happen under the lock that :meth:`kill_all` takes, and nothing is launched once it
    has run: a process started while the study stops is killed with the others (a stop from another thread
    waits for the lock; one on this thread is seen right after the launch) or never started.
    (Registering after the launch, outside the lock, let a SIGTERM land in between; the study then waited
    forever on a worker thread waiting on a hung trial nobody had killed.)
    """

    def __init__(self) -> None:
        self.live: set[subprocess.Popen] = set()
        self.lock = threading.RLock()  # kill_all runs in a signal handler, maybe on a thread holding the lock
        self.stopping = False  # set when the study stops: what was killed was interrupted, not failed

    def launch(self, argv: Sequence[str], cwd: Path, stdout: IO | None, stderr: IO | None) -> subprocess.Popen | None:
        """:func:`launch` ``argv``, or None if the study is stopping."""
        with self.lock:
            if self.stopping:
                return None
            proc = launch(argv, cwd=cwd, stdout=stdout, stderr=stderr)
            self.live.add(proc)
            if self.stopping:  # the stop's handler ran on this very thread, during the launch
                kill(proc)
            return proc

    def wait(self, proc: subprocess.Popen, timeout_s: float | None) -> int | None:
        """:func:`wait` for ``proc``, then forget it."""
        try:
            return wait(proc, timeout_s)
        finally:
            with self.lock:
                self.live.discard(proc)

    def kill_all(self) -> None:
        with self.lock:
            self.stopping = True
            for proc in list(self.live):
                kill(proc)


def timed_out(trial_id: int | str, timeout_s: float, stream: IO) -> str:
    """Say on the trial's stderr that it was stopped at ``hpo.trial_timeout_s``; returns the reason to record."""
    reason = f"ran longer than hpo.trial_timeout_s={timeout_s:g} s and was stopped"
    print(f"sagelab hpo: trial {trial_id} {reason}", file=stream, flush=True)
    return reason


def main(argv: list[str]) -> None:
    parent, program = int(argv[0]), argv[1:]
    die_with_parent(parent)
    os.execvp(program[0], program)


if __name__ == "__main__":
    main(sys.argv[1:])
