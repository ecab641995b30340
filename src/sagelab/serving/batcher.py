"""Dynamic batching: records from concurrent requests answered together, TorchServe's two knobs.

A request's records join one queue. The batch loop takes the first waiting record, then waits at most
``max_delay_s`` for more (``serve.max_batch_delay_ms``) or until ``max_batch_size`` records are in
(``serve.max_batch_size``), answers them in one forward pass on a worker thread (torch releases the GIL, so the
event loop keeps accepting requests meanwhile) and hands each request its own answers, in its own order.
A request larger than a batch is answered across several.

Hand-written (about 60 lines) rather than LitServe's batching loop: it runs inside the uvicorn process, so a
request and its answer never cross a process queue (``benchmarks/serve_throughput.py`` measures both: engines
``sagelab`` and ``litserve``).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

AnswerBatch = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]


@dataclass
class BatchStats:
    batches: int = 0
    records: int = 0
    largest: int = 0

    def as_metrics(self) -> dict[str, float]:
        mean = self.records / self.batches if self.batches else 0.0
        return {"serve/batches": self.batches, "serve/records": self.records, "serve/mean_batch_size": mean,
                "serve/largest_batch": self.largest}


@dataclass
class _Pending:
    record: dict[str, Any]
    answer: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())


_FLUSH: Any = object()  # queued by flush(): stop gathering, answer now


class DynamicBatcher:
    def __init__(self, answer_batch: AnswerBatch, max_batch_size: int, max_delay_s: float) -> None:
        self.answer_batch, self.max_batch_size, self.max_delay_s = answer_batch, max_batch_size, max_delay_s
        self.stats = BatchStats()
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sagelab-model")
        self._loop_task: asyncio.Task | None = None

    def start(self) -> None:
        self._loop_task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """After the server has answered its last request (uvicorn drains in-flight requests first)."""
        if self._loop_task is not None:
            self._loop_task.cancel()
        self._model_thread.shutdown(wait=True)

    def flush(self) -> None:
        """Answer what is waiting now and stop waiting from here on (the server is draining)."""
        self.max_delay_s = 0.0
        self._queue.put_nowait(_FLUSH)

    async def answer(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        pending = [_Pending(record) for record in records]
        for item in pending:
            self._queue.put_nowait(item)
        return list(await asyncio.gather(*(item.answer for item in pending)))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [item for item in [await self._queue.get()] if item is not _FLUSH]
            deadline = loop.time() + self.max_delay_s
            while batch and len(batch) < self.max_batch_size:
                try:
                    item = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    left = deadline - loop.time()
                    if left <= 0:
                        break
                    try:
                        item = await asyncio.wait_for(self._queue.get(), left)
                    except asyncio.TimeoutError:
                        break
                if item is _FLUSH:
                    break
                batch.append(item)
            if batch:
                await self._answer(loop, batch)

    async def _answer(self, loop: asyncio.AbstractEventLoop, batch: list[_Pending]) -> None:
        try:
            answers = await loop.run_in_executor(self._model_thread, self.answer_batch, [p.record for p in batch])
        except Exception as err:  # the requests in this batch fail (500); the server keeps serving
            for item in batch:
                if not item.answer.done():
                    item.answer.set_exception(err)
            return
        self.stats.batches += 1
        self.stats.records += len(batch)
        self.stats.largest = max(self.stats.largest, len(batch))
        for item, answer in zip(batch, answers):
            if not item.answer.done():  # a client that went away cancelled its future
                item.answer.set_result(answer)
