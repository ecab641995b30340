"""What every seed sweep in experiments/ shares: run one ``python run.py ...`` and read its final metrics, and
print mean ± std over the seeds.

The metrics come from the summary table the runner prints at the end of each command (``  <key>  <value>``
rows), so a sweep needs no MLflow query and sees exactly what a user sees. Runs go one after another: this
machine has two shared cores, and parallel runs would measure each other.
"""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterable, Sequence

ROOT = Path(__file__).resolve().parents[1]
ROW = re.compile(r"^\s+(\S+)\s+(-?[0-9.]+(?:e-?\d+)?)\s*$")
sys.path.insert(0, str(ROOT / "src"))

from sagelab.hardware import cpu_model  # noqa: E402,F401  (re-exported: every sweep prints the CPU first)


def run_one(overrides: Sequence[str], label: str) -> dict[str, float]:
    """``python run.py <overrides>`` with the progress bar off; its summary metrics plus ``command_s`` (the whole
    command's wall time, start-up included). A failed run ends the sweep with its stderr's tail."""
    command = [sys.executable, str(ROOT / "run.py"), "trainer.enable_progress_bar=false", *overrides]
    started = time.monotonic()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{label} failed:\n{done.stderr[-3000:]}")
    metrics = {m.group(1): float(m.group(2)) for line in done.stdout.splitlines() if (m := ROW.match(line))}
    metrics["command_s"] = time.monotonic() - started
    return metrics


def line(label: str, metrics: dict[str, float], keys: Iterable[str]) -> str:
    """One progress line: the chosen metrics of one run and its command time."""
    shown = "  ".join(f"{k}={metrics[k]:.4f}" for k in keys if k in metrics)
    return f"{label}: {shown}  ({metrics['command_s']:.0f} s)"


def mean_std(values: Sequence[float]) -> str:
    """``mean ± std (n=...)``, or the single value when there is one."""
    if len(values) < 2:
        return f"{values[0]:.4f} (n=1)" if values else "-"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}  (n={len(values)})"


def print_summary(results: Sequence[dict[str, float]], keys: Iterable[str]) -> None:
    """mean ± std over the runs of each key some run reported."""
    for key in keys:
        values = [r[key] for r in results if key in r]
        if values:
            print(f"{key:<16} {mean_std(values)}")
