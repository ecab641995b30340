"""Answering windows of records: length-sorted batches inside a window, answers back in input order, and the
window spread over the instance's processes.

With one process the model answers in this process. With more, each worker process (started with ``spawn``:
torch's OpenMP runtime is not safe to fork) builds the task's handler and module once, loads the weights the
main process wrote, and answers whole windows; the main process reads, submits at most two windows per worker
ahead and writes results in submission order, so the output stays in input order while memory stays bounded.
Workers ignore SIGINT/SIGTERM and die with the main process (``PR_SET_PDEATHSIG``): the main process decides
when they stop, so a SIGTERM ends the command through one path.
"""

from __future__ import annotations

import tempfile
from collections import deque
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from sagelab.inference import Handler, output_line

if TYPE_CHECKING:
    from sagelab.tasks.base import Task


def answer_window(handler: Handler, module: Any, records: list[dict[str, Any]], batch_size: int,
                  precision: str = "32-true") -> str:
    """The output lines of ``records``, in their order (answered length-sorted: ``Handler.answer_sorted``)."""
    from sagelab.hardware import inference

    with inference(precision):
        answers = handler.answer_sorted(module, records, batch_size)
    return "".join(output_line(record, answer) + "\n" for record, answer in zip(records, answers))


class Answerer:
    """Answers windows in submission order: ``submit`` returns a future of the window's output lines; the model
    (and any worker process) starts at the first window that has records."""

    def __init__(self, handler: Handler, load_module: Callable[[], Any], batch_size: int, processes: int,
                 task: Task | None, threads: int, precision: str = "32-true") -> None:
        self.handler, self.load_module, self.batch_size = handler, load_module, batch_size
        self.precision = precision
        self.processes, self.task, self.threads = processes, task, threads
        self.module: Any = None
        self.pool: Any = None
        self._weights: tempfile.TemporaryDirectory | None = None

    @property
    def ahead(self) -> int:
        """Windows that may be in flight before the oldest is written."""
        return 2 * self.processes if self.processes > 1 else 0

    def submit(self, records: list[dict[str, Any]]) -> Future:
        if self.processes > 1:
            return self._start_pool().submit(_answer_in_worker, records)
        if self.module is None:
            self.module = self.load_module().eval()
        done: Future = Future()
        done.set_result(answer_window(self.handler, self.module, records, self.batch_size, self.precision))
        return done

    def _start_pool(self) -> Any:
        if self.pool is None:
            import multiprocessing
            import os
            from concurrent.futures import ProcessPoolExecutor

            import torch

            if self.task is None:
                raise RuntimeError("answering in several processes needs the task, to build its handler there")
            self._weights = tempfile.TemporaryDirectory(prefix="sagelab-transform-")
            weights = Path(self._weights.name) / "weights.pt"
            torch.save(self.load_module().state_dict(), weights)
            self.pool = ProcessPoolExecutor(
                self.processes, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker,
                initargs=(portable(self.task), str(weights), self.batch_size, self.threads, os.getpid(),
                          self.precision))
        return self.pool

    def close(self, failed: bool) -> None:
        """Stop the workers: wait for them after a clean end, kill them after a failure or SIGTERM."""
        if self.pool is not None:
            # ProcessPoolExecutor has no public way to stop busy workers (3.14 adds terminate_workers), and
            # shutdown() forgets its processes: take them first. A worker still in its initializer must be dead
            # before the weights it is about to load are removed, or it prints a traceback of its own.
            workers = list((getattr(self.pool, "_processes", None) or {}).values())
            self.pool.shutdown(wait=not failed, cancel_futures=True)
            if failed:
                for process in workers:
                    process.kill()
                for process in workers:
                    process.join()
        if self._weights is not None:
            self._weights.cleanup()


def portable(task: Task) -> Task:
    """A copy of ``task`` whose config holds plain values: a worker has no Hydra run to resolve
    ``${hydra:...}`` against."""
    import copy

    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    clone = copy.copy(task)
    try:
        clone.cfg = OmegaConf.create(OmegaConf.to_container(task.cfg, resolve=True))
    except OmegaConfBaseException:  # an interpolation only Hydra's job resolves: keep the keys as they are
        pass
    return clone


def drain(pending: deque, limit: int) -> list[tuple[Any, str]]:
    """Results of the oldest pending windows until at most ``limit`` are in flight: ``(window, lines)``."""
    done = []
    while len(pending) > limit:
        window, future = pending.popleft()
        done.append((window, future.result() if future is not None else ""))
    return done


# -- in a worker process ------------------------------------------------------------------------------------
_worker: dict[str, Any] = {}


def _start_worker(task: Task, weights: str, batch_size: int, threads: int, parent: int, precision: str) -> None:
    import signal

    import torch

    from sagelab.hpo.lifeline import die_with_parent

    die_with_parent(parent)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    torch.set_num_threads(threads)
    module = task.module()
    module.load_state_dict(torch.load(weights, map_location="cpu", mmap=True, weights_only=True))
    _worker.update(handler=task.handler(), module=module.eval(), batch_size=batch_size, precision=precision)


def _answer_in_worker(records: list[dict[str, Any]]) -> str:
    return answer_window(_worker["handler"], _worker["module"], records, _worker["batch_size"], _worker["precision"])
