"""Endpoint throughput and latency over loopback: sagelab's dynamic batching vs the alternatives.

Engines, each serving the same fine-tuned model (the main job's checkpoint by default) on 127.0.0.1:

* ``sagelab``           -- ``python run.py mode=serve`` (Starlette + uvicorn, dynamic batching 32 / 10 ms);
* ``sagelab_unbatched`` -- the same with ``serve.max_batch_size=1`` (one forward pass per request);
* ``sagelab_one_pass``  -- dynamic batching, but each gathered batch in one forward pass, padded to its longest
  request (``serve.sub_batch_size=null``), to measure what length-sorted sub-batches buy;
* ``litserve``          -- LitServe (Lightning's server) around the same task handler, batching 32 / 10 ms:
  the library the issue names first, measured here before choosing (``benchmarks/litserve_engine.py``);
* ``mlflow``            -- ``mlflow models serve --env-manager local`` on the run's logged MLflow model
  (MLflow's scoring server; it answers each request alone).

The load generator is an asyncio client (aiohttp) with a fixed number of requests in flight (concurrency 1, 8
and 32), one SST-2 sentence a request, bounded by ``--requests`` per level and ``--level-s`` seconds. Engines
run one at a time, each in its own process, in alternating order over ``--rounds`` (A B C D, D C B A ...).
Printed per engine and concurrency: requests/s and p50/p99 latency (medians over rounds), and the ratios the
issue asks for at concurrency 32.

    .venv/bin/python benchmarks/serve_throughput.py                       # ~10 min
    .venv/bin/python benchmarks/serve_throughput.py --rounds 1 --requests 64 --engines sagelab sagelab_unbatched
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
ENGINES = ("sagelab", "sagelab_unbatched", "sagelab_one_pass", "litserve", "mlflow")
CONCURRENCY = (1, 8, 32)


def sentences(n: int) -> list[str]:
    import csv

    with open(ROOT / "data" / "glue" / "SST-2" / "dev.tsv", newline="", encoding="utf-8") as f:
        rows = [r["sentence"] for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]
    return [rows[i % len(rows)] for i in range(n)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the engines --------------------------------------------------------------------------------------------------
def start(engine: str, args: argparse.Namespace, store: Path) -> tuple[subprocess.Popen, str, Any]:
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    common = [f"checkpoint.load={args.checkpoint}", f"logger.tracking_uri=sqlite:///{store}/mlflow.db",
              f"logger.artifact_location={store}/artifacts", f"hydra.run.dir={store}/out",
              "trainer.enable_progress_bar=false", f"trainer.precision={args.precision}"]
    if engine.startswith("sagelab"):
        batching = ["serve.max_batch_size=1", "serve.max_batch_delay_ms=0"] if engine.endswith("unbatched") else \
            [f"serve.max_batch_size={args.batch}", f"serve.max_batch_delay_ms={args.delay_ms}"]
        if engine.endswith("one_pass"):
            batching.append("serve.sub_batch_size=null")
        cmd = [sys.executable, str(ROOT / "run.py"), "mode=serve", f"serve.port={port}", *batching, *common]
        make_body = lambda s: json.dumps(s)  # noqa: E731
    elif engine == "litserve":
        cmd = [sys.executable, str(ROOT / "benchmarks" / "litserve_engine.py"), str(port), str(args.checkpoint),
               str(args.batch), str(args.delay_ms), args.precision]
        make_body = lambda s: json.dumps(s)  # noqa: E731
    else:
        cmd = [sys.executable, "-m", "mlflow", "models", "serve", "-m", str(args.mlflow_model), "--env-manager",
               "local", "--host", "127.0.0.1", "--port", str(port)]
        env["MLFLOW_TRACKING_URI"] = args.mlflow_tracking_uri or ""
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # it execs this venv's uvicorn
        make_body = lambda s: json.dumps({"dataframe_records": [{"sentence": s}]})  # noqa: E731
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    return proc, f"http://127.0.0.1:{port}", make_body


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


async def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    import aiohttp

    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited ({proc.returncode}): {proc.stderr.read()[-2000:]}")
            try:
                async with session.get(f"{url}/ping", timeout=aiohttp.ClientTimeout(total=5)) as response:
                    if response.status == 200:
                        return
            except (aiohttp.ClientError, asyncio.TimeoutError):
                pass
            await asyncio.sleep(0.3)
    raise TimeoutError(f"{url} did not answer /ping in {timeout:.0f} s")


# -- the load -----------------------------------------------------------------------------------------------------
async def drive(url: str, bodies: list[str], concurrency: int, limit_s: float) -> dict[str, float]:
    """``concurrency`` clients, each sending its next body when its last answer arrives, until the bodies or the
    time run out. Returns requests/s and latency percentiles (ms); a non-200 answer is counted as an error."""
    import aiohttp

    latencies: list[float] = []
    errors = 0
    pending = iter(bodies)
    stop_at = time.perf_counter() + limit_s

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        for body in pending:
            if time.perf_counter() > stop_at:
                return
            began = time.perf_counter()
            async with session.post(f"{url}/invocations", data=body,
                                    headers={"Content-Type": "application/json"}) as response:
                await response.read()
                errors += response.status != 200
            latencies.append(time.perf_counter() - began)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:
        began = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
        wall = time.perf_counter() - began
    ordered = sorted(latencies)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000  # noqa: E731
    return {"requests": len(latencies), "errors": errors, "rps": len(latencies) / wall, "p50_ms": pick(0.50),
            "p99_ms": pick(0.99)}


async def measure(engine: str, args: argparse.Namespace, store: Path) -> dict[int, dict[str, float]]:
    proc, url, make_body = start(engine, args, store)
    try:
        await wait_ready(url, proc)
        texts = sentences(max(args.requests * 4, 64))
        await drive(url, [make_body(t) for t in texts[:16]], 4, 30)  # warm-up: first-batch allocations
        results = {}
        for concurrency in args.concurrency:
            count = args.requests if concurrency > 1 else max(16, args.requests // 4)
            results[concurrency] = await drive(url, [make_body(t) for t in texts[:count]], concurrency, args.level_s)
            r = results[concurrency]
            print(f"  {engine:<18} c={concurrency:<3} {r['rps']:7.1f} req/s  p50 {r['p50_ms']:7.1f} ms  "
                  f"p99 {r['p99_ms']:7.1f} ms  ({r['requests']:.0f} requests, {r['errors']:.0f} errors)", flush=True)
        return results
    finally:
        stop(proc)


def default_checkpoint() -> Path | None:
    found = sorted((ROOT / "outputs" / "checkpoints" / "glue_sst2").glob("*/final.ckpt"), key=os.path.getmtime)
    return found[-1] if found else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=default_checkpoint())
    parser.add_argument("--mlflow-model", help="the MLflow model of the same checkpoint (runs:/<id>/model or a "
                        "folder); needed for the mlflow engine")
    parser.add_argument("--mlflow-tracking-uri", help="where a runs:/ URI resolves")
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES)
    parser.add_argument("--concurrency", nargs="+", type=int, default=list(CONCURRENCY))
    parser.add_argument("--requests", type=int, default=512, help="requests per level (a quarter at concurrency 1)")
    parser.add_argument("--level-s", type=float, default=60.0, help="time bound of one level")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--precision", default="auto", help="trainer.precision of the sagelab and LitServe engines "
                        "(auto: bf16 autocast where this CPU has it natively); MLflow's pyfunc answers in fp32")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--delay-ms", type=float, default=10.0)
    args = parser.parse_args()

    from sagelab import hardware

    print(hardware.describe())
    if args.checkpoint is None:
        sys.exit("no checkpoint: run `make run` first, or pass --checkpoint")
    engines = [e for e in args.engines if e != "mlflow" or args.mlflow_model]
    if len(engines) < len(args.engines):
        print("mlflow engine skipped: pass --mlflow-model runs:/<id>/model of the same checkpoint")
    print(f"checkpoint {args.checkpoint}; precision {args.precision}; engines {', '.join(engines)}; concurrency {args.concurrency}; "
          f"{args.requests} requests a level, at most {args.level_s:.0f} s")
    runs: dict[str, list[dict[int, dict[str, float]]]] = {e: [] for e in engines}
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp:
        for round_ in range(args.rounds):
            order = engines if round_ % 2 == 0 else engines[::-1]
            print(f"round {round_ + 1}: {' -> '.join(order)}")
            for engine in order:
                runs[engine].append(asyncio.run(measure(engine, args, Path(tmp))))
    table = {e: {c: {k: statistics.median(r[c][k] for r in rs) for k in ("rps", "p50_ms", "p99_ms")}
                 for c in args.concurrency} for e, rs in runs.items()}
    print("\nmedians over rounds")
    print(f"{'engine':<18} " + "  ".join(f"{'c=' + str(c):>24}" for c in args.concurrency))
    for engine, row in table.items():
        print(f"{engine:<18} " + "  ".join(f"{r['rps']:6.1f}/s {r['p50_ms']:6.0f}/{r['p99_ms']:6.0f} ms"
                                           for r in row.values()))
    top = max(args.concurrency)
    batched = table.get("sagelab", {}).get(top)
    if batched:
        for other in ("sagelab_unbatched", "sagelab_one_pass", "litserve", "mlflow"):
            if other in table:
                print(f"at c={top}: sagelab / {other} = {batched['rps'] / table[other][top]['rps']:.2f}x requests/s")
        print(f"at c={top}: sagelab p99 / p50 = {batched['p99_ms'] / batched['p50_ms']:.2f}")
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / f"serve_throughput_{args.precision}.json").write_text(json.dumps({"machine": hardware.describe(), "table": table,
                                                           "args": {k: str(v) for k, v in vars(args).items()}},
                                                          indent=2))


if __name__ == "__main__":
    main()
