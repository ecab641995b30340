"""The seed study, scaled to this machine: the default configuration vs the best one ASHA finds.

    python experiments/glue_hpo/run_experiment.py                      # CoLA, MRPC, STS-B x seeds 0 1 2
    python experiments/glue_hpo/run_experiment.py --tasks glue_mrpc --seeds 0 --max-trials 4

For every task and seed it runs two ordinary sagelab commands, both with ``data.holdout=0.1``
(train on 90 % of the training set, validate on the other 10 %, score the GLUE dev set once at the
end as ``test/*``):

* the default configuration (``optim.lr=5e-5, batch_size=32, warmup_ratio=0.1``) for ``--epochs``;
* an ASHA study over ``search_space=glue_default`` (lr loguniform(1e-6, 1e-4), batch size
  randint(16, 48), warm-up uniform(0, 0.5)) with ``--max-trials`` trials of at most ``--epochs``.

ASHA stops and ranks trials on the held-out 10 % only; the dev set is never used to select. The
table compares the dev ("test") metric of the default run with that of the study's best trial
(lowest held-out error among trials trained to full fidelity), per seed and as mean +- std. Every
command is resumable: re-running skips finished runs and continues unfinished studies.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
METRIC = {"glue_cola": "mcc", "glue_mrpc": "f1", "glue_stsb": "pearson"}
TRACKING = f"sqlite:///{ROOT}/mlruns/mlflow.db"


def sh(cmd: list[str], log: Path) -> None:
    started = time.monotonic()
    with open(log, "a") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        code = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT).returncode
    print(f"  {'ok' if code == 0 else f'FAILED ({code})'} in {time.monotonic() - started:.0f} s: {log.name}", flush=True)
    if code != 0:
        raise SystemExit(f"command failed, see {log}")


def finished_run(name: str) -> dict | None:
    import mlflow

    mlflow.set_tracking_uri(TRACKING)
    runs = mlflow.search_runs(experiment_names=["glue_hpo"], output_format="list",
                              filter_string=f"tags.`mlflow.runName` = '{name}' and attributes.status = 'FINISHED'")
    return runs[0].data.metrics if runs else None


def default_run(task: str, seed: int, common: list[str], args: argparse.Namespace) -> dict:
    name = f"glue_hpo{args.tag}-default-{task}-s{seed}"
    metrics = finished_run(name)
    if metrics is None:
        ckpt = ROOT / "outputs" / "glue_hpo" / name
        sh([sys.executable, "run.py", f"task={task}", f"seed={seed}", *common, f"trainer.max_epochs={args.epochs}",
            f"logger.run_name={name}", f"checkpoint.dir={ckpt}", "checkpoint.resume=never"],
           HERE / "logs" / f"{name}.log")
        metrics = finished_run(name)
    return metrics


def asha_study(task: str, seed: int, common: list[str], args: argparse.Namespace) -> tuple[dict, dict]:
    """(study summary, MLflow metrics of its best trial)."""
    import mlflow

    name = f"glue_hpo{args.tag}-asha-{task}-s{seed}"
    summary_path = ROOT / "mlruns" / "hpo" / name / "results" / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    if summary.get("n_trials", 0) < args.max_trials:
        sh([sys.executable, "run.py", f"task={task}", f"seed={seed}", *common, "hpo=asha", "search_space=glue_default",
            f"hpo.study_name={name}", f"hpo.max_trials={args.max_trials}", f"hpo.max_resource={args.epochs}",
            "hpo.max_wallclock_s=null"],
           HERE / "logs" / f"{name}.log")
        summary = json.loads(summary_path.read_text())
    with open(summary_path.parent / "trials.csv") as f:
        best = next(r for r in csv.DictReader(f) if int(r["trial_id"]) == summary["best_trial"])
    mlflow.set_tracking_uri(TRACKING)
    return summary, mlflow.get_run(best["mlflow_run_id"]).data.metrics


def mean_std(values: list[float], fmt: str = ".4f") -> str:
    return f"{np.mean(values):{fmt}} ± {np.std(values):{fmt}}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["glue_cola", "glue_mrpc", "glue_stsb"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--max-trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--tag", default="", help="names this scale's runs and result files, e.g. -small")
    parser.add_argument("overrides", nargs="*", default=[
        "model=minilm", "data.holdout=0.1", "logger.experiment_name=glue_hpo", "trainer.enable_progress_bar=false",
        "checkpoint.save_model=false", "checkpoint.every_n_steps=0",
    ])
    args = parser.parse_args()
    (HERE / "logs").mkdir(exist_ok=True)
    rows = []
    for seed in args.seeds:
        for task in args.tasks:
            print(f"{task} seed {seed}", flush=True)
            metric = METRIC[task]
            default = default_run(task, seed, args.overrides, args)
            summary, best = asha_study(task, seed, args.overrides, args)
            rows.append({
                "task": task, "seed": seed, "metric": metric,
                "default_dev": default[f"test/{metric}"], "best_dev": best[f"test/{metric}"],
                "default_holdout": default[f"val/{metric}"], "best_holdout": best[f"val/{metric}"],
                "trials": summary["n_trials"], "completed": summary["n_completed"], "stopped": summary["n_stopped"],
                "best_trial": summary["best_trial"], "best_full_fidelity": summary["best_full_fidelity"],
                **{f"best.{k}": v for k, v in summary["best_config"].items()},
            })
            rows[-1]["relative_improvement"] = (rows[-1]["best_dev"] - rows[-1]["default_dev"]) / abs(
                rows[-1]["default_dev"])
    with open(HERE / f"results{args.tag}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| task | dev metric | default (mean ± std) | ASHA best (mean ± std) | relative improvement "
             "| best wins | held-out 10 %: default → best | seeds |", "|---|---|---|---|---|---|---|---|"]
    for task in args.tasks:
        sel = [r for r in rows if r["task"] == task]
        default, best = [r["default_dev"] for r in sel], [r["best_dev"] for r in sel]
        rel = [100 * r["relative_improvement"] for r in sel]
        wins = sum(b > d for b, d in zip(best, default))
        holdout = f"{np.mean([r['default_holdout'] for r in sel]):.4f} → {np.mean([r['best_holdout'] for r in sel]):.4f}"
        lines.append(f"| {task} | {sel[0]['metric']} | {mean_std(default)} | {mean_std(best)} | "
                     f"{np.mean(rel):+.1f} % ± {np.std(rel):.1f} | {wins}/{len(sel)} | {holdout} | {len(sel)} |")
    (HERE / f"results{args.tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
