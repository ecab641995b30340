"""Print the before/after table of two ``parity.py`` result files (markdown).

    python experiments/refactor_parity/compare.py results-before.json results-after.json

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


def metrics(entry: dict) -> dict[str, float]:
    found = dict(entry["metrics"])
    for line in entry.get("stdout_tail", []):
        for pattern, names in EXTRA:
            match = pattern.search(line)
            if match:
                found.update({n: float(v) for n, v in zip(names, match.groups())})
    return found


def main(before_path: str, after_path: str) -> None:
    before, after = json.loads(open(before_path).read()), json.loads(open(after_path).read())
    print("| command | scale | metric | before | after | same |")
    print("|---|---|---|---|---|---|")
    same_all = True
    for name, entry in before.items():
        other = after.get(name)
        if other is None:
            print(f"| {name} | {entry['scale']} | (not run after) | | | |")
            continue
        b, a = metrics(entry), metrics(other)
        if entry["exit"] or other["exit"]:
            print(f"| {name} | {entry['scale']} | exit code | {entry['exit']} | {other['exit']} | "
                  f"{'yes' if entry['exit'] == other['exit'] else 'NO'} |")
        for key in sorted(set(b) | set(a)):
            vb, va = b.get(key), a.get(key)
            same = vb is not None and va is not None and abs(vb - va) <= 1e-6 * max(1.0, abs(vb))
            same_all &= same
            fmt = lambda v: "-" if v is None else f"{v:.6g}"  # noqa: E731
            print(f"| {name} | {entry['scale']} | {key} | {fmt(vb)} | {fmt(va)} | {'yes' if same else 'NO'} |")
    print(f"\nall metrics equal to 1e-6: {'yes' if same_all else 'no'}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
