"""Batch-transform speed and memory: ``python run.py mode=batch_transform`` vs a transformers pipeline.

Both sides label the same JSON Lines file of SST-2 sentences (GLUE SST-2 dev, repeated to ``--lines``) with the
same fine-tuned MiniLM classifier, the same ``max_length`` truncation, batch size and thread count, in fp32:

* ``sagelab``  -- ``run.py task=glue_sst2 model=minilm mode=batch_transform checkpoint.load=<final.ckpt>``:
  windows of ``predict.window`` lines, length-sorted into batches of ``optim.eval_batch_size``, answers
  written in input order with a commit per window;
* ``pipeline`` -- ``pipeline("text-classification", batch_size=32)`` over the same sentences in file order
  (each batch padded to its longest member), answers written as JSON Lines.

The model is a sagelab SST-2 checkpoint (``--checkpoint``, default the newest
``outputs/checkpoints/glue_sst2/*/final.ckpt``) loaded into the MiniLM classifier and saved as a Hugging Face
folder for the pipeline; without one, MiniLM with a classification head drawn from a fixed seed (fine for
speed; the labels then mean nothing). Each run is a fresh process, the sides interleaved (sagelab, pipeline,
sagelab, ...). Lines/s run from loading the model to the last answer written, on both sides (process start
and imports excluded; sagelab reports it as ``predict/lines_per_s``). Peak RSS is the ``ru_maxrss`` of each
run's process (sagelab's also at ``--small-lines``, to show memory does not grow with the input). Every
sagelab run's labels are compared with the pipeline's.

    .venv/bin/python benchmarks/batch_transform.py --checkpoint outputs/checkpoints/glue_sst2/<hash>/final.ckpt
    .venv/bin/python benchmarks/batch_transform.py --lines 400 --small-lines 100 --repeats 1   # smoke run
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
SST2_DEV = ROOT / "data" / "glue" / "SST-2" / "dev.tsv"


# -- set-up (parent process) ------------------------------------------------------------------------------------
def write_input(path: Path, lines: int) -> None:
    with open(SST2_DEV, encoding="utf-8") as handle:
        sentences = [row["sentence"].strip() for row in csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)]
    with open(path, "w", encoding="utf-8") as out:
        for i in range(lines):
            out.write(json.dumps({"sentence": sentences[i % len(sentences)]}) + "\n")


def find_checkpoint(given: str | None) -> Path | None:
    if given:
        return Path(given)
    found = sorted((ROOT / "outputs" / "checkpoints" / "glue_sst2").glob("*/final.ckpt"),
                   key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def prepare_model(checkpoint: Path | None, work: Path) -> tuple[Path, Path, str]:
    """(sagelab checkpoint, Hugging Face folder, what the model is) -- both holding the same weights."""
    import torch
    from hydra import compose, initialize_config_dir

    from sagelab.models import load_tokenizer
    from sagelab.safe_io import load_checkpoint
    from sagelab.tasks.glue.task import GlueTask

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["task=glue_sst2", "model=minilm", f"hydra.run.dir={work}"])
    torch.manual_seed(0)
    module = GlueTask(cfg).module()
    if checkpoint is not None:
        module.load_state_dict(load_checkpoint(checkpoint, "--checkpoint")["state_dict"])
        what = f"fine-tuned SST-2 checkpoint {checkpoint}"
    else:
        checkpoint = work / "seeded_head.ckpt"
        torch.save({"state_dict": module.state_dict()}, checkpoint)
        what = "MiniLM with a seed-0 random classification head (no fine-tuned checkpoint found)"
    folder = work / "hf_model"
    module.model.save_pretrained(folder)
    load_tokenizer(cfg.model).save_pretrained(folder)
    return checkpoint, folder, what


# -- one side, in a fresh process -------------------------------------------------------------------------------
def run_pipeline(args: argparse.Namespace) -> dict:
    import torch
    from transformers import pipeline

    torch.set_num_threads(args.threads)
    with open(args.input, encoding="utf-8") as handle:
        texts = [json.loads(line)["sentence"] for line in handle]
    started = time.monotonic()
    classify = pipeline("text-classification", model=args.model_dir, tokenizer=args.model_dir, device="cpu")
    label2id = classify.model.config.label2id
    with open(args.output, "w", encoding="utf-8") as out:
        for text, answer in zip(texts, classify(texts, batch_size=args.batch_size, truncation=True,
                                                max_length=args.max_length)):
            out.write(json.dumps({"sentence": text, "label": label2id[answer["label"]],
                                  "probability": answer["score"]}) + "\n")
    return {"lines_per_s": len(texts) / (time.monotonic() - started)}


def sagelab_command(args: argparse.Namespace, work: Path) -> list[str]:
    return [sys.executable, str(ROOT / "run.py"), "task=glue_sst2", "model=minilm", "mode=batch_transform",
            f"checkpoint.load={args.checkpoint}", f"predict.input={args.input}", f"predict.output={args.output}",
            f"predict.window={args.window}", f"optim.eval_batch_size={args.batch_size}",
            f"data.max_length={args.max_length}", "instance=local_cpu2", f"instance.threads={args.threads}",
            "trainer.precision=32-true", "trainer.enable_progress_bar=false",
            f"logger.tracking_uri=sqlite:///{work}/mlflow.db",
            f"logger.artifact_location={work}/artifacts", f"checkpoint.dir={work}/ckpt", f"hydra.run.dir={work}/out"]


def run_side(side: str, lines: int, args: argparse.Namespace, work: Path) -> dict:
    """One run in a fresh process: its lines/s, its peak RSS (``wait4``'s rusage of that process) and labels."""
    source = work / f"input_{lines}.jsonl"
    output = work / f"{side}_{lines}_{time.monotonic_ns()}.jsonl"
    if side == "sagelab":
        cmd = sagelab_command(argparse.Namespace(**{**vars(args), "input": source, "output": output}), work / side)
    else:
        cmd = [sys.executable, __file__, "--only", "pipeline", "--input", str(source), "--output", str(output),
               "--model-dir", str(args.model_dir), "--threads", str(args.threads), "--batch-size",
               str(args.batch_size), "--max-length", str(args.max_length)]
    started = time.monotonic()
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=stdout, stderr=stderr, env={**os.environ, "CI": "1"})
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0), stderr.seek(0)
        text, errors = stdout.read(), stderr.read()
    if proc.returncode != 0:
        sys.exit(f"{side} failed ({proc.returncode}):\n{errors[-3000:]}")
    if side == "sagelab":
        metrics = {p[0]: float(p[1]) for p in (line.split() for line in text.splitlines()) if len(p) == 2}
        speed = metrics["predict/lines_per_s"]
    else:
        result = next(line for line in text.splitlines() if line.startswith("RESULT "))
        speed = json.loads(result[len("RESULT "):])["lines_per_s"]
    with open(output, encoding="utf-8") as answers:
        labels = [json.loads(line)["label"] for line in answers]
    output.unlink()
    return {"lines_per_s": speed, "peak_rss_mb": usage.ru_maxrss / 1024, "wall_s": time.monotonic() - started,
            "labels": labels}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--small-lines", type=int, default=2_000, help="sagelab's RSS is also measured at this size")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each side at --lines, interleaved")
    parser.add_argument("--checkpoint", help="a sagelab SST-2 final.ckpt (default: the newest under outputs/)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--window", type=int, default=4096, help="sagelab's predict.window")
    parser.add_argument("--json", type=Path, help="also write every run's figures here")
    parser.add_argument("--only", choices=["pipeline"], help=argparse.SUPPRESS)  # internal: one run, JSON out
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.only:
        print("RESULT " + json.dumps(run_pipeline(args)))
        return

    from sagelab import hardware

    print(f"machine: {hardware.describe()}; both sides fp32, {args.threads} threads, batch {args.batch_size}, "
          f"max_length {args.max_length}", flush=True)
    with tempfile.TemporaryDirectory(prefix="sagelab-bt-bench-") as tmp:
        work = Path(tmp)
        args.checkpoint, args.model_dir, what = prepare_model(find_checkpoint(args.checkpoint), work)
        for lines in {args.lines, args.small_lines}:
            write_input(work / f"input_{lines}.jsonl", lines)
        print(f"model: {what}\ninput: GLUE SST-2 dev sentences repeated to {args.lines:,} lines "
              f"(sagelab predict.window={args.window})", flush=True)
        runs: dict[str, list[dict]] = {"sagelab": [], "pipeline": []}
        for repeat in range(args.repeats):
            for side in ("sagelab", "pipeline"):
                result = run_side(side, args.lines, args, work)
                runs[side].append(result)
                print(f"  {side:8s} {args.lines:>6,} lines  {result['lines_per_s']:7.1f} lines/s   peak RSS "
                      f"{result['peak_rss_mb']:6.0f} MB   ({result['wall_s']:.0f} s with start-up)", flush=True)
        small = run_side("sagelab", args.small_lines, args, work)
        print(f"  sagelab  {args.small_lines:>6,} lines  {small['lines_per_s']:7.1f} lines/s   peak RSS "
              f"{small['peak_rss_mb']:6.0f} MB", flush=True)
    report(runs, small, args)


def report(runs: dict[str, list[dict]], small: dict, args: argparse.Namespace) -> None:
    ours, theirs = (statistics.median(r["lines_per_s"] for r in runs[s]) for s in ("sagelab", "pipeline"))
    paired = [a["lines_per_s"] / b["lines_per_s"] for a, b in zip(runs["sagelab"], runs["pipeline"])]
    reference = runs["pipeline"][0]["labels"]
    same = all(r["labels"] == reference for r in runs["sagelab"] + runs["pipeline"])
    same_small = small["labels"] == reference[: args.small_lines]
    big_rss = max(r["peak_rss_mb"] for r in runs["sagelab"])
    print(f"\nsagelab {ours:.1f} lines/s, pipeline {theirs:.1f} lines/s (medians of {args.repeats}): "
          f"{ours / theirs:.2f}x (paired runs {min(paired):.2f}-{max(paired):.2f}x; goal >= 1.5x)")
    print(f"labels identical on every run: {'yes' if same and same_small else 'NO'}")
    print(f"sagelab peak RSS: {small['peak_rss_mb']:.0f} MB at {args.small_lines:,} lines, {big_rss:.0f} MB at "
          f"{args.lines:,} lines ({big_rss / small['peak_rss_mb']:.2f}x; goal: flat); pipeline "
          f"{max(r['peak_rss_mb'] for r in runs['pipeline']):.0f} MB at {args.lines:,}")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                         "runs": {s: [{k: v for k, v in r.items() if k != "labels"} for r in rs]
                                                  for s, rs in runs.items()},
                                         "small": {k: v for k, v in small.items() if k != "labels"}}, indent=2))
    if not (same and same_small):
        sys.exit(1)


if __name__ == "__main__":
    main()
