"""Print the before/after table of two ``parity.py`` result files (markdown).

    python experiments/refactor_parity/compare.py results-before.json results-after.json [ROOT_BEFORE ROOT_AFTER]

With the two checkouts' roots, each run's metrics are read at full precision from its MLflow store
(``<root>/mlruns/mlflow.db``) instead of the 4 decimals the runner prints.

Besides the runner's summary metrics, an HPO study's best trial and error and ``mode=compare``'s run count are
read from the command's closing lines.
"""

from __future__ import annotations

import json
import re
import sys

EXTRA = [
    (re.compile(r"best trial (\d+): error=([-0-9.e]+)"), ("hpo/best_trial", "hpo/best_error")),
    (re.compile(r"(\d+) training runs of"), ("compare/runs",)),
    (re.compile(r"wrote (\d+) predictions"), ("predict/written",)),
]


VOLATILE = ("time", "_s", "cost_usd", "per_s", "rss", "latency", "samples_per")


def stored(root: str | None, run_id: str | None) -> dict[str, float]:
    if not root or not run_id:
        return {}
    from mlflow import MlflowClient

    run = MlflowClient(f"sqlite:///{root}/mlruns/mlflow.db").get_run(run_id)
    return {k: v for k, v in run.data.metrics.items() if not any(x in k for x in VOLATILE)}


def metrics(entry: dict, root: str | None = None) -> dict[str, float]:
    found = {**entry["metrics"], **stored(root, entry.get("run_id"))}
    for line in entry.get("stdout_tail", []):
        for pattern, names in EXTRA:
            match = pattern.search(line)
            if match:
                found.update({n: float(v) for n, v in zip(names, match.groups())})
    return found


def main(before_path: str, after_path: str, root_before: str | None = None, root_after: str | None = None) -> None:
    before, after = json.loads(open(before_path).read()), json.loads(open(after_path).read())
    print("| command | scale | metric | before | after | same |")
    print("|---|---|---|---|---|---|")
    same_all = True
    for name, entry in before.items():
        other = after.get(name)
        if other is None:
            print(f"| {name} | {entry['scale']} | (not run after) | | | |")
            continue
        b, a = metrics(entry, root_before), metrics(other, root_after)
        if entry["exit"] or other["exit"]:
            print(f"| {name} | {entry['scale']} | exit code | {entry['exit']} | {other['exit']} | "
                  f"{'yes' if entry['exit'] == other['exit'] else 'NO'} |")
        for key in sorted(set(b) | set(a)):
            vb, va = b.get(key), a.get(key)
            same = vb is not None and va is not None and abs(vb - va) <= 1e-6
            same_all &= same
            fmt = lambda v: "-" if v is None else f"{v:.6g}"  # noqa: E731
            print(f"| {name} | {entry['scale']} | {key} | {fmt(vb)} | {fmt(va)} | {'yes' if same else 'NO'} |")
    print(f"\nall metrics equal to 1e-6: {'yes' if same_all else 'no'}")


if __name__ == "__main__":
    main(*sys.argv[1:5])
