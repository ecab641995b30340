"""Anytime hypervolume of MO-ASHA vs random search vs NSGA-II on the same budget and search space.

    python benchmarks/hpo_anytime.py --budget-s 600 --seeds 0            # real trials (minutes per method)
    python benchmarks/hpo_anytime.py --synthetic --budget-s 60 --seeds 0 1 2   # the known synthetic objective

Each method runs as an ordinary study (``python run.py ... hpo=<method>``) with the same task,
space, objectives (error, latency_ms, cost_usd), wall-clock budget, worker count and seed. The
hypervolume of each study is then recomputed over time on *shared* bounds (best and worst values
seen by any method, +10 %), so the numbers are comparable:

* ``all rounds``: every reported validation round counts as an evaluated point (a model trained
  that many epochs exists) -- the usual anytime view of multi-fidelity methods;
* ``final``: only each trial's last report counts -- no credit for partial trials.

Latency and cost span orders of magnitude (0.2 ms bert_tiny vs 10 ms MiniLM), so by default they
enter the hypervolume as log10 values (``--log`` with no names: all linear).

It prints both sides and the ratios in one table (MO-ASHA's HV / the other method's HV at the
same wall time), and writes ``hpo_anytime.csv`` and ``hpo_anytime.png`` to ``--out``
(default ``mlruns/hpo/bench_anytime/``, beside the studies themselves).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from sagelab.hpo import pareto  # noqa: E402

METHODS = ("moasha", "random", "nsga2")
OBJECTIVES = ("error", "latency_ms", "cost_usd")


def study_name(method: str, seed: int, args: argparse.Namespace) -> str:
    return f"bench-{method}-{args.task}-s{seed}{'-synthetic' if args.synthetic else ''}"


def run_method(method: str, seed: int, args: argparse.Namespace, out: Path) -> Path:
    """Run (or resume) one study; returns its folder."""
    name = study_name(method, seed, args)
    cmd = [
        sys.executable, "run.py", f"task={args.task}", f"hpo={method}", f"search_space={args.space}",
        f"hpo.study_name={name}", f"hpo.dir={out}/studies", f"hpo.experiment_dir={out}/experiments",
        f"hpo.max_wallclock_s={args.budget_s}", "hpo.max_trials=null", f"hpo.n_workers={args.workers}",
        f"hpo.max_resource={args.max_resource}", f"seed={seed}", f"logger.experiment_name=bench_{args.task}",
        *args.overrides,
    ]
    if args.synthetic:
        cmd.append(f"+hpo.command=[{sys.executable},-m,sagelab.hpo.synthetic]")
    print(f"# {method} seed {seed}: {' '.join(cmd[2:])}", flush=True)
    started = time.monotonic()
    log = out / f"{name}.log"
    with open(log, "w") as f:
        code = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT).returncode
    if code != 0:
        raise SystemExit(f"{method} failed (exit {code}); see {log}")
    print(f"#   done in {time.monotonic() - started:.0f} s", flush=True)
    return out / "studies" / name


def study_points(study_dir: Path, log: tuple[str, ...] = ()) -> tuple[list[tuple[float, np.ndarray, bool]], float]:
    """[(seconds since the study started, objectives, is the trial's last report)], and the study's start.

    Objectives named in ``log`` are compared as log10 values (latency and cost span orders of magnitude).
    """
    state = json.loads((study_dir / "state.json").read_text())
    start = float(state["sessions"][0]["started"])
    points = []
    for result_path in (study_dir / "trials").glob("*/result.json"):
        history = json.loads(result_path.read_text()).get("history") or []
        for i, entry in enumerate(history):
            values = np.array([np.log10(entry[k]) if k in log else entry[k] for k in OBJECTIVES], dtype=float)
            points.append((float(entry["time"]) - start, values, i == len(history) - 1))
    return sorted(points, key=lambda p: p[0]), start


def curve(points: list, grid: np.ndarray, lower: np.ndarray, upper: np.ndarray, final_only: bool) -> np.ndarray:
    chosen = [(t, v) for t, v, last in points if last or not final_only]
    out = []
    for t in grid:
        seen = [v for s, v in chosen if s <= t]
        out.append(pareto.hypervolume(np.array(seen), lower, upper) if seen else 0.0)
    return np.array(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="glue_mrpc")
    parser.add_argument("--space", default="glue_instances")
    parser.add_argument("--budget-s", type=float, default=600)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--max-resource", type=int, default=3)
    parser.add_argument("--synthetic", action="store_true", help="trials run the synthetic objective")
    parser.add_argument("--out", type=Path, default=ROOT / "mlruns" / "hpo" / "bench_anytime")
    parser.add_argument("--only-report", action="store_true", help="recompute from finished studies in --out")
    parser.add_argument("--log", nargs="*", default=["latency_ms", "cost_usd"],
                        help="objectives compared on a log10 scale (default: latency_ms cost_usd; none: --log)")
    parser.add_argument("overrides", nargs="*", help="extra run.py overrides, e.g. data.train_limit=256")
    args = parser.parse_args()
    from sagelab import hardware

    print(f"machine: {hardware.describe()}", flush=True)
    out = args.out.resolve()
    (out / "studies").mkdir(parents=True, exist_ok=True)

    studies: dict[tuple[str, int], Path] = {}
    for seed in args.seeds:
        for method in METHODS:
            if args.only_report:
                studies[method, seed] = out / "studies" / study_name(method, seed, args)
            else:
                studies[method, seed] = run_method(method, seed, args, out)

    points = {key: study_points(d, tuple(args.log))[0] for key, d in studies.items()}
    everything = np.array([v for pts in points.values() for _, v, _ in pts])
    lower, upper = pareto.default_bounds(everything)
    grid = np.linspace(0, args.budget_s, 41)
    rows = []
    curves: dict[tuple[str, str], list[np.ndarray]] = {}
    for (method, seed), pts in points.items():
        for view, final_only in (("all rounds", False), ("final", True)):
            c = curve(pts, grid, lower, upper, final_only)
            curves.setdefault((method, view), []).append(c)
            n_trials = len([1 for _, _, last in pts if last])
            rows.append({"method": method, "seed": seed, "view": view, "trials": n_trials, "rounds": len(pts),
                         **{f"hv@{int(f * 100)}%": float(c[int(round(f * (len(grid) - 1)))]) for f in (0.25, 0.5, 1.0)}})

    import csv

    with open(out / "hpo_anytime.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    print(f"\nshared bounds of {', '.join(f'log10 {k}' if k in args.log else k for k in OBJECTIVES)}: "
          f"lower {np.round(lower, 6).tolist()}  upper {np.round(upper, 6).tolist()}")
    print(f"budget {args.budget_s:.0f} s per method, {args.workers} worker(s), seeds {args.seeds}\n")
    header = f"{'view':<11} {'method':<7} {'trials':>7} {'HV@25%':>14} {'HV@50%':>14} {'HV@100%':>14}"
    print(header)
    print("-" * len(header))
    for view in ("all rounds", "final"):
        for method in METHODS:
            sel = [r for r in rows if r["method"] == method and r["view"] == view]
            cells = []
            for col in ("hv@25%", "hv@50%", "hv@100%"):
                vals = np.array([r[col] for r in sel])
                cells.append(f"{vals.mean():.4f}±{vals.std():.4f}")
            trials = np.mean([r["trials"] for r in sel])
            print(f"{view:<11} {method:<7} {trials:>7.1f} {cells[0]:>14} {cells[1]:>14} {cells[2]:>14}")
        mo = np.array([r["hv@100%"] for r in rows if r["method"] == "moasha" and r["view"] == view])
        for other in ("random", "nsga2"):
            ot = np.array([r["hv@100%"] for r in rows if r["method"] == other and r["view"] == view])
            ratio = mo.mean() / ot.mean() if ot.mean() > 0 else float("inf")
            wins = int(np.sum(mo >= ot))
            print(f"{'':<11} MO-ASHA / {other}: {ratio:.3f} at the full budget "
                  f"(MO-ASHA >= {other} in {wins}/{len(mo)} seeds)")
        print()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, view in zip(axes, ("all rounds", "final")):
        for method in METHODS:
            stack = np.array(curves[method, view])
            ax.plot(grid, stack.mean(axis=0), label=method)
            if len(stack) > 1:
                ax.fill_between(grid, stack.min(axis=0), stack.max(axis=0), alpha=0.2)
        ax.set_title(f"{args.task}, {args.space}: {view}", fontsize=9)
        ax.set_xlabel("wall time (s)")
        ax.grid(alpha=0.3)
    names = ", ".join(f"log {k}" if k in args.log else k for k in OBJECTIVES)
    axes[0].set_ylabel(f"hypervolume ({names}; shared bounds)", fontsize=8)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(out / "hpo_anytime.png", dpi=110)
    print(f"wrote {out / 'hpo_anytime.csv'} and {out / 'hpo_anytime.png'}")


if __name__ == "__main__":
    main()
