"""Pareto front, hypervolume and the plots of a finished study.

All arrays hold minimised objective values, one row per trial. The
hypervolume is computed on objectives scaled to [0, 1] between explicit bounds
(``lower`` = best value seen, ``upper`` = the reference point), because the raw
units (an error of 0.3, a latency of 2 ms, a cost of 1e-5 $) differ by orders
of magnitude; studies compared against each other must share those bounds
(``benchmarks/hpo_anytime.py`` does). Non-domination comes from Syne Tune and
the exact hypervolume (WFG) from Optuna; only the scaling is ours.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


def pareto_mask(values: np.ndarray) -> np.ndarray:
    """Boolean mask of the non-dominated rows (minimisation); NaN rows are never on the front."""
    values = np.asarray(values, dtype=float)
    if values.ndim != 2:
        raise ValueError(f"expected a 2-D array (trials x objectives), got shape {values.shape}")
    mask = np.zeros(len(values), dtype=bool)
    finite = np.all(np.isfinite(values), axis=1)
    if finite.any():
        from syne_tune.optimizer.schedulers.multiobjective.non_dominated_priority import pareto_efficient

        mask[np.flatnonzero(finite)] = pareto_efficient(values[finite])
    return mask


def default_bounds(values: np.ndarray, margin: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """``(lower, upper)``: the best value seen and the worst plus ``margin`` of the range, per objective."""
    values = np.asarray(values, dtype=float)
    values = values[np.all(np.isfinite(values), axis=1)]
    if len(values) == 0:
        raise ValueError("no finite objective values to bound")
    lower, worst = values.min(axis=0), values.max(axis=0)
    span = np.where(worst > lower, worst - lower, np.maximum(np.abs(worst), 1.0) * 1e-6)
    return lower, worst + margin * span


def hypervolume(values: np.ndarray, lower: Sequence[float], upper: Sequence[float]) -> float:
    """Hypervolume dominated by ``values`` inside the box [lower, upper], scaled so the box has volume 1.

    Points outside the box (worse than ``upper`` in any objective) contribute nothing.
    """
    values = np.asarray(values, dtype=float)
    lower, upper = np.asarray(lower, dtype=float), np.asarray(upper, dtype=float)
    if np.any(upper <= lower):
        raise ValueError(f"upper bounds {upper} must exceed lower bounds {lower}")
    if values.size == 0:
        return 0.0
    scaled = (values - lower) / (upper - lower)
    scaled = np.maximum(scaled, 0.0)  # better than the lower bound counts as the lower bound
    keep = np.all(np.isfinite(scaled), axis=1) & np.all(scaled <= 1.0, axis=1)
    scaled = scaled[keep]
    if len(scaled) == 0:
        return 0.0
    if scaled.shape[1] == 1:
        return float(1.0 - scaled.min())
    from optuna._hypervolume import compute_hypervolume

    return float(compute_hypervolume(scaled, np.ones(scaled.shape[1])))


def hypervolume_curve(
    times: Sequence[float], values: np.ndarray, lower: Sequence[float], upper: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Anytime hypervolume: after each result (sorted by ``times``), the HV of all results so far."""
    order = np.argsort(np.asarray(times, dtype=float), kind="stable")
    times = np.asarray(times, dtype=float)[order]
    values = np.asarray(values, dtype=float)[order]
    hv = np.array([hypervolume(values[: i + 1], lower, upper) for i in range(len(values))])
    return times, hv


def front_2d(points: np.ndarray) -> np.ndarray:
    """The 2-D non-dominated points sorted by the first coordinate (for drawing the staircase)."""
    points = np.asarray(points, dtype=float)
    front = points[pareto_mask(points)]
    return front[np.argsort(front[:, 0])]


def plot_pairs(
    table: "object",
    x_names: Sequence[str],
    y_name: str,
    front_column: str,
    out_dir: Path,
    title: str = "",
) -> list[Path]:
    """One PNG per ``x`` objective: every trial, the study's front highlighted, the 2-D front drawn.

    ``table`` is a pandas DataFrame with one row per trial and natural objective values.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    out_dir.mkdir(parents=True, exist_ok=True)
    for x_name in x_names:
        if x_name not in table or y_name not in table:
            continue
        data = table[[x_name, y_name, front_column]].dropna(subset=[x_name, y_name])
        if data.empty:
            continue
        fig, ax = plt.subplots(figsize=(5.5, 4.2))
        on = data[front_column].astype(bool)
        ax.scatter(data.loc[~on, x_name], data.loc[~on, y_name], c="0.65", s=22, label="trial")
        ax.scatter(data.loc[on, x_name], data.loc[on, y_name], c="tab:red", s=36,
                   label="Pareto-optimal (all objectives)")
        stair = front_2d(data[[x_name, y_name]].to_numpy())
        ax.step(stair[:, 0], stair[:, 1], where="post", c="tab:red", lw=1.2, label=f"front ({y_name} vs {x_name})")
        ax.set_xlabel(x_name)
        ax.set_ylabel(y_name)
        ax.set_title(title or f"{y_name} vs {x_name}", fontsize=9)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out_dir / f"pareto_{y_name}_vs_{x_name}.png".replace("/", "_")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths
