#!/usr/bin/env bash
# GLUE baselines: all-MiniLM-L6-v2 fine-tuned on each task's real training set, scored on its real dev set.
# bf16 autocast, batch 32, 2 CPU cores. Results land in MLflow (run name glue_baselines); table.py prints them.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
COMMON="model=minilm instance=local_cpu2 logger.run_name=glue_baselines trainer.enable_progress_bar=false"
$PY run.py task=glue_sst2 $COMMON                       # = the main job (`make run`)
$PY run.py task=glue_cola $COMMON trainer.max_epochs=3 optim.lr=5e-5
$PY run.py task=glue_mrpc $COMMON trainer.max_epochs=3 optim.lr=5e-5
$PY run.py task=glue_stsb $COMMON trainer.max_epochs=3 optim.lr=5e-5
$PY experiments/glue_baselines/table.py
