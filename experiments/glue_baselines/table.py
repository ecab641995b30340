"""Print the GLUE baselines table (markdown) from the MLflow runs named ``glue_baselines``."""

import sys
from pathlib import Path

import mlflow

ROOT = Path(__file__).resolve().parents[2]
TASKS = ("glue_sst2", "glue_cola", "glue_mrpc", "glue_stsb")


def main(tracking_uri: str = f"sqlite:///{ROOT}/mlruns/mlflow.db") -> None:
    mlflow.set_tracking_uri(tracking_uri)
    print("| task | dev metrics | epochs | lr | train examples | train time | samples/s | cost |")
    print("|---|---|---|---|---|---|---|---|")
    for task in TASKS:
        runs = mlflow.search_runs(experiment_names=[task], filter_string="tags.mlflow.runName = 'glue_baselines' "
                                  "and attributes.status = 'FINISHED'", order_by=["attributes.start_time DESC"])
        if runs.empty:
            print(f"| {task} | (not run) | | | | | | |")
            continue
        run = runs.iloc[0]
        metrics = ", ".join(f"{c.split('/')[1]} {run[c]:.4f}" for c in sorted(runs.columns)
                            if c.startswith("metrics.val/") and not c.endswith("loss") and run[c] == run[c])
        epochs = int(run["params.trainer.max_epochs"])
        n_train = {"glue_sst2": 67349, "glue_cola": 8551, "glue_mrpc": 3668, "glue_stsb": 5749}[task]
        limit = run["params.data.train_limit"]
        n_train = min(n_train, int(limit)) if limit not in (None, "None") else n_train
        seconds = run["metrics.train_time_s"]
        print(f"| {task} | {metrics} | {epochs} | {run['params.optim.lr']} | {n_train} | {seconds:.0f} s "
              f"| {n_train * epochs / seconds:.0f} | ${run['metrics.cost_usd']:.4f} |")


if __name__ == "__main__":
    main(*sys.argv[1:])
