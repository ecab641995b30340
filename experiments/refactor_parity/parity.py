"""Run every README command (reduced where the full command takes many minutes) and record its metrics.

    python experiments/refactor_parity/parity.py --root <checkout> --out results-<label>.json [--only name ...]

The same script runs against two checkouts (before and after a refactor); ``compare.py`` prints the table.
Each command runs as a user types it: ``python run.py ...`` in ``--root`` with that checkout's ``src`` first
on PYTHONPATH and its own ``mlruns/``. A command's metrics are the summary block the runner prints at the end
(``  key  value`` lines), so nothing here depends on sagelab's internals.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

QUIET = ["trainer.enable_progress_bar=false"]
SMALL = ["data.train_limit=256", "data.eval_limit=128"]

# (name, argv after run.py, why it is reduced); {RUN:name} is replaced by the MLflow run id of an earlier command
COMMANDS: list[tuple[str, list[str], str]] = [
    ("main_job", [], "full: the main job as `make run` runs it"),
    ("cola_ddp", ["task=glue_cola", "strategy=ddp", *SMALL], "256 train / 128 dev examples"),
    ("mrpc_fsdp", ["task=glue_mrpc", "strategy=fsdp", *SMALL], "256 / 128"),
    ("cola_multirun", ["-m", "task=glue_cola", "optim.lr=1e-5,3e-5", *SMALL], "256 / 128"),
    ("cola_compare", ["mode=compare", "task=glue_cola"], "full"),
    ("stsb_train", ["task=glue_stsb", *SMALL], "256 / 128 (the run mode=evaluate loads)"),
    ("stsb_evaluate", ["task=glue_stsb", "mode=evaluate", "checkpoint.load={RUN:stsb_train}", *SMALL], "128 dev"),
    # a capture file has no 'sentence' field: before, 0 answers and exit 0; now refused (exit 2), as it should be
    ("sst2_predict", ["task=glue_sst2", "mode=predict", "predict.input={ROOT}/data/drift/capture/seed_sentences.jsonl",
                      "checkpoint.load={RUN:main_job}"], "a capture file (no usable record)"),
    ("sst2_predict_reviews", ["task=glue_sst2", "mode=predict", "predict.input={HERE}/reviews.jsonl",
                              "checkpoint.load={RUN:main_job}"], "the first 20 SST-2 dev sentences"),
    ("qa_ddp", ["task=qa", "strategy=ddp", "data.train_limit=64", "data.eval_limit=32"], "64 / 32 questions"),
    ("qa_minilm", ["+experiment=qa_minilm", "trainer.max_steps=8", "data.train_limit=64", "data.eval_limit=32"],
     "8 steps, 64 / 32 questions"),
    ("mrpc_moasha", ["task=glue_mrpc", "hpo=moasha", "search_space=glue_instances", "hpo.max_trials=3",
                     "hpo.max_resource=1", "model=bert_tiny", *SMALL], "3 trials x 1 epoch, bert_tiny"),
    ("cola_asha_holdout", ["task=glue_cola", "hpo=asha", "search_space=glue_default", "data.holdout=0.1",
                           "hpo.max_trials=3", "hpo.max_resource=1", "model=bert_tiny", *SMALL],
     "3 trials x 1 epoch, bert_tiny"),
    ("hpo_experiment", ["+experiment=hpo/hpo_moasha_glue_mrpc_glue_instances_69e4d2ac"], "full (128 examples)"),
    ("drift", ["task=drift", "task.baseline_limit=500",
               "task.capture={ROOT}/data/drift/capture/seed_sentences.jsonl"], "500 baseline texts, seed capture"),
    ("link_prediction", ["task=link_prediction"], "full"),
    ("link_recommend", ["task=link_prediction", "mode=recommend", "task.node=Henry"], "full"),
]

SUMMARY = re.compile(r"^  (\S+)\s+(-?[0-9.]+(?:e[-+]?\d+)?|nan|inf|-inf)$")
RUN_LINE = re.compile(r"MLflow run ([0-9a-f]{32})")
VOLATILE = ("time", "_s", "cost_usd", "per_s", "rss", "latency", "samples_per")  # wall-clock figures


def run(root: Path, name: str, argv: list[str], runs: dict[str, str]) -> dict:
    args = [a.replace("{ROOT}", str(root)).replace("{HERE}", str(Path(__file__).resolve().parent)) for a in argv]
    args = [re.sub(r"\{RUN:(\w+)\}", lambda m: runs.get(m.group(1), "MISSING"), a) for a in args]
    env = {**os.environ, "PYTHONPATH": str(root / "src"), "PYTHONHASHSEED": "0"}
    command = [sys.executable, "run.py", *args, *QUIET]
    started = time.monotonic()
    proc = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - started
    metrics = {}
    for line in proc.stdout.splitlines():
        found = SUMMARY.match(line)
        if found and not any(v in found.group(1) for v in VOLATILE):
            metrics[found.group(1)] = float(found.group(2))
    run_ids = RUN_LINE.findall(proc.stdout)
    if run_ids:
        runs[name] = run_ids[-1]
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
    print(f"{name}: exit {proc.returncode}, {seconds:.0f} s, {len(metrics)} metrics", flush=True)
    if proc.returncode:
        print("\n".join(tail), flush=True)
    return {"argv": args, "exit": proc.returncode, "seconds": round(seconds, 1), "metrics": metrics,
            "stdout_tail": tail, "run_id": run_ids[-1] if run_ids else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--only", nargs="*")
    args = parser.parse_args()
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    runs = {k: v["run_id"] for k, v in results.items() if v.get("run_id")}
    for name, argv, why in COMMANDS:
        if args.only and name not in args.only:
            continue
        results[name] = {**run(args.root.resolve(), name, argv, runs), "scale": why}
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
