"""SQuAD fine-tuning speed: sagelab's runner vs Hugging Face ``Trainer`` with run_qa.py preprocessing.

Same model, same training questions and held-out articles, same ``max_seq_length`` /
``doc_stride``, batch size, learning rate, warm-up, weight decay, precision and
thread count; one epoch each, then both are scored with the same post-processing
and SQuAD v1.1 metric. Prints training windows ("features") per second of both,
their ratio, EM/F1 of both, and model FLOPs utilisation against this machine's
measured matmul peak.

    .venv/bin/python benchmarks/qa_throughput.py                       # MiniLM, 400 questions
    .venv/bin/python benchmarks/qa_throughput.py --train-questions 64 --eval-questions 32 --model bert_tiny

The HF side follows run_qa.py's defaults: every window padded to ``max_seq_length``
(``pad_to_max_length=True``) and random batches. sagelab pads each batch to its
longest window and groups windows of similar length (``data.group_by_length``).
Training time is measured from the start of the first step to the end of the last
on both sides (set-up excluded on both); MFU counts the FLOPs of the real (unpadded)
tokens: 3 x forward, forward = 2 x non-embedding parameters x tokens + 4 x layers x
hidden x length^2 per window.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import lightning as L

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


class LoopTimer(L.Callback):
    """Instantiated by the runner from ``callbacks.timer``: times sagelab's training loop."""

    result: dict[str, float] = {}

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        LoopTimer.result.setdefault("start", time.perf_counter())

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        r = LoopTimer.result
        r["end"] = time.perf_counter()
        r["features"] = r.get("features", 0) + len(batch["input_ids"])
        r["padded_tokens"] = r.get("padded_tokens", 0) + batch["input_ids"].numel()


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

    import sagelab.config  # noqa: F401  (resolvers)

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = hydra_compose("config", return_hydra_config=True, overrides=[
            "task=qa", f"model={args.model}", "strategy=single", f"instance.threads={args.threads}",
            f"logger.tracking_uri=sqlite:///{workdir}/mlflow.db", f"logger.artifact_location={workdir}/artifacts",
            "logger.experiment_name=qa_throughput", f"+output_dir={workdir}/out", f"checkpoint.dir={workdir}/ckpt",
            "checkpoint.every_n_steps=0", "checkpoint.save_model=false", f"task.max_seq_length={args.max_seq_length}",
            f"task.doc_stride={args.doc_stride}", f"data.train_limit={args.train_questions}",
            f"data.eval_limit={args.eval_questions}", f"optim.batch_size={args.batch_size}",
            f"optim.eval_batch_size={args.eval_batch_size}", f"optim.lr={args.lr}", "optim.warmup_ratio=0.1",
            "optim.weight_decay=0.01", "trainer.max_epochs=1", f"trainer.precision={args.precision}",
            "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1000",
            "+callbacks.timer._target_=__main__.LoopTimer", *args.override,
        ])
        HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def run_sagelab(cfg) -> dict[str, float]:
    from sagelab.cli import dispatch

    LoopTimer.result = {}
    metrics = dispatch(cfg)
    t = LoopTimer.result
    return {"seconds": t["end"] - t["start"], "features": t["features"], "padded_tokens": t["padded_tokens"],
            "exact_match": metrics["val/exact_match"], "f1": metrics["val/f1"]}


def run_hf(cfg, workdir: Path, threads: int) -> dict[str, float]:
    """run_qa.py's recipe: padded windows, default collator, Trainer, utils_qa post-processing."""
    import numpy as np
    import torch
    from transformers import AutoModelForQuestionAnswering, Trainer, TrainerCallback, TrainingArguments, set_seed

    from sagelab.data import squad
    from sagelab.models import load_model, load_tokenizer
    from sagelab.tasks.qa_postprocess import SquadV1, postprocess_qa_predictions

    torch.set_num_threads(threads)
    task, data = cfg.task, cfg.data
    tokenizer = load_tokenizer(cfg.model)
    examples = squad.load_squad(str(task.source))
    train_ex, eval_ex = squad.split_by_article(examples, task.train_articles, int(task.eval_articles), task.split_seed)
    train_ex = train_ex.select(range(min(int(data.train_limit), len(train_ex))))
    eval_ex = eval_ex.select(range(min(int(data.eval_limit), len(eval_ex))))
    seq, stride = int(task.max_seq_length), int(task.doc_stride)
    train_f = squad.tokenize_split(train_ex, tokenizer, seq, stride, train=True, padding="max_length")
    eval_f = squad.tokenize_split(eval_ex, tokenizer, seq, stride, train=False, padding="max_length")
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
        weight_decay=float(cfg.optim.weight_decay), warmup_steps=float(cfg.optim.warmup_ratio), num_train_epochs=1,
        bf16=str(cfg.trainer.precision).startswith("bf16"), use_cpu=True, logging_strategy="no",
        save_strategy="no", report_to="none", seed=int(cfg.seed), disable_tqdm=True, max_grad_norm=1.0,
    )
    trainer = Trainer(model=model, args=training_args, train_dataset=train_f, callbacks=[StepTimer()])
    trainer.train()
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
    return {"seconds": timing["end"] - timing["start"], "features": len(train_f), "padded_tokens": len(train_f) * seq,
            "exact_match": float(scores["exact_match"]), "f1": float(scores["f1"]), "lengths": lengths, "model": model}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="minilm", help="a conf/model/ name (minilm, bert_tiny, bert_large_wwm)")
    parser.add_argument("--train-questions", type=int, default=400)
    parser.add_argument("--eval-questions", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--eval-batch-size", type=int, default=32)
    parser.add_argument("--max-seq-length", type=int, default=384)
    parser.add_argument("--doc-stride", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-5)
    parser.add_argument("--precision", default="bf16-mixed", choices=["bf16-mixed", "32-true"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--override", nargs="*", default=[], help="extra Hydra overrides for the sagelab side")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="qa_throughput_"))
    cfg = compose(args, workdir)
    peak_dtype = "bf16" if args.precision.startswith("bf16") else "fp32"
    peak = matmul_peak(args.threads, peak_dtype)
    hf = run_hf(cfg, workdir, args.threads)
    ours = run_sagelab(cfg)
    flops = train_flops(hf.pop("lengths"), hf.pop("model"))
    rows = {}
    for name, r in (("sagelab", ours), ("hf_trainer", hf)):
        rows[name] = {
            "features_per_s": r["features"] / r["seconds"], "train_loop_s": r["seconds"], "features": r["features"],
            "padded_tokens": r["padded_tokens"], "exact_match": r["exact_match"], "f1": r["f1"],
            "mfu": flops / r["seconds"] / (peak * 1e9),
        }
    ratio = rows["sagelab"]["features_per_s"] / rows["hf_trainer"]["features_per_s"]
    print(f"\nSQuAD v1.1 fine-tuning, model={args.model}, {args.train_questions} training questions "
          f"({ours['features']} windows), {args.eval_questions} held-out questions, max_seq_length "
          f"{args.max_seq_length}, doc_stride {args.doc_stride}, batch {args.batch_size}, {args.precision}, "
          f"{args.threads} threads")
    print(f"measured {peak_dtype} matmul peak: {peak:.1f} GFLOP/s; model FLOPs of the epoch: {flops / 1e12:.2f} TFLOP")
    print(f"{'':12}{'features/s':>12}{'loop s':>9}{'pad tokens':>12}{'EM':>8}{'F1':>8}{'MFU':>8}")
    for name, r in rows.items():
        print(f"{name:12}{r['features_per_s']:12.3f}{r['train_loop_s']:9.1f}{r['padded_tokens']:12d}"
              f"{r['exact_match']:8.2f}{r['f1']:8.2f}{100 * r['mfu']:7.1f}%")
    print(f"ratio sagelab / HF Trainer (features/s): {ratio:.2f}x; F1 difference "
          f"{rows['sagelab']['f1'] - rows['hf_trainer']['f1']:+.2f}")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "peak_gflops": peak,
                                         "ratio": ratio, **rows}, indent=2, default=str))


if __name__ == "__main__":
    main()
