"""The study's own journal on disk, shared by both backends.

Layout of ``mlruns/hpo/<study>/``::

    spec.json             the resolved study (StudySpec)
    state.json            parent MLflow run id, sessions and their elapsed time
    session.lock          held by the live session (the OS lets go when its process dies, even by SIGKILL)
    session.json          who holds it: pid, host, start time
    trials/<id>/trial.json   written by the study: config, status, times, error
    trials/<id>/result.json  written by the trial: per-round objectives, MLflow run id
    optuna.db             Optuna's RDB storage (Optuna studies)
    syne_tune/session-<k>/   Syne Tune's own results per session
    results/              trials.csv, pareto.csv, plots, summary.json

Files are replaced atomically, so a study killed at any moment leaves every
finished trial readable; that is what resuming relies on. Each session of either
backend starts from :func:`open_session`: the trials a dead session left running
are marked interrupted, and the budget left (:class:`Budget`) is counted over all
earlier sessions.
"""

from __future__ import annotations

import json
import os
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, NamedTuple

if TYPE_CHECKING:
    from sagelab.hpo.spec import StudySpec

# trial statuses: running -> completed | stopped (by the scheduler or the budget) | pruned | failed;
# a trial still "running" when its study died is "interrupted" and is not counted as finished.
FINISHED = ("completed", "stopped", "pruned", "failed")


def write_json(path: Path, obj: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    tmp.replace(path)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def update_trial(trial_dir: Path, **fields: Any) -> dict[str, Any]:
    """Merge ``fields`` into ``trial.json`` (the study process is its only writer)."""
    path = Path(trial_dir) / "trial.json"
    record = read_json(path) or {}
    record.update(fields)
    write_json(path, record)
    return record


def drop_checkpoints(trial_dir: Path) -> None:
    """A finished trial's checkpoints are only disk weight (the best one is re-trained from its YAML)."""
    import shutil

    shutil.rmtree(Path(trial_dir) / "checkpoints", ignore_errors=True)


def finish_trial(trial_dir: Path, keep_checkpoints: bool, **fields: Any) -> dict[str, Any]:
    """Record a trial's end (status, reason, error) and drop its checkpoints unless asked to keep them."""
    record = update_trial(trial_dir, ended=time.time(), **fields)
    if not keep_checkpoints:
        drop_checkpoints(trial_dir)
    return record


def load_trials(study_dir: Path) -> list[dict[str, Any]]:
    """Every trial of the study, ``trial.json`` merged with the trial's ``result.json`` under ``result``."""
    out = []
    root = Path(study_dir) / "trials"
    if not root.is_dir():
        return out
    for tdir in root.iterdir():
        record = read_json(tdir / "trial.json")
        if record is None:
            continue
        record["result"] = read_json(tdir / "result.json")
        out.append(record)
    return sorted(out, key=lambda r: int(r["trial_id"]))


def end_running(study_dir: Path, keep_checkpoints: bool, **fields: Any) -> list[int]:
    """Finish every trial still "running" with ``fields`` (one session at a time: they are this session's, or a
    dead one's); returns their ids."""
    ids = []
    for record in load_trials(study_dir):
        if record.get("status") == "running":
            finish_trial(Path(study_dir) / "trials" / str(record["trial_id"]), keep_checkpoints, **fields)
            ids.append(int(record["trial_id"]))
    return ids


def end_session_trials(spec: StudySpec, cut_short: bool) -> list[int]:
    """At the end of a session, the trials still running: cut short by an interrupt or by giving up, they are
    "interrupted" and the next session runs them again; ended by the budget, they were "stopped"."""
    if cut_short:
        return end_running(spec.dir, spec.keep_checkpoints, status="interrupted")
    return end_running(spec.dir, spec.keep_checkpoints, status="stopped", reason="budget")


def lost_trials(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Interrupted trials that no later trial has run again (``retry_of``): what a new session runs first."""
    retried = {int(r["retry_of"]) for r in records if r.get("retry_of") is not None}
    return [r for r in records if r.get("status") == "interrupted" and int(r["trial_id"]) not in retried]


def mark_interrupted(study_dir: Path) -> list[int]:
    """Trials left "running" by a study that died: mark them interrupted; returns their ids."""
    return end_running(study_dir, keep_checkpoints=True, status="interrupted")


class StudyState:
    """``state.json``: the parent run and the wall-clock time spent by earlier sessions."""

    def __init__(self, study_dir: Path) -> None:
        self.path = Path(study_dir) / "state.json"
        self.data: dict[str, Any] = read_json(self.path) or {"sessions": []}
        self._session_start: float | None = None

    @property
    def resumed(self) -> bool:
        return bool(self.data["sessions"])

    @property
    def parent_run_id(self) -> str | None:
        return self.data.get("parent_run_id")

    @parent_run_id.setter
    def parent_run_id(self, value: str) -> None:
        self.data["parent_run_id"] = value
        self.save()

    def begin_session(self) -> int:
        self._session_start = time.monotonic()
        self.data["sessions"].append({"started": time.time(), "elapsed_s": 0.0})
        self.save()
        return len(self.data["sessions"]) - 1

    def tick(self) -> None:
        """Record this session's elapsed time (called often, so a kill loses little)."""
        if self._session_start is not None:
            self.data["sessions"][-1]["elapsed_s"] = time.monotonic() - self._session_start
            self.save()

    def elapsed_before(self) -> float:
        """Wall-clock seconds of the sessions before this one."""
        done = self.data["sessions"][:-1] if self._session_start is not None else self.data["sessions"]
        return float(sum(s.get("elapsed_s", 0.0) for s in done))

    def save(self) -> None:
        write_json(self.path, self.data)


def trial_cost(record: dict[str, Any]) -> float:
    result = record.get("result") or {}
    history = result.get("history") or []
    return float(history[-1].get("cost_usd", 0.0)) if history else 0.0


def tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a trial's file (``std.err``), or "" if it was never written."""
    try:
        return "".join(Path(path).read_text(errors="replace").splitlines(keepends=True)[-lines:])
    except FileNotFoundError:
        return ""


@dataclass(frozen=True)
class Budget:
    """What a new session may still spend: the study's budgets minus what earlier sessions used.

    ``None`` means that budget is not set. Both backends start a session from this.
    """

    trials_left: int | None     # hpo.max_trials minus the finished trials
    wall_left: float | None     # hpo.max_wallclock_s minus earlier sessions' elapsed seconds
    cost_before: float          # cost_usd of every trial recorded so far
    max_cost_usd: float | None  # hpo.max_cost_usd (a session stops when cost_before + its own cost reach it)
    failed_before: int = 0      # failed trials of earlier sessions
    max_failures: int | None = None  # hpo.max_failures: one failure more, over all sessions, stops the study

    @property
    def exhausted(self) -> bool:
        """Nothing is left: the session starts no trial."""
        return (
            (self.trials_left is not None and self.trials_left <= 0)
            or (self.wall_left is not None and self.wall_left <= 0)
            or (self.max_cost_usd is not None and self.cost_before >= self.max_cost_usd)
            or self.too_many_failures(0)
        )

    def too_many_failures(self, failed_now: int) -> bool:
        """Whether ``failed_now`` failures of this session take the study past ``hpo.max_failures``."""
        return self.max_failures is not None and self.failed_before + failed_now > self.max_failures


def give_up_message(name: str, n_failed: int, max_failures: int | None) -> str:
    return (f"study {name} stopped: {n_failed} trials failed, more than hpo.max_failures={max_failures} allows; "
            "the results so far are finalized. See the failed trials' std.err, then raise hpo.max_failures and "
            "run the command again to go on.")


def remaining_budget(spec: StudySpec, state: StudyState, records: list[dict[str, Any]]) -> Budget:
    """The budget left for this session, given the study's trial records (:func:`load_trials`)."""
    finished = sum(1 for r in records if r.get("status") in FINISHED)
    return Budget(
        trials_left=None if spec.max_trials is None else spec.max_trials - finished,
        wall_left=None if spec.max_wallclock_s is None else spec.max_wallclock_s - state.elapsed_before(),
        cost_before=sum(trial_cost(r) for r in records),
        max_cost_usd=spec.max_cost_usd,
        failed_before=sum(1 for r in records if r.get("status") == "failed"),
        max_failures=spec.max_failures,
    )


class Session(NamedTuple):
    """A session of a study as it starts: its number, what the last one lost, the trials so far, what is left."""

    number: int
    interrupted: list[int]          # trials a dead session left running (now "interrupted")
    records: list[dict[str, Any]]   # every trial so far (:func:`load_trials`)
    budget: Budget


def open_session(spec: StudySpec, state: StudyState) -> Session:
    """Begin a session of ``spec``'s study: mark lost trials, record the session start, count the budget left."""
    interrupted = mark_interrupted(spec.dir)
    number = state.begin_session()
    records = load_trials(spec.dir)
    return Session(number, interrupted, records, remaining_budget(spec, state, records))


class StudyBusy(RuntimeError):
    """Another session of the same study is running."""


@contextmanager
def hold_session(study_dir: Path, name: str) -> Iterator[None]:
    """Be the study's only live session, or raise :class:`StudyBusy` at once naming the one that is."""
    from filelock import FileLock, Timeout

    study_dir = Path(study_dir)
    study_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(study_dir / "session.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        owner = read_json(study_dir / "session.json") or {}
        since = datetime.fromtimestamp(owner["started"]).strftime("%Y-%m-%d %H:%M") if "started" in owner else "?"
        raise StudyBusy(f"study {name} is already running (pid {owner.get('pid', '?')} on {owner.get('host', '?')} "
                        f"since {since}); let it finish or stop it, then run the command again.") from None
    try:
        write_json(study_dir / "session.json", {"pid": os.getpid(), "host": socket.gethostname(),
                                                "started": time.time()})
        yield
    finally:
        lock.release()
