"""How a command ends when the machine stops it or the disk refuses it.

* **SIGTERM** (a spot notice, ``kill``, a scheduler) becomes :class:`Terminated`, raised where the command is,
  so every ``finally`` runs: the MLflow run ends KILLED and ``sagelab_state.json`` never claims a killed run
  completed. While training steps run, :class:`~sagelab.callbacks.SpotCheckpointing` defers it to the end of
  the step and checkpoints first; a section that must not be cut in half (opening or closing the MLflow run)
  defers it too (:meth:`Sigterm.deferred`).
* **A full disk or a folder that cannot be written** is one line naming the path (:func:`storage_problem`);
  the other ranks of a DDP run, left in a collective, say one line too (:func:`peer_gone`).
* **Closing the MLflow run after a failure** never replaces that failure (:func:`close_run`).

Standard library only: the CLI imports this before torch.
"""

from __future__ import annotations

import errno
import signal
import sys
import threading
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

if TYPE_CHECKING:
    from sagelab.tracking import RunRecord

EXIT_SIGTERM = 128 + signal.SIGTERM
#: what a full disk, a read-only mount or a file where a folder belongs raise
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST,
                errno.EISDIR}


class Terminated(BaseException):
    """SIGTERM as an exception. Not a KeyboardInterrupt, which Lightning turns into ``sys.exit(1)``; not an
    ``Exception``, which library code may catch and carry on."""


class Sigterm:
    """The SIGTERM handler of one command: raise :class:`Terminated` at once or, while ``deferring``, note it."""

    def __init__(self) -> None:
        self.received = False
        self.deferring = False
        #: passes the signal on once (Lightning's DDP launcher: ``launcher.kill``), so child ranks stop too
        self.forward: Callable[[int], None] | None = None

    def __call__(self, signum: int, frame: Any) -> None:
        first, self.received = not self.received, True
        if first and self.forward is not None:
            self.forward(signum)
        if not self.deferring:
            raise Terminated()

    def install(self) -> bool:
        if threading.current_thread() is not threading.main_thread():
            return False  # only the main thread may set handlers; a run in a thread keeps the default
        signal.signal(signal.SIGTERM, self)
        return True

    def stop_deferring(self) -> None:
        """Back to raising at once -- now, if a SIGTERM arrived meanwhile."""
        self.deferring = False
        if self.received:
            raise Terminated()

    @contextmanager
    def deferred(self, raise_after: bool = True) -> Iterator[None]:
        """A section a SIGTERM must not cut in half; one that arrives during it is raised at its end."""
        before, self.deferring = self.deferring, True
        try:
            yield
        finally:
            self.deferring = before
        if raise_after and self.received and not before:
            raise Terminated()


_current: Sigterm | None = None


def current() -> Sigterm:
    """This process's handler: the command's, or (a process Lightning spawned) one of its own."""
    global _current
    if _current is None:
        _current = Sigterm()
    return _current


@contextmanager
def sigterm_raises() -> Iterator[Sigterm]:
    """For the whole command: SIGTERM raises :class:`Terminated`; the previous handler is back afterwards."""
    global _current
    outer, _current = _current, Sigterm()
    previous = signal.getsignal(signal.SIGTERM)
    installed = _current.install()
    try:
        yield _current
    finally:
        _current = outer
        if installed:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def as_terminated(err: BaseException) -> BaseException:
    """Lightning's own ``SIGTERMException`` (its handler ran before ours) is a SIGTERM too."""
    return Terminated() if type(err).__name__ == "SIGTERMException" else err


def end_state(err: BaseException | None) -> tuple[str, str | None]:
    """(MLflow end status, error text) of a command that raised ``err`` (None: it did not)."""
    if err is None:
        return "FINISHED", None
    if isinstance(err, (Terminated, KeyboardInterrupt, SystemExit)):
        return "KILLED", None
    return "FAILED", "".join(traceback.format_exception(type(err), err, err.__traceback__))


def close_run(record: RunRecord | None, err: BaseException | None, metrics: dict[str, float],
              status: str | None = None) -> None:
    """Log the last metrics and end the run. After a failure, MLflow refusing is a warning line: the user must
    see why the command failed, not why its bookkeeping did."""
    if record is None:
        return
    status, error = (status, None) if status and err is None else end_state(err)
    problems = []
    for step in (lambda: record.log_metrics(metrics), lambda: record.finish(status, error)):
        try:
            step()
        except Exception as problem:  # MLflow raises its own types per store
            if err is None:
                raise
            problems.append(problem)
    if problems:
        print(f"sagelab: warning: MLflow run {record.run_id} could not be ended as {status}: "
              f"{_one_line(problems[-1])}", file=sys.stderr)


def storage_problem(err: BaseException) -> str | None:
    """``cannot write <path>: <reason>`` if ``err`` (or what caused it) is a disk or permission refusal."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, CannotWrite):
            return f"cannot write {err.path}: {err.reason}"
        if isinstance(err, OSError) and err.errno in WRITE_ERRNOS and err.filename:
            return f"cannot write {err.filename}: {_reason(err)}"
        err = err.__cause__ or err.__context__
    return None


def peer_gone(err: BaseException) -> str | None:
    """The one line for a rank whose collective failed because another process of the run ended first (that
    process said why); None for anything else."""
    text = str(err)
    if isinstance(err, RuntimeError) and ("closed by peer" in text or "reset by peer" in text):
        return "stopped because another process of this run ended first (its message is above)"
    return None


class CannotWrite(Exception):
    """A place the run must write to refused (any errno: ``/proc/x`` gives ENOENT)."""

    def __init__(self, path: str | Path, err: OSError) -> None:
        super().__init__(f"cannot write {path}: {_reason(err)}")
        self.path, self.reason = str(path), _reason(err)


def _reason(err: OSError) -> str:
    if err.errno in (errno.EEXIST, errno.ENOTDIR):
        return f"{err.strerror} (a file stands where a folder is needed)"
    return err.strerror or type(err).__name__


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:300] if text else ''}"
