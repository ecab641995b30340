"""A real two-node Ray cluster on this machine for tests: ``ray start --head`` plus one ``ray start --address``.

Each node is a ``ray start --block`` process with one CPU, started in a session of its own; the cluster has a
temp dir of its own (short: Ray's socket paths must fit in 107 bytes) and explicitly chosen free ports, so it
never collides with another cluster on the machine. Teardown ends only this cluster's processes: each node's
process group (its GCS, raylet, agents and workers inherit the ``ray start`` process's), SIGTERM then SIGKILL,
then any process whose command line still names this cluster's temp dir. ``ray stop --force`` is not used: it
stops every Ray process on the machine, including other people's clusters.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

RAY = Path(os.environ.get("SAGELAB_RAY_CLI", Path(__file__).resolve().parents[1] / ".venv" / "bin" / "ray"))


def ray_cli() -> str:
    """The ``ray`` command of this interpreter's environment."""
    import sys

    beside = Path(sys.executable).with_name("ray")
    return str(beside if beside.exists() else RAY)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_ports(head_port: int | None = None) -> list[str]:
    ports = ["--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
             "--dashboard-agent-grpc-port", "--runtime-env-agent-port", "--metrics-export-port"]
    args = [arg for name in ports for arg in (name, str(free_port()))]
    return args if head_port is None else [*args, "--port", str(head_port)]


def pids_naming(text: str) -> set[int]:
    """Processes (other than this one) whose command line contains ``text``."""
    pids = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if text in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                pids.add(int(proc.name))
        except OSError:
            continue
    return pids


def _descendants(roots: set[int]) -> set[int]:
    children: dict[int, set[int]] = {}
    for proc in Path("/proc").iterdir():
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1]) if proc.name.isdigit() else None
        except (OSError, IndexError, ValueError):
            continue
        if ppid is not None:
            children.setdefault(ppid, set()).add(int(proc.name))
    found, todo = set(), list(roots)
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _alive_nodes(address: str) -> int:
    import ray

    ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        return sum(1 for n in ray.nodes() if n.get("Alive"))
    finally:
        ray.shutdown()


@contextmanager
def local_cluster(workers: int = 1, cpus: int = 1, timeout_s: float = 120.0) -> Iterator[str]:
    """Start a head and ``workers`` worker nodes of ``cpus`` CPUs each; yields the head's ``127.0.0.1:<port>``."""
    temp = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))
    port = free_port()
    address = f"127.0.0.1:{port}"
    # Ray 2.60 turns token auth on for a new cluster when ~/.ray/auth_token exists (and a local ray.init() writes
    # one): this test cluster is reached on 127.0.0.1 only and runs without, whatever the home folder holds
    saved_auth = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    common = ["--block", "--num-cpus", str(cpus), "--disable-usage-stats", "--node-ip-address", "127.0.0.1"]
    starters: list[subprocess.Popen] = []
    log = open(temp / "ray-start.log", "ab")

    def start(*args: str) -> None:
        starters.append(subprocess.Popen([ray_cli(), "start", *common, *args], stdout=log, stderr=log, env=env,
                                         start_new_session=True))

    try:
        start("--head", "--temp-dir", str(temp), "--include-dashboard=false", "--dashboard-port", str(free_port()),
              *node_ports(port))
        deadline = time.monotonic() + timeout_s
        while True:  # the head answers before the workers can join it
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or starters[0].poll() is not None:
                    raise RuntimeError(f"the Ray head did not start; see {temp / 'ray-start.log'}")
                time.sleep(0.5)
        for _ in range(workers):
            start("--address", address, *node_ports())
        while _alive_nodes(address) < 1 + workers:
            if time.monotonic() > deadline or any(p.poll() is not None for p in starters):
                raise RuntimeError(f"the Ray cluster did not come up; see {temp / 'ray-start.log'}")
            time.sleep(1.0)
        yield address
    except BaseException:
        log.flush()
        print((temp / "ray-start.log").read_text(errors="replace")[-3000:])
        raise
    finally:
        # each node's processes (GCS, raylet, agents) share its `ray start` process group; workers start
        # groups of their own, so the whole tree below each `ray start` is noted first
        mine = _descendants({p.pid for p in starters}) | pids_naming(str(temp))
        for proc in reversed(starters):
            _signal_group(proc.pid, signal.SIGTERM)
        time.sleep(2.0)
        for proc in reversed(starters):
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
        for pid in mine | pids_naming(str(temp)):  # anything of this cluster that left its group
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        log.close()
        shutil.rmtree(temp, ignore_errors=True)
        if saved_auth is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = saved_auth


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass
