"""Permutation importance: how much AUC the model loses when one input feature carries no information.

For each feature the task names, its values are shuffled across the task's inputs (a seeded permutation, so
the feature keeps its distribution but loses its link to everything else), the same evaluation examples are
rescored by the same model, and the drop ``AUC(original) - AUC(shuffled)`` is recorded. Repeating with
``diagnose.permutation_repeats`` seeds gives a mean and a standard deviation; a drop near zero means the
model does not use the feature (or another feature carries the same information -- correlated features share
their importance, so each alone may look unimportant). Knows no task: the shuffling is the task's callable.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence


def permutation_importance(labels: Sequence[int], baseline_auc: float, features: Sequence[str],
                           permuted: Callable[[str, int], Sequence[float]], repeats: int,
                           seed: int) -> dict[str, Any]:
    """One row per feature, largest mean AUC drop first (ties by name, so the order is deterministic).

    Every feature is shuffled with the same ``repeats`` seeds (drawn from ``seed``): the features are compared
    under the same random draws. Costs ``len(features) * repeats`` rescorings of the evaluation set."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    y = np.asarray(labels)
    seeds = [int(s) for s in np.random.SeedSequence(int(seed)).generate_state(int(repeats))]
    rows = []
    for name in features:
        aucs = np.array([roc_auc_score(y, np.asarray(permuted(name, s), dtype=np.float64)) for s in seeds])
        drops = float(baseline_auc) - aucs
        rows.append({"feature": str(name), "mean_drop": float(drops.mean()),
                     "std_drop": float(drops.std(ddof=1)) if len(drops) > 1 else 0.0,
                     "aucs": aucs.tolist()})
    rows.sort(key=lambda r: (-r["mean_drop"], r["feature"]))
    return {"method": "permutation", "metric": "auc", "baseline_auc": float(baseline_auc),
            "repeats": int(repeats), "seed": int(seed), "rows": rows}
