"""``mode=serve``: run the endpoint until SIGTERM / Ctrl-C, then drain, flush the capture and exit 0.

``serve.workers`` processes share one listening socket (bound here, so ``serve.port=0`` can pick a free port
and print it), each with its own copy of the model, its own batcher and its own capture files; threads per
worker are the available cores split between them. With one worker (the default) the endpoint runs in this
process. Uvicorn serves HTTP; on SIGTERM it stops accepting connections and answers every request already
received before the app shuts down, so a stop signal is an endpoint's normal end, not a failure.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import signal
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

if TYPE_CHECKING:
    from sagelab.context import TaskContext
    from sagelab.inference import Handler


def run_server(context: TaskContext, handler: Handler) -> dict[str, Any]:
    cfg, serve = context.cfg, context.cfg.serve
    sock = bind(str(serve.host), int(serve.port))
    host, port = sock.getsockname()[:2]
    workers = int(serve.workers)
    print(f"sagelab: serving {cfg.task.name} on http://{host}:{port} (POST /invocations, GET /ping); "
          f"{workers} worker(s), batches of up to {serve.max_batch_size} within {serve.max_batch_delay_ms} ms; "
          f"capture {'to ' + str(capture_folder(cfg)) if serve.capture.enabled else 'off'}", flush=True)
    context.tracker.log_params({"serve.url": f"http://{host}:{port}"})
    if workers == 1:
        counts = serve_socket(cfg, handler, context.load_module, sock, worker=0, precision=context.precision)
    else:
        counts = _run_workers(cfg, sock, workers, Path(context.output_dir))
    sock.close()
    print(f"sagelab: endpoint stopped after {counts.get('serve/requests', 0):.0f} answered request(s)", flush=True)
    return counts


def bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        from sagelab.config import ConfigError

        raise ConfigError("serve.port", f"cannot listen on {host}:{port} ({err.strerror}).") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def capture_folder(cfg: DictConfig) -> Path:
    return Path(str(cfg.serve.capture.dir)) / str(cfg.serve.endpoint_name) / str(cfg.serve.variant_name)


def serve_socket(cfg: DictConfig, handler: Handler, load_module: Any, sock: socket.socket, worker: int,
                 precision: str) -> dict[str, float]:
    """One worker: load the model, serve ``sock`` until told to stop, return what it did."""
    import uvicorn

    from sagelab.hardware import inference

    from sagelab.serving.app import Endpoint, build_app
    from sagelab.serving.batcher import DynamicBatcher
    from sagelab.serving.capture import CaptureWriter

    serve = cfg.serve
    module = load_module().eval()
    sub_batch = int(serve.sub_batch_size or serve.max_batch_size)

    def answer_batch(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        with inference(precision):
            return handler.answer_sorted(module, records, sub_batch)

    capture = None
    if serve.capture.enabled:
        capture = CaptureWriter(serve.capture.dir, str(serve.endpoint_name), str(serve.variant_name),
                                float(serve.capture.sampling_percentage), int(serve.capture.max_file_records),
                                seed=int(cfg.seed) + worker)
    batcher = DynamicBatcher(answer_batch, int(serve.max_batch_size), float(serve.max_batch_delay_ms) / 1000.0)
    endpoint = Endpoint(handler, batcher, int(float(serve.max_payload_mb) * 1024 * 1024), capture,
                        bool(serve.capture.trust_time_header))
    config = uvicorn.Config(build_app(endpoint), log_level="warning", access_log=False,
                            timeout_graceful_shutdown=int(serve.drain_timeout_s), lifespan="on")
    _draining_server(config, batcher).run(sockets=[sock])
    counts = {f"serve/{k}": float(v) for k, v in endpoint.counts.items()}
    counts.update(batcher.stats.as_metrics())
    if capture is not None:
        counts["serve/captured"] = float(capture.captured)
    return counts


def _draining_server(config: Any, batcher: Any) -> Any:
    """uvicorn's server, except that a stop signal is the endpoint's normal end (uvicorn re-raises the signal it
    drained for, which would turn a clean shutdown into exit 143), and the batcher stops waiting for company."""
    import asyncio

    import uvicorn

    class DrainingServer(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            super().handle_exit(sig, frame)
            try:
                asyncio.get_running_loop().call_soon_threadsafe(batcher.flush)
            except RuntimeError:  # no loop yet: nothing is waiting
                pass
            if sig in (signal.SIGTERM, signal.SIGINT) and sig in self._captured_signals:
                self._captured_signals.remove(sig)

    return DrainingServer(config)


# -- several workers -------------------------------------------------------------------------------------------
def _run_workers(cfg: DictConfig, sock: socket.socket, workers: int, out: Path) -> dict[str, float]:
    spawn = mp.get_context("spawn")  # a fresh interpreter each: forking after torch started its threads can hang
    reports = [out / f"serve-worker-{i}.json" for i in range(workers)]
    procs = [spawn.Process(target=_worker_main, args=(cfg, sock, i, str(reports[i])), name=f"sagelab-serve-{i}")
             for i in range(workers)]
    for proc in procs:
        proc.start()

    def stop(signum: int, frame: Any) -> None:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()  # SIGTERM: each worker drains its own requests

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for proc in procs:
            proc.join()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    totals: dict[str, float] = {}
    for report in reports:
        if report.exists():
            for key, value in json.loads(report.read_text()).items():
                totals[key] = max(totals.get(key, 0.0), value) if key == "serve/largest_batch" else \
                    totals.get(key, 0.0) + value
    if totals.get("serve/batches"):
        totals["serve/mean_batch_size"] = totals["serve/records"] / totals["serve/batches"]
    failed = [p.name for p in procs if p.exitcode not in (0, None)]
    if failed:
        print(f"sagelab: serve worker(s) {', '.join(failed)} exited abnormally", file=sys.stderr)
    return totals


def _worker_main(cfg: DictConfig, sock: socket.socket, worker: int, report: str) -> None:
    from hydra.utils import get_class

    import torch

    from sagelab import hardware
    from sagelab.runner import Runner

    torch.set_num_threads(int(hardware.resolve_threads(cfg.instance.threads, int(cfg.serve.workers)).value))
    task = get_class(str(cfg.task._target_))(cfg)
    precision = hardware.resolve_precision(str(cfg.trainer.precision), str(cfg.instance.accelerator)).value
    counts = serve_socket(cfg, task.handler(), Runner(cfg, task).load_module, sock, worker, precision)
    Path(report).write_text(json.dumps(counts))
