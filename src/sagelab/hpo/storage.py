"""The RDB an Optuna study is shared through (``hpo.storage``): checks, connection, the parent-run claim, records.

``hpo.storage=postgresql+psycopg://user@host:port/db`` (or ``sqlite:///path``) lets any number of worker
processes, on one machine or many, join one Optuna study. This module is everything that knows about that
database:

* :func:`check_url` -- a malformed URL, a password in it, or a dialect Optuna cannot use is a
  :class:`~sagelab.config.ConfigError` on ``hpo.storage`` before anything runs;
* :func:`open_storage` -- Optuna's ``RDBStorage`` with a heartbeat (``hpo.heartbeat_s`` / ``hpo.grace_s``) and
  :class:`~optuna.storages.RetryHeartbeatStaleTrialCallback` (5.0's name for ``RetryFailedTrialCallback``): a
  trial whose worker died is failed by whichever worker looks next and enqueued again with the same
  parameters; an unreachable database is one line naming ``hpo.storage``;
* :func:`claim_parent` -- which MLflow run is the study's parent: a row in ``sagelab_hpo_parent`` (primary key
  = study name). Every worker may create a candidate run, the one whose INSERT lands is the parent and the
  losers delete theirs; nobody waits on a worker that may die between claiming and creating;
* :func:`records` -- the study's trials as the records :func:`sagelab.hpo.study.finalize` reads, built from
  the storage (each worker stores a trial's result there), so results do not depend on whose disk ran what.

Nothing here is imported before a study runs (``run.py --help`` stays free of SQLAlchemy and Optuna).
"""

from __future__ import annotations

import time
import warnings
from typing import Any

from sagelab.config import ConfigError

DIALECTS = ("postgresql", "sqlite", "mysql")
PARENT_TABLE = "sagelab_hpo_parent"
# user attributes a worker sets on a trial (system attributes belong to Optuna)
STATUS = "sagelab.status"    # failed | stopped | over_budget; absent on COMPLETE / PRUNED / lost trials
RESULT = "sagelab.result"    # the trial's result.json: history and MLflow run id
STARTED = "sagelab.started"  # wall-clock start (seconds since the epoch)
WORKER = "sagelab.worker"    # host:pid of the worker that ran it


def check_url(url: str) -> str:
    """``url`` if Optuna can use it as a shared storage, else a ConfigError on ``hpo.storage``."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as err:
        raise ConfigError("hpo.storage", f"'{url}' is not a database URL ({err}); e.g. "
                          "postgresql+psycopg://user@127.0.0.1:5432/optuna or sqlite:////path/optuna.db.") from None
    if parsed.get_backend_name() not in DIALECTS:
        raise ConfigError("hpo.storage", f"'{url}': Optuna's RDB storage takes {', '.join(DIALECTS)} URLs, "
                          f"not {parsed.get_backend_name()}.")
    if parsed.password:
        raise ConfigError("hpo.storage", "holds a password; it would be written to spec.json and logged to MLflow. "
                          "Give it through ~/.pgpass or PGPASSWORD instead.")
    if parsed.get_backend_name() != "sqlite" and not parsed.database:
        raise ConfigError("hpo.storage", f"'{url}' names no database (…/<database> at the end).")
    return url


def shown(url: str) -> str:
    """The URL as printed (never with a password)."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def engine_kwargs(url: str) -> dict[str, Any]:
    """SQLAlchemy engine options per dialect: SQLite waits on locks, a server connection gives up in 10 s."""
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 60}}
    if url.startswith("postgresql"):
        return {"connect_args": {"connect_timeout": 10}, "pool_pre_ping": True}
    return {"pool_pre_ping": True}


def open_storage(url: str, heartbeat_s: int | None = None, grace_s: int | None = None) -> Any:
    """Optuna's RDBStorage on ``url``; with ``heartbeat_s``, dead workers' trials are failed and retried."""
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    kwargs: dict[str, Any] = {}
    if heartbeat_s is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=None)
        kwargs = dict(heartbeat_interval=int(heartbeat_s), grace_period=int(grace_s or 2 * heartbeat_s),
                      heartbeat_stale_trial_callback=retry)
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(5):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs(url), **kwargs)
        except (IntegrityError, ProgrammingError) as err:
            # workers starting together on a new database race to create Optuna's tables; PostgreSQL refuses
            # the losers' CREATE (pg_type's unique index) and the tables exist by the time they look again
            if attempt == 4:
                raise ConfigError("hpo.storage", f"cannot open {shown(url)}: {_reason(err)}") from None
            time.sleep(0.5 * (attempt + 1))
        except (SQLAlchemyError, ImportError) as err:
            raise ConfigError("hpo.storage", f"cannot open {shown(url)}: {_reason(err)}") from None
    raise AssertionError("unreachable")


def _reason(err: BaseException) -> str:
    """The first line of a database error (the driver's own message where SQLAlchemy wraps one)."""
    lines = str(getattr(err, "orig", None) or err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def _parent_table() -> Any:
    import sqlalchemy as sa

    return sa.Table(PARENT_TABLE, sa.MetaData(), sa.Column("study_name", sa.String(512), primary_key=True),
                    sa.Column("run_id", sa.String(64), nullable=False))


def _ensure_table(storage: Any) -> Any:
    """The parent table, created if missing (two workers creating it at once: one CREATE loses, it exists)."""
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    table = _parent_table()
    for attempt in range(3):
        try:
            table.create(storage.engine, checkfirst=True)
            return table
        except (IntegrityError, ProgrammingError):
            if attempt == 2:
                raise
    return table


def parent_of(storage: Any, study_name: str) -> str | None:
    """The study's parent MLflow run id, if one has been claimed."""
    import sqlalchemy as sa

    table = _ensure_table(storage)
    with storage.engine.connect() as con:
        return con.execute(sa.select(table.c.run_id).where(table.c.study_name == study_name)).scalar()


def claim_parent(storage: Any, study_name: str, candidate: str) -> str:
    """Make ``candidate`` the study's parent run unless another worker's INSERT landed first; returns the
    parent. The primary key decides: of racing INSERTs exactly one commits, the others get IntegrityError."""
    import sqlalchemy as sa
    from sqlalchemy.exc import IntegrityError

    table = _ensure_table(storage)
    try:
        with storage.engine.begin() as con:
            con.execute(table.insert().values(study_name=study_name, run_id=candidate))
        return candidate
    except IntegrityError:
        with storage.engine.connect() as con:
            return con.execute(sa.select(table.c.run_id).where(table.c.study_name == study_name)).scalar_one()


def status_of(frozen: Any) -> str | None:
    """What a trial in the storage is, in the study journal's words (None: not a trial that ran for the study).

    COMPLETE -> completed, PRUNED -> pruned, FAIL -> its ``sagelab.status`` (failed or stopped) or, without
    one, interrupted (its worker died; the heartbeat failed it and it was enqueued again); RUNNING -> running.
    WAITING trials and the ones a worker found over budget never ran.
    """
    from optuna.trial import TrialState

    status = frozen.user_attrs.get(STATUS)
    if frozen.user_attrs.get("sagelab.origin") == "warm_start":  # an earlier study's trial (hpo.warm_start)
        return None
    if frozen.state == TrialState.COMPLETE:
        return "completed"
    if frozen.state == TrialState.PRUNED:
        return "pruned"
    if frozen.state == TrialState.RUNNING:
        return "running"
    if frozen.state == TrialState.FAIL:
        return None if status == "over_budget" else status or "interrupted"
    return None


def records(study: Any) -> list[dict[str, Any]]:
    """Every trial that ran, as :func:`sagelab.hpo.records.load_trials` gives them, from the storage."""
    out = []
    for frozen in study.get_trials(deepcopy=False):
        status = status_of(frozen)
        if status is None:
            continue
        retried = frozen.system_attrs.get("retry_history") or []
        out.append({"trial_id": frozen.number, "status": status, "config": dict(frozen.params),
                    "started": frozen.user_attrs.get(STARTED), "worker": frozen.user_attrs.get(WORKER),
                    "retry_of": retried[-1] if retried else None, "result": frozen.user_attrs.get(RESULT)})
    return out


def ask_lock(spec: Any) -> Any:
    """On SQLite, asking is serialised among this machine's workers (a file lock in the study folder): Optuna
    takes an enqueued trial (the default configuration, a retry) by read-then-set-RUNNING, which only a server
    database's row lock makes atomic; SQLite workers share one machine, hence one folder."""
    from contextlib import nullcontext

    if not (spec.storage or "").startswith("sqlite"):
        return nullcontext()
    from filelock import FileLock

    return FileLock(str(spec.dir / "ask.lock"))
