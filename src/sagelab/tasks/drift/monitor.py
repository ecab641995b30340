"""Score monitored embeddings against a baseline: per record and per window.

Pure numpy (plus scikit-learn for the classifier); the drift task embeds the
captured text and hands the arrays here, and tests call it with small
synthetic arrays.

* per record: average cosine similarity to the baseline (``unit_mean`` trick);
  a record scoring below the threshold is a violation;
* per window (the whole capture, consecutive windows of ``window_size``
  records in capture order, or -- ``task.window=hour`` -- one window per hour of
  inference time, the seed's hourly monitoring schedule): MMD^2 with a permutation p-value, the
  domain-classifier AUC and the distance between mean embeddings; drift is
  declared when ``p < alpha``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from sagelab.tasks.drift.baseline import Baseline, summary
from sagelab.tasks.drift.calibration import Threshold, calibrate_threshold, fixed_threshold, violation_rate
from sagelab.tasks.drift.classifier import domain_classifier_auc
from sagelab.tasks.drift.mmd import mmd_test
from sagelab.tasks.drift.scoring import cosine_scores, mean_embedding_distance


@dataclass
class WindowResult:
    index: int
    start: int  # first record (0-based, capture order)
    stop: int  # one past the last record
    mmd2: float
    p_value: float
    sigma: float
    classifier_auc: float
    mean_embedding_distance: float
    violations: int
    violation_rate: float
    mean_score: float
    drift: bool
    label: str = ""  # the hour (2026-12-02T21) or the record range

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class MonitorResult:
    scores: np.ndarray
    threshold: Threshold
    windows: list[WindowResult] = field(default_factory=list)
    alpha: float = 0.05

    @property
    def drift(self) -> bool:
        return any(w.drift for w in self.windows)


def choose_threshold(spec: Any, fpr: float, baseline: Baseline) -> Threshold:
    """``spec`` is ``"auto"`` (calibrate on the baseline's held-out scores) or a number (the seed's way)."""
    if isinstance(spec, str) and spec.strip().lower() == "auto":
        return calibrate_threshold(baseline.calibration_scores, fpr)
    return fixed_threshold(float(spec))


def window_bounds(n: int, window_size: int | None) -> list[tuple[int, int]]:
    """Consecutive ``[start, stop)`` windows; a short tail joins the previous window when under half a window."""
    if n == 0:
        return []
    if not window_size or window_size >= n:
        return [(0, n)]
    bounds = [(s, min(s + window_size, n)) for s in range(0, n, window_size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < window_size / 2:
        last = bounds.pop()
        bounds[-1] = (bounds[-1][0], last[1])
    return bounds


def hour_bounds(inference_times: Sequence[str | None]) -> list[tuple[int, int, str]]:
    """``[start, stop, hour)`` for each run of records captured in the same hour (``YYYY-MM-DDTHH``, UTC as
    SageMaker writes it). Capture folders are read in path order, ``yyyy/mm/dd/hh``, so an hour is one run."""
    keys = [(t or "")[:13] or "unknown" for t in inference_times]
    bounds: list[tuple[int, int, str]] = []
    for i, key in enumerate(keys):
        if bounds and bounds[-1][2] == key:
            bounds[-1] = (bounds[-1][0], i + 1, key)
        else:
            bounds.append((i, i + 1, key))
    return bounds


def reference_sample(embeddings: np.ndarray, max_reference: int | None, seed: int) -> np.ndarray:
    """At most ``max_reference`` reference rows, drawn without replacement (MMD cost grows as N^2)."""
    if not max_reference or len(embeddings) <= max_reference:
        return embeddings
    rng = np.random.default_rng(seed)
    return embeddings[np.sort(rng.choice(len(embeddings), size=max_reference, replace=False))]


def analyse(
    baseline: Baseline,
    embeddings: np.ndarray,
    threshold: Threshold,
    alpha: float = 0.05,
    window_size: int | None = None,
    hours: Sequence[str | None] | None = None,
    n_permutations: int = 500,
    max_reference: int | None = 1000,
    classifier_folds: int = 5,
    seed: int = 0,
) -> MonitorResult:
    """Per-record scores and per-window two-sample statistics for ``embeddings``; windows by hour when the records'
    inference ``hours`` are given, else by ``window_size``."""
    scores = cosine_scores(embeddings, baseline.unit_mean) if len(embeddings) else np.zeros(0)
    reference = reference_sample(np.asarray(baseline.embeddings, dtype=np.float64), max_reference, seed)
    result = MonitorResult(scores=scores, threshold=threshold, alpha=alpha)
    if hours is not None:
        windows = hour_bounds(hours)
    else:
        windows = [(a, b, f"records {a}-{b - 1}") for a, b in window_bounds(len(embeddings), window_size)]
    for i, (start, stop, label) in enumerate(windows):
        current = np.asarray(embeddings[start:stop], dtype=np.float64)
        window_scores = scores[start:stop]
        if len(current) >= 2:
            mmd = mmd_test(reference, current, n_permutations=n_permutations, seed=seed + i)
            mmd2, p, sigma = mmd.mmd2, mmd.p_value, mmd.sigma
            auc = domain_classifier_auc(reference, current, folds=classifier_folds, seed=seed + i)
        else:  # one record: no two-sample statistic, only its score
            mmd2, p, sigma, auc = float("nan"), float("nan"), float("nan"), float("nan")
        result.windows.append(
            WindowResult(
                index=i,
                start=start,
                stop=stop,
                mmd2=mmd2,
                p_value=p,
                sigma=sigma,
                classifier_auc=auc,
                mean_embedding_distance=mean_embedding_distance(reference, current),
                violations=int(np.sum(window_scores < threshold.value)),
                violation_rate=violation_rate(window_scores, threshold.value),
                mean_score=float(np.mean(window_scores)),
                drift=bool(np.isfinite(p) and p < alpha),
                label=label,
            )
        )
    return result


def statistics(result: MonitorResult, baseline: Baseline, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``statistics.json`` body (bad input, sources and run details are added by the caller via ``extra``)."""
    return {
        "record_count": int(len(result.scores)),
        "violation_count": int(np.sum(result.scores < result.threshold.value)),
        "violation_rate": violation_rate(result.scores, result.threshold.value),
        "threshold": result.threshold.as_dict(),
        "alpha": result.alpha,
        "drift": result.drift,
        "scores": summary(result.scores),
        "baseline_scores": summary(baseline.calibration_scores),
        "windows": [w.as_dict() for w in result.windows],
        **(extra or {}),
    }
