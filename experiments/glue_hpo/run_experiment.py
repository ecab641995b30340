"""Does the search pay for itself? The study's chosen configuration vs the default, on the GLUE dev set.

    python experiments/glue_hpo/run_experiment.py --tag=-1k                        # CoLA, MRPC, STS-B x 5 seeds, ASHA
    python experiments/glue_hpo/run_experiment.py --tag=-1k --methods asha tpe random
    python experiments/glue_hpo/run_experiment.py --tag=-1k --warm-start --tasks glue_mrpc --seeds 0 1 2

Per task, study seed and method it runs one ordinary study command, e.g.

    python run.py task=glue_mrpc seed=0 hpo=asha search_space=glue_minilm hpo.reeval_seeds=[1000,2000] ...

with ``data.holdout=0.1``: trials train on 90 % of the (limited) training set and are ranked on the other
10 %; the default configuration is the study's trial 0 (``hpo.evaluate_default``); once the budget is spent the
``hpo.reeval_top_k`` best configurations and the default are re-run on the re-evaluation seeds and the lowest
mean holdout error is chosen. The GLUE dev set is scored at the end of every run (``test/*``) and never used to
choose: the table compares the chosen configuration's dev metric with the default's, each the mean over the
same re-evaluation runs (so both are measured on the same seeds), per study seed and as mean ± std with wins.

``--warm-start``: for each (task, seed) whose first study exists, a second study with another seed starts
from the first (``hpo.warm_start=<first>``) with half the first study's search wall time as its budget; the
table says when it first matched the first study's best holdout error.

Every command resumes: re-running skips finished studies and continues unfinished ones.
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
SECOND = {"glue_cola": "accuracy", "glue_mrpc": "accuracy", "glue_stsb": "spearman"}  # reported beside it
TRACKING = f"sqlite:///{ROOT}/mlruns/mlflow.db"
EXPERIMENT = "glue_hpo"
COMMON = ["data.holdout=0.1", f"logger.experiment_name={EXPERIMENT}", "trainer.enable_progress_bar=false",
          "checkpoint.save_model=false", "checkpoint.every_n_steps=0"]


def sh(cmd: list[str], log: Path) -> None:
    started = time.monotonic()
    with open(log, "a") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        code = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT).returncode
    print(f"  {'ok' if code == 0 else f'FAILED ({code})'} in {time.monotonic() - started:.0f} s: {log.name}", flush=True)
    if code != 0:
        raise SystemExit(f"command failed, see {log}")


def study_dir(name: str) -> Path:
    return ROOT / "mlruns" / "hpo" / name


def summary_of(name: str) -> dict:
    path = study_dir(name) / "results" / "summary.json"
    return json.loads(path.read_text()) if path.exists() else {}


def trials_of(name: str) -> list[dict]:
    with open(study_dir(name) / "results" / "trials.csv") as f:
        return list(csv.DictReader(f))


def run_study(name: str, task: str, seed: int, method: str, args: argparse.Namespace, extra: list[str],
              done: bool = False) -> dict:
    """Run (or resume) the study unless ``done`` or its summary already has every trial and re-evaluation."""
    summary = summary_of(name)
    unfinished = summary.get("n_trials", 0) < args.max_trials or (args.reeval and "reeval" not in summary)
    if not done and unfinished:
        sh([sys.executable, "run.py", f"task={task}", f"seed={seed}", f"hpo={method}",
            f"search_space={args.space}", f"hpo.study_name={name}", f"hpo.max_trials={args.max_trials}",
            f"hpo.max_resource={args.epochs}", f"hpo.n_workers={args.workers}", *COMMON, *args.overrides, *extra],
           HERE / "logs" / f"{name}.log")
        summary = summary_of(name)
    return summary


def dev_metrics(study: str, run_suffix: str) -> dict[str, float]:
    """The ``test/*`` metrics (the GLUE dev set) of the run ``<study>-trial-<run_suffix>``."""
    import mlflow

    mlflow.set_tracking_uri(TRACKING)
    runs = mlflow.search_runs(experiment_names=[EXPERIMENT], output_format="list",
                              filter_string=f"tags.`mlflow.runName` = '{study}-trial-{run_suffix}' "
                                            "and attributes.status = 'FINISHED'")
    if not runs:
        raise SystemExit(f"no finished MLflow run {study}-trial-{run_suffix} in experiment {EXPERIMENT}")
    return {k[len("test/"):]: v for k, v in runs[0].data.metrics.items() if k.startswith("test/")}


def compare(name: str, task: str, seed: int, method: str, summary: dict) -> dict:
    """One row: default and chosen configuration, holdout and dev, from the study's re-evaluation runs."""
    metric = METRIC[task]
    block = summary["reeval"]
    cands = {c["trial_id"]: c for c in block["candidates"]}
    chosen, default = summary["best_trial"], summary["default_trial"]

    def dev(trial: int, key: str) -> list[float]:
        return [dev_metrics(name, f"reeval-t{trial}-s{s}").get(key, float("nan")) for s in block["seeds"]]

    chosen_dev, default_dev = dev(chosen, metric), dev(default, metric)
    second = SECOND[task]
    row = {"task": task, "seed": seed, "method": method, "metric": metric,
           "default_dev": float(np.mean(default_dev)), "chosen_dev": float(np.mean(chosen_dev)),
           "default_dev_runs": default_dev, "chosen_dev_runs": chosen_dev, "second_metric": second,
           "default_dev_second": float(np.mean(dev(default, second))),
           "chosen_dev_second": float(np.mean(dev(chosen, second))),
           "default_holdout_error": cands[default]["mean"]["error"],
           "chosen_holdout_error": cands[chosen]["mean"]["error"],
           "chosen_is_default": chosen == default, "chosen_trial": chosen,
           "search_best_trial": summary.get("search_best_trial", chosen),
           "trials": summary["n_trials"], "completed": summary["n_completed"], "stopped": summary["n_stopped"],
           "search_wall_s": search_wall(trials_of(name)),
           **{f"chosen.{k}": v for k, v in summary["best_config"].items()}}
    row["relative_improvement"] = (row["chosen_dev"] - row["default_dev"]) / abs(row["default_dev"])
    return row


def search_wall(trials: list[dict]) -> float:
    """Seconds from the first trial's start to the last search trial's end (re-evaluation excluded)."""
    return max(float(t["finished_at"]) for t in trials) - min(float(t["started_at"]) for t in trials)


def time_to_reach(trials: list[dict], target_error: float) -> float | None:
    """Seconds from the study's start until a trial trained to full fidelity had a holdout error <= target
    (None: never)."""
    start = min(float(t["started_at"]) for t in trials)
    hits = [float(t["finished_at"]) - start for t in trials
            if t["full_fidelity"] == "True" and float(t["error"]) <= target_error + 1e-12]
    return min(hits) if hits else None


def warm_start_row(task: str, seed: int, method: str, args: argparse.Namespace) -> dict:
    first = f"glue_hpo{args.tag}-{method}-{task}-s{seed}"
    first_summary = summary_of(first)
    if not first_summary:
        raise SystemExit(f"--warm-start needs the first study {first}: run without --warm-start first")
    first_trials = trials_of(first)
    search_best = first_summary.get("search_best_trial", first_summary["best_trial"])
    target = float(next(t["error"] for t in first_trials if int(t["trial_id"]) == search_best))
    wall = search_wall(first_trials)
    second = f"glue_hpo{args.tag}-{method}-warm-{task}-s{seed}"
    summary = run_study(second, task, seed + 100, method, args,
                        [f"hpo.warm_start={first}", f"hpo.max_wallclock_s={0.5 * wall:.0f}"],
                        done=bool(summary_of(second)))  # its budget is time: a finished one is not resumed
    trials = trials_of(second)
    reached = time_to_reach(trials, target)
    chosen = first_summary["best"]["error"]  # the chosen configuration's mean over the re-evaluation seeds
    return {"task": task, "seed": seed, "method": method, "first_best_holdout_error": target,
            "first_chosen_holdout_error": chosen, "first_search_wall_s": wall,
            "first_time_to_best_s": time_to_reach(first_trials, target),
            "second_budget_s": 0.5 * wall, "second_trials": summary["n_trials"],
            "second_time_to_reach_s": reached, "second_time_to_chosen_s": time_to_reach(trials, chosen),
            "second_best_holdout_error": min((float(t["error"]) for t in trials if t["full_fidelity"] == "True"),
                                             default=None),
            "reached_within_half": reached is not None and reached <= 0.5 * wall}


def mean_std(values: list[float], fmt: str = ".4f") -> str:
    return f"{np.mean(values):{fmt}} ± {np.std(values, ddof=1) if len(values) > 1 else 0.0:{fmt}}"


def table(rows: list[dict]) -> list[str]:
    lines = ["| task | method | dev metric | default (mean ± std) | chosen (mean ± std) | relative improvement "
             "| chosen wins | chosen = default | worse than default by > its spread | studies |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for task in dict.fromkeys(r["task"] for r in rows):
        for method in dict.fromkeys(r["method"] for r in rows):
            sel = [r for r in rows if r["task"] == task and r["method"] == method]
            if not sel:
                continue
            default, chosen = [r["default_dev"] for r in sel], [r["chosen_dev"] for r in sel]
            spread = float(np.std([v for r in sel for v in r["default_dev_runs"]], ddof=1))
            rel = [100 * r["relative_improvement"] for r in sel]
            wins = sum(c > d for c, d in zip(chosen, default))
            worse = sum(d - c > spread for c, d in zip(chosen, default))
            lines.append(f"| {task} | {method} | {sel[0]['metric']} | {mean_std(default)} | {mean_std(chosen)} | "
                         f"{np.mean(rel):+.1f} % ± {np.std(rel, ddof=1) if len(rel) > 1 else 0:.1f} | "
                         f"{wins}/{len(sel)} | {sum(r['chosen_is_default'] for r in sel)}/{len(sel)} | "
                         f"{worse}/{len(sel)} (spread {spread:.4f}) | {len(sel)} |")
    lines += ["", "| task | method | dev metric | default (mean ± std) | chosen (mean ± std) | chosen wins |",
              "|---|---|---|---|---|---|"]
    for task in dict.fromkeys(r["task"] for r in rows):
        for method in dict.fromkeys(r["method"] for r in rows):
            sel = [r for r in rows if r["task"] == task and r["method"] == method]
            if sel:
                default, chosen = [r["default_dev_second"] for r in sel], [r["chosen_dev_second"] for r in sel]
                lines.append(f"| {task} | {method} | {sel[0]['second_metric']} | {mean_std(default)} | "
                             f"{mean_std(chosen)} | {sum(c > d for c, d in zip(chosen, default))}/{len(sel)} |")
    return lines


def write(rows: list[dict], stem: str) -> None:
    with open(HERE / f"{stem}.csv", "w", newline="") as f:
        fields = list(dict.fromkeys(k for r in rows for k in r))
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["glue_cola", "glue_mrpc", "glue_stsb"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--methods", nargs="+", default=["asha"], help="hpo= algorithms, e.g. asha tpe random")
    parser.add_argument("--space", default="glue_minilm")
    parser.add_argument("--max-trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--reeval", type=int, default=2, help="re-evaluation seeds per study (0: off)")
    parser.add_argument("--top-k", type=int, default=2)
    parser.add_argument("--warm-start", action="store_true")
    parser.add_argument("--tag", default="", help="names this scale's studies and result files, e.g. -1k")
    parser.add_argument("--results", default=None, help="result files' name (default: results<tag>)")
    parser.add_argument("overrides", nargs="*", default=["model=minilm", "data.train_limit=1000"])
    args = parser.parse_args()
    (HERE / "logs").mkdir(exist_ok=True)
    rows = []
    for seed in args.seeds:
        for task in args.tasks:
            for method in args.methods:
                print(f"{task} seed {seed} {method}{' warm start' if args.warm_start else ''}", flush=True)
                if args.warm_start:
                    rows.append(warm_start_row(task, seed, method, args))
                    continue
                name = f"glue_hpo{args.tag}-{method}-{task}-s{seed}"
                reeval = [f"hpo.reeval_seeds=[{','.join(str(1000 * (i + 1) + seed) for i in range(args.reeval))}]",
                          f"hpo.reeval_top_k={args.top_k}"] if args.reeval else []
                summary = run_study(name, task, seed, method, args, [*reeval, "hpo.max_wallclock_s=null"])
                rows.append(compare(name, task, seed, method, summary))
    if args.warm_start:
        write(rows, f"warm_start{args.tag}")
        for r in rows:
            print(json.dumps(r))
        return
    stem = args.results or f"results{args.tag}"
    write(rows, stem)
    lines = table(rows)
    (HERE / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
