"""``mode=compare``: a task's runs side by side, as MLflow's compare view would show them.

Runs of one task share an experiment and the same flattened parameter names,
so one ``mlflow.search_runs`` call lines them up. The table keeps only the
parameters that differ between runs, sorts by the task's headline metric and is
printed and written as CSV.
"""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import DictConfig

from sagelab.config import ConfigError

SHOWN_METRICS = ("train_time_s", "cost_usd")


def compare_runs(cfg: DictConfig) -> dict:
    import mlflow
    import pandas as pd

    mlflow.set_tracking_uri(str(cfg.logger.tracking_uri))
    name = str(cfg.logger.experiment_name)
    if mlflow.get_experiment_by_name(name) is None:
        raise ConfigError("task", f"no MLflow experiment '{name}' in {cfg.logger.tracking_uri}: nothing to compare yet.")
    runs = mlflow.search_runs(experiment_names=[name], filter_string="tags.mode = 'train'")
    if runs.empty:
        raise ConfigError("task", f"experiment '{name}' has no training runs to compare.")

    metric = f"metrics.{cfg.task.metric}"
    params = [c for c in runs.columns if c.startswith("params.") and runs[c].astype(str).nunique(dropna=False) > 1]
    params = [c for c in params if not c.startswith(("params.checkpoint.", "params.predict.", "params.logger."))]
    metrics = [c for c in runs.columns if c.startswith("metrics.val/")] + [
        f"metrics.{m}" for m in SHOWN_METRICS if f"metrics.{m}" in runs.columns
    ]
    table = runs[["run_id", "status", *params, *metrics]].copy()
    if metric in table.columns:
        table = table.sort_values(metric, ascending=cfg.task.get("metric_mode", "max") == "min", na_position="last")
    table["run_id"] = table["run_id"].str[:8]
    table.columns = [c.split(".", 1)[1] if c.startswith(("params.", "metrics.")) else c for c in table.columns]

    out = Path(str(cfg.get("output_dir") or ".")) / f"compare_{name}.csv"
    if not cfg.get("output_dir"):
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            out = Path(HydraConfig.get().runtime.output_dir) / f"compare_{name}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    with pd.option_context("display.max_columns", None, "display.width", 200, "display.float_format", "{:.4f}".format):
        print(f"{len(table)} training runs of '{name}', sorted by {cfg.task.metric}:")
        print(table.to_string(index=False))
    print(f"written to {out}", file=sys.stderr)
    return {"runs": float(len(table))}
