"""The deploy -> capture -> monitor loop of the seed, end to end, through the CLI and real HTTP.

1. train the main job (``python run.py``: MiniLM fine-tuned on SST-2) -- or reuse a run (``--train-run``);
2. baseline: ``task=drift mode=baseline`` on book reviews, embedded with that fine-tuned encoder
   (``task.encoder_checkpoint=<training run>``), as the seed baselines its fine-tuned BERT;
   (and, for comparison, with the base MiniLM, as ``experiments/drift`` does);
3. deploy: ``mode=serve`` with data capture on; send held-out book reviews dated in one hour and kitchen
   reviews dated in the next (``serve.capture.trust_time_header=true``: the ``X-Sagelab-Inference-Time``
   header dates each request, so the hours are simulated without waiting two hours), one review a request,
   8 in flight, over loopback HTTP; then SIGTERM the endpoint;
4. monitor: ``task=drift mode=monitor task.capture=<capture folder> task.window=hour`` -- one window, and one
   violations report, per hour folder.

Each of ``--seeds`` holds out a different set of book reviews. Expected: the kitchen hour is flagged, the books
hour is not. Results go to ``outputs/serve_monitor/results.json``
and the MLflow experiment ``serve_monitor``; the README quotes them.

    .venv/bin/python experiments/serve_monitor/run_experiment.py                # ~25 min on 2 cores
    .venv/bin/python experiments/serve_monitor/run_experiment.py --train-run <run id> --seeds 0 --encoders base
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / "outputs" / "serve_monitor"
DATA = ROOT / "data" / "drift" / "blitzer"
EXPERIMENT = "serve_monitor"
HOURS = {"books": "2026-12-01T10", "kitchen": "2026-12-01T11"}


def read_reviews(domain: str) -> list[str]:
    csv.field_size_limit(1 << 30)
    with open(DATA / f"{domain}.tsv", newline="", encoding="utf-8") as f:
        return list(dict.fromkeys(row["sentence"] for row in csv.DictReader(f, delimiter="\t")))


def cli(*overrides: str, experiment: str = EXPERIMENT) -> str:
    """Run ``python run.py`` as a user would; return the MLflow run id it printed."""
    cmd = [sys.executable, str(ROOT / "run.py"), f"logger.experiment_name={experiment}", *overrides]
    print("$ python run.py", " ".join(cmd[2:]), flush=True)
    started = time.monotonic()
    done = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True)
    print(f"  ({time.monotonic() - started:.0f} s)", flush=True)
    return re.findall(r"MLflow run ([0-9a-f]{32})", done.stdout)[-1]


def post(url: str, text: str, when: str) -> int:
    request = urllib.request.Request(f"{url}/invocations", data=json.dumps(text).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "X-Sagelab-Inference-Time": when})
    with urllib.request.urlopen(request, timeout=300) as response:
        response.read()
        return response.status


def serve_and_send(train_run: str, traffic: dict[str, list[str]], capture: Path, work: Path) -> dict[str, float]:
    cmd = [sys.executable, str(ROOT / "run.py"), f"logger.experiment_name={EXPERIMENT}", "mode=serve",
           "serve.port=0", f"checkpoint.load={train_run}", "serve.capture.enabled=true",
           f"serve.capture.dir={capture}", "serve.capture.trust_time_header=true", "serve.endpoint_name=sst2-minilm",
           f"hydra.run.dir={work / 'serve'}"]
    print("$ python run.py", " ".join(cmd[2:]), flush=True)
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = None
    for line in proc.stdout:
        if match := re.search(r"serving \S+ on (http://[\d.]+:\d+)", line):
            url = match.group(1)
            break
    if url is None:
        raise RuntimeError(f"the endpoint did not start (exit {proc.wait()})")
    while True:
        try:
            urllib.request.urlopen(f"{url}/ping", timeout=5).read()
            break
        except OSError:
            time.sleep(0.5)
    sent, started = {}, time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        for domain, texts in traffic.items():
            stamps = [f"{HOURS[domain]}:{(i * 59) // len(texts):02d}:{i % 60:02d}Z" for i in range(len(texts))]
            statuses = list(pool.map(post, [url] * len(texts), texts, stamps))
            sent[domain] = sum(s == 200 for s in statuses)
            print(f"  sent {len(texts)} {domain} reviews dated {HOURS[domain]}h: {sent[domain]} answered", flush=True)
    elapsed = time.monotonic() - started
    proc.send_signal(signal.SIGTERM)
    tail = proc.stdout.read()
    if proc.wait() != 0:
        raise RuntimeError(f"the endpoint exited {proc.returncode}:\n{tail}")
    served = dict(re.findall(r"(serve/\w+)\s+([\d.]+)", tail))
    return {"answered": sum(sent.values()), "seconds": elapsed, **{k: float(v) for k, v in served.items()}}


def one_split(seed: int, train_run: str, per_hour: int, encoders: list[str]) -> dict:
    """Hold out ``per_hour`` book reviews (split ``seed``), serve them and as many kitchen reviews, then baseline
    and monitor with each encoder; returns the windows of each."""
    work = WORK / f"split{seed}"
    work.mkdir(parents=True, exist_ok=True)
    books = read_reviews("books")
    order = np.random.default_rng(seed).permutation(len(books))
    held_out = [books[i] for i in order[:per_hour]]
    with open(work / "books_baseline.tsv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter="\t")
        writer.writerow(["sentence"])
        writer.writerows([books[i]] for i in order[per_hour:])
    kitchen = read_reviews("kitchen")
    kitchen = [kitchen[i] for i in np.random.default_rng(1000 + seed).permutation(len(kitchen))[:per_hour]]

    capture = work / "capture"
    if capture.exists():
        shutil.rmtree(capture)
    result = {"serve": serve_and_send(train_run, {"books": held_out, "kitchen": kitchen}, capture, work),
              "captured_files": sorted(str(p.relative_to(capture)) for p in capture.rglob("*.jsonl"))}
    for encoder in encoders:
        checkpoint = [f"task.encoder_checkpoint={train_run}"] if encoder == "finetuned" else []
        baseline_run = cli("task=drift", "model=minilm", "mode=baseline",
                           f"task.baseline_source={work / 'books_baseline.tsv'}", "task.calibration_fraction=0.3",
                           *checkpoint, f"hydra.run.dir={work / ('baseline_' + encoder)}")
        monitor = work / f"monitor_{encoder}"
        monitor_run = cli("task=drift", "model=minilm", "mode=monitor", f"task.baseline={baseline_run}",
                          f"task.capture={capture}", "task.window=hour", "task.endpoint_name=sst2-minilm",
                          "task.monitoring_schedule_name=hourly", f"hydra.run.dir={monitor}")
        stats = json.loads((monitor / "monitor" / "statistics.json").read_text())
        result[encoder] = {
            "baseline_run": baseline_run, "monitor_run": monitor_run, "threshold": stats["threshold"]["value"],
            "windows": [{k: w[k] for k in ("label", "start", "stop", "mmd2", "p_value", "classifier_auc",
                                           "violations", "violation_rate", "mean_score", "drift")}
                        for w in stats["windows"]],
            "window_reports": sorted(str(p.relative_to(WORK)) for p in
                                     (monitor / "monitor" / "windows").rglob("constraint_violations.json")),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-run", help="MLflow run id of a finished main-job training run (default: train one)")
    parser.add_argument("--per-hour", type=int, default=600, help="reviews sent in each hour")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="held-out splits")
    parser.add_argument("--encoders", nargs="+", default=["finetuned", "base"], choices=["finetuned", "base"],
                        help="embed with the served fine-tune (the seed's way) and/or the base MiniLM")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)

    train_run = args.train_run or cli(f"hydra.run.dir={WORK / 'train'}", experiment="glue_sst2")
    results = {"train_run": train_run, "per_hour": args.per_hour, "splits": {}}
    for seed in args.seeds:
        results["splits"][seed] = one_split(seed, train_run, args.per_hour, args.encoders)
        (WORK / "results.json").write_text(json.dumps(results, indent=2))
    print(f"\n{'split':<6}{'encoder':<10}{'hour':<16}{'records':>8}{'MMD p':>9}{'AUC':>7}{'flagged':>9}  verdict")
    for seed, split in results["splits"].items():
        for encoder in args.encoders:
            for w in split[encoder]["windows"]:
                print(f"{seed:<6}{encoder:<10}{w['label']:<16}{w['stop'] - w['start']:>8}{w['p_value']:>9.4f}"
                      f"{w['classifier_auc']:>7.3f}{w['violation_rate']:>8.1%}  {'DRIFT' if w['drift'] else 'no drift'}")
    print(f"results in {WORK / 'results.json'}")


if __name__ == "__main__":
    main()
