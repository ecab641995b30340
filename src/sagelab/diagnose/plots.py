"""The figures of a diagnosis, as matplotlib figures (Agg: no display needed). Each function takes the
numbers :mod:`sagelab.diagnose.metrics` computed, so a figure never recomputes what the report states."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

COLORS = {0: "#4c72b0", 1: "#dd8452"}
MARKS = ("#c44e52", "#55a868", "#8172b3", "#937860", "#da8bc3")


def _marks(ax: Any, thresholds: Mapping[str, Mapping[str, Any]], x: str, y: str | None = None) -> None:
    for color, (name, row) in zip(MARKS * 4, thresholds.items()):
        if y is None:
            if np.isfinite(row["threshold"]):
                ax.axvline(row["threshold"], color=color, ls="--", lw=1, label=f"{name} = {row['threshold']:.3f}")
        elif np.isfinite(row[x]) and np.isfinite(row[y]):
            ax.plot(row[x], row[y], "o", color=color, label=f"{name} (t = {row['threshold']:.3f})")


def score_histogram(labels: Sequence[int], scores: Sequence[float], thresholds: Mapping[str, Any],
                    positive: str) -> Any:
    y, s = np.asarray(labels), np.asarray(scores)
    fig, ax = plt.subplots(figsize=(7, 4))
    bins = np.linspace(0, 1, 41)
    for cls in (0, 1):
        ax.hist(s[y == cls], bins=bins, alpha=0.6, color=COLORS[cls], label=f"class {cls} (n={int(np.sum(y == cls))})")
    _marks(ax, thresholds, "threshold")
    ax.set(xlabel=f"score = P({positive})", ylabel="examples", title="Scores per true class")
    ax.legend(fontsize=8)
    return fig


def roc(curves: Mapping[str, Any], auc: Mapping[str, float], thresholds: Mapping[str, Any]) -> Any:
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(curves["fpr"], curves["tpr"], color="black", lw=1.5)
    ax.plot([0, 1], [0, 1], color="grey", ls=":", lw=1)
    _marks(ax, thresholds, "fpr", "tpr")
    ax.set(xlabel="false positive rate", ylabel="true positive rate",
           title=f"ROC: AUC {auc['auc']:.4f} [{auc['low']:.4f}, {auc['high']:.4f}]")
    ax.legend(fontsize=8, loc="lower right")
    return fig


def precision_recall(curves: Mapping[str, Any], thresholds: Mapping[str, Any]) -> Any:
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(curves["recall"], curves["precision"], color="black", lw=1.5)
    _marks(ax, thresholds, "tpr", "precision")
    ax.set(xlabel="recall (TPR)", ylabel="precision", ylim=(0, 1.02),
           title=f"Precision-recall: AP {curves['average_precision']:.4f}")
    ax.legend(fontsize=8, loc="lower left")
    return fig


def reliability(calibration: Mapping[str, Any]) -> Any:
    fig, (ax, counts) = plt.subplots(2, 1, figsize=(5, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], color="grey", ls=":", lw=1, label="perfectly calibrated")
    ax.plot(calibration["predicted"], calibration["observed"], "o-", color="black", label="model")
    ax.set(ylabel="observed share of class 1", title=f"Reliability: ECE {calibration['ece']:.4f} "
                                                      f"({calibration['bins']} bins)")
    ax.legend(fontsize=8)
    counts.bar(calibration["predicted"], calibration["counts"], width=0.8 / calibration["bins"], color="grey")
    counts.set(xlabel="mean score in bin", ylabel="examples")
    return fig


def bands(rows: Sequence[Mapping[str, Any]]) -> Any:
    """Per true class, how its events split over the outcome bands (per 100,000 events)."""
    fig, ax = plt.subplots(figsize=(7, 2.8))
    left = np.zeros(2)
    for color, row in zip(MARKS, rows):
        values = np.array([row["per_100k"]["negatives"], row["per_100k"]["positives"]])
        ax.barh(["class 0", "class 1"], values, left=left, color=color, label=row["band"])
        left += values
    ax.set(xlabel="events per 100,000", title="Outcome bands per true class")
    ax.legend(fontsize=8, ncol=len(rows), loc="upper center", bbox_to_anchor=(0.5, -0.3))
    fig.tight_layout()
    return fig


def attributions(top: Mapping[str, Sequence[Mapping[str, Any]]]) -> Any:
    rows = list(top["toward_1"])[::-1] + list(top["toward_0"])[::-1]
    fig, ax = plt.subplots(figsize=(6, max(2.5, 0.28 * len(rows))))
    ax.barh([f"{r['word']} ({r['count']})" for r in rows], [r["mean"] for r in rows],
            color=[COLORS[1] if r["mean"] > 0 else COLORS[0] for r in rows])
    ax.axvline(0, color="black", lw=0.8)
    ax.set(xlabel="mean attribution to the log-odds of class 1 (integrated gradients; count in brackets)",
           title="Words that move the score most")
    fig.tight_layout()
    return fig


def importance(result: Mapping[str, Any]) -> Any:
    """Permutation importance: mean AUC drop per feature with its standard deviation, largest on top."""
    rows = list(result["rows"])[::-1]
    fig, ax = plt.subplots(figsize=(6, max(2.5, 0.32 * len(rows) + 1)))
    means = [r["mean_drop"] for r in rows]
    ax.barh([r["feature"] for r in rows], means, xerr=[r["std_drop"] for r in rows], capsize=3,
            color=[COLORS[1] if m > 0 else COLORS[0] for m in means])
    ax.axvline(0, color="black", lw=0.8)
    ax.set(xlabel=f"AUC drop when shuffled (mean ± std over {result['repeats']} permutations)",
           title=f"Permutation importance (AUC {result['baseline_auc']:.4f} unshuffled)")
    fig.tight_layout()
    return fig


def save(fig: Any, path: Any) -> None:
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
