"""SQuAD fine-tuning speed: sagelab's runner vs Hugging Face ``Trainer`` with run_qa.py preprocessing.

Same model, training questions and held-out articles, ``max_seq_length`` / ``doc_stride``, batch size,
learning rate, warm-up, weight decay, clipping, precision and thread count; one epoch each, then every
side is scored with the same post-processing and SQuAD v1.1 metric. Peers:

* ``hf_run_qa``  -- run_qa.py's defaults: every window padded to ``max_seq_length``
  (``pad_to_max_length=True``), random batches;
* ``hf_dynamic`` -- ``--pad_to_max_length False`` (DataCollatorWithPadding): each batch padded to its longest
  window, random batches;
* ``hf_grouped`` -- the same plus ``--group_by_length``, the Trainer's fastest set-up. HF serves each window
  of 50 batches longest-first in a fixed order; here that costs most of the F1 (see the README);
* ``sagelab``    -- ``python run.py task=qa``: each batch padded to its longest window, length-grouped
  batches in shuffled order.

Each run is its own process. The machine's speed drifts, so the fast peers alternate ``--repeats``
times (sagelab, hf_dynamic, hf_grouped, ...), a seed per round; hf_run_qa runs once. Printed: training windows
("features") per second per run, EM/F1, the medians, sagelab's ratio to each peer, and model FLOPs
utilisation against this machine's measured matmul peak. Training time runs from the start of the first
step to the end of the last (set-up and evaluation excluded on every side). FLOPs count real (unpadded)
tokens: 3 x forward, forward = 2 x non-embedding parameters x tokens + 4 x layers x hidden x length^2.

    .venv/bin/python benchmarks/qa_throughput.py        # MiniLM, 3,000 questions, 2 repeats (~50 min)
    .venv/bin/python benchmarks/qa_throughput.py --train-questions 64 --eval-questions 32 --model bert_tiny \\
        --repeats 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning as L

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
VARIANTS = ("sagelab", "hf_dynamic", "hf_grouped", "hf_run_qa")


class LoopTimer(L.Callback):
    """Instantiated by the runner from ``callbacks.timer``: times sagelab's training loop, counts its tokens."""

    result: dict = {}

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        LoopTimer.result.setdefault("start", time.perf_counter())

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        r = LoopTimer.result
        r["end"] = time.perf_counter()
        r["features"] = r.get("features", 0) + len(batch["input_ids"])
        r["padded_tokens"] = r.get("padded_tokens", 0) + batch["input_ids"].numel()
        r.setdefault("lengths", []).extend(batch["attention_mask"].sum(-1).tolist())


def matmul_peak(threads: int, dtype_name: str, size: int = 2048, repeats: int = 5) -> float:
    """Best GFLOP/s of a square matmul with ``threads`` threads: this machine's practical peak."""
    import torch

    torch.set_num_threads(threads)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def train_flops(lengths: list[int], model) -> float:
    config = model.config
    embedding = sum(p.numel() for n, p in model.named_parameters() if "embeddings" in n)
    non_embedding = sum(p.numel() for p in model.parameters()) - embedding
    layers, hidden = config.num_hidden_layers, config.hidden_size
    forward = sum(2 * non_embedding * s + 4 * layers * hidden * s * s for s in lengths)
    return 3.0 * forward


def compose(args: argparse.Namespace, workdir: Path):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    import sagelab.schema  # noqa: F401  (resolvers and the typed schema)

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = hydra_compose("config", return_hydra_config=True, overrides=[
            "task=qa", f"model={args.model}", "strategy=single", f"instance.threads={args.threads}", f"seed={args.seed}",
            f"logger.tracking_uri=sqlite:///{workdir}/mlflow.db", f"logger.artifact_location={workdir}/artifacts",
            "logger.experiment_name=qa_throughput", f"+output_dir={workdir}/out", f"checkpoint.dir={workdir}/ckpt",
            "checkpoint.every_n_steps=0", "checkpoint.save_model=false", f"task.max_seq_length={args.max_seq_length}",
            f"task.doc_stride={args.doc_stride}", f"data.train_limit={args.train_questions}",
            f"data.eval_limit={args.eval_questions}", f"optim.batch_size={args.batch_size}",
            f"optim.eval_batch_size={args.eval_batch_size}", f"optim.lr={args.lr}", "optim.warmup_ratio=0.1",
            "optim.weight_decay=0.01", "trainer.gradient_clip_val=1.0", "trainer.max_epochs=1",
            f"trainer.precision={args.precision}", "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=50",
            "+callbacks.timer._target_=__main__.LoopTimer", *args.override,
        ])
        HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def run_sagelab(cfg) -> dict:
    from sagelab.cli import dispatch
    from sagelab.tasks.qa.task import QATask

    LoopTimer.result = {}
    metrics = dispatch(cfg)
    t = LoopTimer.result
    flops = train_flops(t["lengths"], QATask(cfg).module().model)
    return {"seconds": t["end"] - t["start"], "features": t["features"], "padded_tokens": t["padded_tokens"],
            "exact_match": metrics["val/exact_match"], "f1": metrics["val/f1"], "flops": flops}


def run_hf(cfg, workdir: Path, threads: int, variant: str) -> dict:
    """run_qa.py's recipe: Trainer, utils_qa post-processing; windows padded to max_seq_length or per batch."""
    import numpy as np
    import torch
    from transformers import (AutoModelForQuestionAnswering, DataCollatorWithPadding, Trainer, TrainerCallback,
                              TrainingArguments, default_data_collator, set_seed)

    from sagelab.tasks.qa import squad
    from sagelab.models import load_model, load_tokenizer
    from sagelab.tasks.qa.postprocess import SquadV1, postprocess_qa_predictions

    torch.set_num_threads(threads)
    task, data = cfg.task, cfg.data
    tokenizer = load_tokenizer(cfg.model)
    examples = squad.load_squad(str(task.source))
    train_ex, eval_ex = squad.split_by_article(examples, task.train_articles, int(task.eval_articles), task.split_seed)
    train_ex = train_ex.select(range(min(int(data.train_limit), len(train_ex))))
    eval_ex = eval_ex.select(range(min(int(data.eval_limit), len(eval_ex))))
    seq, stride = int(task.max_seq_length), int(task.doc_stride)
    padded = variant == "hf_run_qa"
    padding = "max_length" if padded else False
    train_f = squad.tokenize_split(train_ex, tokenizer, seq, stride, train=True, padding=padding)
    eval_f = squad.tokenize_split(eval_ex, tokenizer, seq, stride, train=False, padding=padding)
    set_seed(int(cfg.seed))
    model = load_model(cfg.model, AutoModelForQuestionAnswering)
    timing: dict[str, float] = {}

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            timing.setdefault("start", time.perf_counter())

        def on_step_end(self, args, state, control, **kwargs):
            timing["end"] = time.perf_counter()

    training_args = TrainingArguments(
        output_dir=str(workdir / "hf"), per_device_train_batch_size=int(cfg.optim.batch_size),
        per_device_eval_batch_size=int(cfg.optim.eval_batch_size), learning_rate=float(cfg.optim.lr),
        weight_decay=float(cfg.optim.weight_decay), warmup_steps=float(cfg.optim.warmup_ratio),  # < 1: a ratio
        num_train_epochs=1, bf16=str(cfg.trainer.precision).startswith("bf16"), use_cpu=True,
        train_sampling_strategy="group_by_length" if variant == "hf_grouped" else "random", logging_strategy="no",
        save_strategy="no", report_to="none", seed=int(cfg.seed), disable_tqdm=True, max_grad_norm=1.0,
    )
    base_collator = default_data_collator if padded else DataCollatorWithPadding(tokenizer)

    def collator(features: list) -> dict:  # counts the tokens the model computes, padding included
        batch = base_collator(features)
        timing["padded_tokens"] = timing.get("padded_tokens", 0) + batch["input_ids"].numel()
        return batch

    trainer = Trainer(model=model, args=training_args, train_dataset=train_f, data_collator=collator,
                      callbacks=[StepTimer()])
    trainer.train()
    padded_tokens = int(timing["padded_tokens"])
    inputs = eval_f.remove_columns(["example_id", "offset_mapping"])
    start_logits, end_logits = trainer.predict(inputs).predictions[:2]
    meta = eval_f.select_columns(["example_id", "offset_mapping"]).to_list()
    ex_rows = eval_ex.select_columns(["id", "context", "answers"]).to_list()
    preds, _ = postprocess_qa_predictions(ex_rows, meta, list(start_logits), list(end_logits),
                                          int(task.n_best_size), int(task.max_answer_length))
    metric = SquadV1()
    metric.update([preds[e["id"]] for e in ex_rows], [e["answers"]["text"] for e in ex_rows])
    scores = metric.compute()
    lengths = [int(np.sum(m)) for m in train_f["attention_mask"]]
    return {"seconds": timing["end"] - timing["start"], "features": len(train_f), "padded_tokens": padded_tokens,
            "exact_match": float(scores["exact_match"]), "f1": float(scores["f1"]),
            "flops": train_flops(lengths, model)}


def run_variant(variant: str, seed: int, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--only", variant, "--seed", str(seed), "--model", args.model,
           "--train-questions", str(args.train_questions), "--eval-questions", str(args.eval_questions),
           "--batch-size", str(args.batch_size), "--eval-batch-size", str(args.eval_batch_size),
           "--max-seq-length", str(args.max_seq_length), "--doc-stride", str(args.doc_stride), "--lr", str(args.lr),
           "--precision", args.precision, "--threads", str(args.threads)]
    if args.override:
        cmd += ["--override", *args.override]
    out = subprocess.run(cmd, capture_output=True, text=True)
    line = next((l for l in out.stdout.splitlines() if l.startswith("RESULT ")), None)
    if line is None:
        sys.exit(f"{variant} failed:\n{out.stderr[-3000:]}")
    return json.loads(line[len("RESULT "):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="minilm", help="a conf/model/ name (minilm, bert_tiny, bert_large_wwm)")
    parser.add_argument("--train-questions", type=int, default=3000)
    parser.add_argument("--eval-questions", type=int, default=1589, help="default: all 8 held-out articles")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--eval-batch-size", type=int, default=32)
    parser.add_argument("--max-seq-length", type=int, default=384)
    parser.add_argument("--doc-stride", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16-mixed", "32-true"],
                        help="both sides; auto = this machine's fastest (bf16 only where it is native)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="runs of each fast peer (hf_run_qa runs once)")
    parser.add_argument("--seed", type=int, default=42, help="seed of the first repeat (+1 per repeat)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--override", nargs="*", default=[], help="extra Hydra overrides for the sagelab side")
    parser.add_argument("--json", type=Path, help="also write every run's figures here")
    parser.add_argument("--only", choices=VARIANTS, help=argparse.SUPPRESS)  # internal: one run, JSON out
    args = parser.parse_args()

    from sagelab import hardware

    args.precision = hardware.resolve_precision(args.precision, "cpu").value
    if args.only:
        workdir = Path(tempfile.mkdtemp(prefix="qa_throughput_"))
        cfg = compose(args, workdir)
        if args.only == "sagelab":
            result = run_sagelab(cfg)
        else:
            result = run_hf(cfg, workdir, args.threads, args.only)
        print("RESULT " + json.dumps(result))
        return

    peak_dtype = "bf16" if args.precision.startswith("bf16") else "fp32"
    peak = matmul_peak(args.threads, peak_dtype)
    print(f"machine: {hardware.describe()}; every side runs {args.precision} (run_qa defaults: fp32)")
    print(f"SQuAD v1.1, model={args.model}, {args.train_questions} training questions, {args.eval_questions} "
          f"held-out questions, max_seq_length {args.max_seq_length}, doc_stride {args.doc_stride}, batch "
          f"{args.batch_size}, lr {args.lr}, {args.precision}, {args.threads} threads; measured {peak_dtype} matmul "
          f"peak {peak:.1f} GFLOP/s", flush=True)
    runs: dict[str, list[dict]] = {v: [] for v in args.variants}
    schedule = [(v, rep) for rep in range(args.repeats) for v in args.variants if v != "hf_run_qa"]
    schedule += [("hf_run_qa", 0)] if "hf_run_qa" in args.variants else []
    for variant, rep in schedule:
        started = time.monotonic()
        r = run_variant(variant, args.seed + rep, args)
        r["features_per_s"] = r["features"] / r["seconds"]
        r["mfu"] = r["flops"] / r["seconds"] / (peak * 1e9)
        runs[variant].append(r)
        print(f"  {variant:10s} seed {args.seed + rep}: {r['features_per_s']:7.2f} features/s  loop "
              f"{r['seconds']:6.1f} s  {r['padded_tokens']:>9d} tokens computed  EM {r['exact_match']:5.2f}  F1 "
              f"{r['f1']:5.2f}  MFU {100 * r['mfu']:4.1f}%   ({time.monotonic() - started:.0f} s)", flush=True)

    print(f"\n{'':10s} {'runs':>4s} {'median features/s':>18s} {'mean EM':>8s} {'mean F1':>8s} {'median MFU':>11s}")
    for variant, rs in runs.items():
        print(f"{variant:10s} {len(rs):4d} {statistics.median(r['features_per_s'] for r in rs):18.2f} "
              f"{statistics.mean(r['exact_match'] for r in rs):8.2f} {statistics.mean(r['f1'] for r in rs):8.2f} "
              f"{100 * statistics.median(r['mfu'] for r in rs):10.1f}%")
    if runs.get("sagelab"):
        ours = runs["sagelab"]
        for peer in (v for v in runs if v != "sagelab" and runs[v]):
            ratio = statistics.median(r["features_per_s"] for r in ours) / statistics.median(
                r["features_per_s"] for r in runs[peer])
            paired = [a["features_per_s"] / b["features_per_s"] for a, b in zip(ours, runs[peer])]
            delta = statistics.mean(r["f1"] for r in ours) - statistics.mean(r["f1"] for r in runs[peer])
            print(f"sagelab / {peer}: {ratio:.2f}x features/s (paired runs {min(paired):.2f}-{max(paired):.2f}x), "
                  f"mean F1 difference {delta:+.2f}")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: v for k, v in vars(args).items() if k != "json"},
                                         "peak_gflops": peak, "runs": runs}, indent=2, default=str))


if __name__ == "__main__":
    main()
