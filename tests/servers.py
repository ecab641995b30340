"""Real servers for tests: a throw-away PostgreSQL cluster and an MLflow tracking server.

``postgres`` (session-scoped; conftest imports it) initdb's a cluster in a temporary folder owned by the
``postgres`` user, starts it on 127.0.0.1 with a free port (its unix socket in that folder too, so it never
meets a system cluster), and stops it (``pg_ctl stop -m fast``) and deletes the folder at the end. Tests get a
:class:`Postgres` and ask it for databases of their own: ``postgres.database("optuna")`` -> a
``postgresql+psycopg://`` URL. Without Debian's binaries (``/usr/lib/postgresql/*/bin``) the tests that need
it are skipped with the reason; ``make install`` installs them.

:func:`mlflow_server` runs the venv's ``mlflow server`` on a backend store and an artifact folder until the
``with`` block ends; it returns once ``GET /health`` answers.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

START_TIMEOUT_S = 120.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postgres_bin() -> Path | None:
    """The newest Debian PostgreSQL binaries folder, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parent.parent.name))
    return Path(found[-1]).parent if found else None


class Postgres:
    """A running cluster: ``url(db)`` / ``database(name)`` for the tests."""

    def __init__(self, bindir: Path, root: Path, port: int) -> None:
        self.bindir, self.root, self.port = bindir, root, port
        self.data = root / "data"

    def as_postgres(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["runuser", "-u", "postgres", "--", *argv], capture_output=True, text=True,
                              check=check, timeout=START_TIMEOUT_S)

    def start(self) -> None:
        self.as_postgres(str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                         "-E", "UTF8", "--no-sync")
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.root} -c fsync=off"
        self.as_postgres(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"),
                         "-o", options, "-w", "-t", str(int(START_TIMEOUT_S)), "start")

    def stop(self) -> None:
        self.as_postgres(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop", check=False)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def database(self, name: str) -> str:
        """A new, empty database ``name`` (dropped first if a test made it before); its URL."""
        for sql in (f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"'):
            self.as_postgres(str(self.bindir / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-d", "postgres",
                             "-v", "ON_ERROR_STOP=1", "-qc", sql)
        return self.url(name)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A PostgreSQL cluster for this test session (skipped, saying why, where it cannot run)."""
    bindir = postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/pg_ctl); run `make install` as root")
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        pytest.skip("the PostgreSQL fixture runs initdb as user postgres through runuser, which needs root")
    root = Path(tempfile.mkdtemp(prefix="sagelab-pg-"))  # under /tmp: the postgres user must reach it
    shutil.chown(root, "postgres", "postgres")
    server = Postgres(bindir, root, free_port())
    try:
        server.start()
    except subprocess.CalledProcessError as err:
        log = (root / "server.log").read_text() if (root / "server.log").exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"PostgreSQL did not start: {err.stderr}\n{log[-2000:]}")
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def mlflow_server(backend_uri: str, artifacts: Path, log: Path) -> Iterator[str]:
    """``mlflow server`` (this venv's) on ``backend_uri``, proxying artifacts into ``artifacts``; yields its URL."""
    port = free_port()
    mlflow = Path(sys.executable).with_name("mlflow")
    argv = [str(mlflow), "server", "--backend-store-uri", backend_uri, "--artifacts-destination", str(artifacts),
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not come up (exit {proc.poll()}):\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 15)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait()
