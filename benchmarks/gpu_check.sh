#!/usr/bin/env bash
# The GPU path, checked in under 10 minutes wherever a CUDA machine is lent: run as is from a fresh clone.
#   bash benchmarks/gpu_check.sh            # after `make install`
# Prints the GPU, what trainer.precision=auto picks there (bf16-mixed where torch.cuda.is_bf16_supported(),
# else 16-mixed), then three runs with their figures:
#   1. the main job (SST-2, 8,000 sentences, 1 epoch) on one GPU;
#   2. QA throughput, sagelab vs the per-batch-padded HF Trainer, 1 repeat, 1,000 training questions;
#   3. a DDP smoke run over every visible GPU (nccl, as strategy.backend=auto picks on GPUs).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export TRAINER_FLAGS="trainer.enable_progress_bar=false checkpoint.resume=never"

"$PY" - <<'PY'
import torch
from sagelab import hardware
if not torch.cuda.is_available():
    raise SystemExit("gpu_check: no CUDA device visible; this script is for a GPU machine")
print(f"GPUs: {torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}; "
      f"auto precision: {hardware.auto_precision('gpu').value} ({hardware.auto_precision('gpu').reason})")
PY
GPUS=$("$PY" -c "import torch; print(torch.cuda.device_count())")

echo "== 1. main job on one GPU (instance=ml_g4dn_xlarge: 1 GPU, priced as a T4)"
time "$PY" run.py instance=ml_g4dn_xlarge $TRAINER_FLAGS | tail -12

echo "== 2. QA throughput (1,000 questions, 1 repeat)"
"$PY" benchmarks/qa_throughput.py --train-questions 1000 --eval-questions 300 --repeats 1 \
  --variants sagelab hf_dynamic --override instance=ml_g4dn_xlarge | tail -8

echo "== 3. DDP smoke over $GPUS GPU(s)"
time "$PY" run.py task=glue_cola strategy=ddp instance=ml_g4dn_xlarge instance.devices="$GPUS" \
  data.train_limit=512 data.eval_limit=256 $TRAINER_FLAGS | tail -10
