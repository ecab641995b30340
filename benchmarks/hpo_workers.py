"""Trials per hour with 1 and with 2 HPO workers, Optuna on an RDB storage and Syne Tune's local backend.

    python benchmarks/hpo_workers.py                          # 8 real trials per study, 2 rounds (~15 min)
    python benchmarks/hpo_workers.py --trials 4 --rounds 1    # a quick look
    python benchmarks/hpo_workers.py --model minilm --train-limit 512 --rounds 1   # quality: a model that learns

Every study is the same fixed study: ``task=glue_sst2`` on bert_tiny, ``search_space=glue_default`` with learning
rates where bert_tiny learns (1e-4..3e-3), a fixed number of trials of one epoch each (``hpo.max_resource=1``:
nothing is pruned or stopped early, so 1 and 2 workers do the same work), one thread per trial
(``instance=local_cpu1``), the same seed. Optuna runs ``hpo=tpe``
with ``hpo.storage`` on a SQLite file (the RDB path several workers share); Syne Tune runs ``hpo=random`` on its
local backend. Each (backend, workers) study is a fresh ``python run.py`` process; within a round they run one at
a time, and the order alternates between rounds (A B C D, D C B A), so a slower stretch of the machine hits both
sides alike.

Printed per backend: trials/hour with 1 and 2 workers (finished trials over the study command's wall time, so
process start-up and the study's own overhead count), the ratio (goal >= 1.7x on 2 cores), and the best
validation error each study found (the same seed and space, so "equal within noise" can be read off).
Results: ``--out``/hpo_workers.json (default ``mlruns/hpo/bench_workers/``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

BACKENDS = {"optuna": "tpe", "syne_tune": "random"}
WORKERS = (1, 2)
# where each model learns SST-2 in one short epoch (bert_tiny: the seed's 1e-6..1e-4 leaves every trial at the
# majority class; MiniLM is pretrained and fine-tunes at the usual 1e-5..2e-4)
LR_RANGES = {"bert_tiny": (1e-4, 3e-3), "minilm": (1e-5, 2e-4)}


def run_study(backend: str, workers: int, round_: int, args: argparse.Namespace, out: Path) -> dict:
    """One study from scratch; returns its wall time, finished trials and best error."""
    name = f"bench-workers-{backend}-w{workers}-r{round_}"
    study_dir = out / "studies" / name
    cmd = [
        sys.executable, "run.py", "task=glue_sst2", f"hpo={BACKENDS[backend]}", "search_space=glue_default",
        f"model={args.model}", "instance=local_cpu1", "trainer.precision=32-true",
        f"data.train_limit={args.train_limit}", f"data.eval_limit={args.eval_limit}",
        f"hpo.study_name={name}", f"hpo.dir={out}/studies", f"hpo.experiment_dir={out}/experiments",
        f"hpo.max_trials={args.trials}", "hpo.max_wallclock_s=36000", f"hpo.n_workers={workers}",
        "hpo.max_resource=1", f"seed={args.seed}", "logger.experiment_name=bench_hpo_workers",
        f"search_space.params.lr.low={args.lr_low}", f"search_space.params.lr.high={args.lr_high}",
        f"logger.tracking_uri=sqlite:///{out}/mlflow.db", f"logger.artifact_location={out}/artifacts",
        f"checkpoint.dir={out}/ckpt", f"hydra.run.dir={out}/hydra/{name}",
    ]
    if backend == "optuna":
        cmd.append(f"hpo.storage=sqlite:///{out}/optuna-{name}.db")
    log = out / f"{name}.log"
    started = time.monotonic()
    with open(log, "w") as f:
        code = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT).returncode
    wall = time.monotonic() - started
    if code != 0:
        raise SystemExit(f"{name} failed (exit {code}); see {log}")
    summary = json.loads((study_dir / "results" / "summary.json").read_text())
    finished = summary["n_completed"] + summary["n_pruned"] + summary["n_stopped"]
    result = {"backend": backend, "workers": workers, "round": round_, "wall_s": wall, "finished": finished,
              "failed": summary["n_failed"], "trials_per_hour": 3600.0 * finished / wall,
              "best_error": (summary.get("best") or {}).get("error")}
    print(f"#   {name}: {finished} trials in {wall:.0f} s = {result['trials_per_hour']:.0f}/h, "
          f"best error {result['best_error']}", flush=True)
    return result


def report(results: list[dict]) -> dict:
    table: dict = {}
    for backend in BACKENDS:
        row = {}
        for workers in WORKERS:
            mine = [r for r in results if r["backend"] == backend and r["workers"] == workers]
            if not mine:
                continue
            row[workers] = {"trials_per_hour": statistics.median(r["trials_per_hour"] for r in mine),
                            "best_error": [r["best_error"] for r in mine], "rounds": len(mine)}
        if set(WORKERS) <= set(row):
            row["ratio"] = row[2]["trials_per_hour"] / row[1]["trials_per_hour"]
        table[backend] = row
    print(f"\n{'backend':<10} {'1 worker/h':>11} {'2 workers/h':>12} {'ratio':>6}   best error (1 | 2 workers)")
    for backend, row in table.items():
        if "ratio" not in row:
            continue
        best = " | ".join(", ".join(f"{e:.4f}" for e in row[w]["best_error"] if e is not None) for w in WORKERS)
        print(f"{backend:<10} {row[1]['trials_per_hour']:>11.0f} {row[2]['trials_per_hour']:>12.0f} "
              f"{row['ratio']:>5.2f}x   {best}")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--train-limit", type=int, default=1024)
    parser.add_argument("--eval-limit", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="bert_tiny", choices=list(LR_RANGES),
                        help="bert_tiny: cheap trials, but it stays near the majority class at this scale, so the "
                             "best errors say little; minilm: slower trials whose errors show search quality")
    parser.add_argument("--lr-low", type=float, default=None, help="default: the model's range in LR_RANGES")
    parser.add_argument("--lr-high", type=float, default=None)
    parser.add_argument("--backends", nargs="+", choices=list(BACKENDS), default=list(BACKENDS))
    parser.add_argument("--out", type=Path, default=ROOT / "mlruns" / "hpo" / "bench_workers")
    args = parser.parse_args()
    args.lr_low = args.lr_low or LR_RANGES[args.model][0]
    args.lr_high = args.lr_high or LR_RANGES[args.model][1]

    from sagelab.hardware import describe

    out = args.out.resolve()
    if out.exists():
        import shutil

        shutil.rmtree(out)  # every study starts from scratch: a resumed one would count earlier trials
    out.mkdir(parents=True)
    machine = describe()
    print(f"# {machine}", flush=True)
    plan = [(b, w) for b in args.backends for w in WORKERS]
    results = []
    for round_ in range(args.rounds):
        for backend, workers in (plan if round_ % 2 == 0 else plan[::-1]):
            results.append(run_study(backend, workers, round_, args, out))
    table = report(results)
    (out / "hpo_workers.json").write_text(json.dumps({"machine": machine, "args": {k: str(v) for k, v in
                                                      vars(args).items()}, "results": results,
                                                      "table": table}, indent=2))
    print(f"\nresults: {out / 'hpo_workers.json'}")


if __name__ == "__main__":
    main()
