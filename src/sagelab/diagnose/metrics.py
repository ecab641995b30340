"""Scores against labels: AUC with a bootstrap interval, thresholds and what they do per 100,000 events,
outcome bands, calibration, and the warnings a score distribution deserves.

Conventions: ``labels`` are 0/1, ``scores`` the model's probability of class 1, and an event is *flagged* at
threshold ``t`` when its score is ``>= t`` (as :func:`sklearn.metrics.roc_curve` counts). Counts per 100,000
events assume a share ``prevalence`` of positives among live events (by default the evaluation set's), as a
fraud team reads a threshold: of 100,000 transactions, how many are blocked, how many of those are fraud, how
many frauds get through.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

PER = 100_000


def as_arrays(labels: Sequence[int], scores: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    y, s = np.asarray(labels, dtype=int), np.asarray(scores, dtype=float)
    if y.shape != s.shape or y.ndim != 1:
        raise ValueError(f"{len(y)} labels for {len(s)} scores")
    if not set(np.unique(y)) <= {0, 1} or len(np.unique(y)) < 2:
        raise ValueError("diagnose needs labels 0 and 1, both present in the evaluation set")
    return y, s


def auc_interval(labels: Sequence[int], scores: Sequence[float], resamples: int, seed: int,
                 confidence: float = 0.95) -> dict[str, float]:
    """ROC AUC and its percentile bootstrap interval (resampling examples with replacement, seeded).

    Resamples that draw a single class have no AUC and are skipped (their number is reported).
    """
    from sklearn.metrics import roc_auc_score

    y, s = as_arrays(labels, scores)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(int(resamples)):
        pick = rng.integers(0, len(y), len(y))
        if y[pick].min() != y[pick].max():
            values.append(roc_auc_score(y[pick], s[pick]))
    tail = (1 - confidence) / 2
    low, high = (np.quantile(values, [tail, 1 - tail]) if values else (math.nan, math.nan))
    return {"auc": float(roc_auc_score(y, s)), "low": float(low), "high": float(high),
            "confidence": float(confidence), "resamples": len(values), "seed": int(seed)}


def threshold_for_tpr(labels: Sequence[int], scores: Sequence[float], target: float) -> float:
    """The highest threshold that flags at least ``target`` of the positives."""
    from sklearn.metrics import roc_curve

    _, tpr, thresholds = roc_curve(*as_arrays(labels, scores), drop_intermediate=False)
    return float(thresholds[int(np.argmax(tpr >= target - 1e-12))])


def threshold_for_fpr(labels: Sequence[int], scores: Sequence[float], max_fpr: float) -> float:
    """The lowest threshold that flags at most ``max_fpr`` of the negatives (``inf``: even the top score would
    flag more, so nothing is flagged)."""
    from sklearn.metrics import roc_curve

    fpr, _, thresholds = roc_curve(*as_arrays(labels, scores), drop_intermediate=False)
    return float(thresholds[np.nonzero(fpr <= max_fpr + 1e-12)[0][-1]])


def outcome(labels: Sequence[int], scores: Sequence[float], threshold: float,
            prevalence: float | None = None) -> dict[str, Any]:
    """TPR, FPR and precision of flagging ``score >= threshold``, with the evaluation counts and what that
    means per 100,000 events at ``prevalence`` (None: the evaluation set's share of positives)."""
    y, s = as_arrays(labels, scores)
    flagged = s >= threshold
    tp, fp = int(np.sum(flagged & (y == 1))), int(np.sum(flagged & (y == 0)))
    positives, negatives = int(np.sum(y == 1)), int(np.sum(y == 0))
    tpr, fpr = tp / positives, fp / negatives
    rate = float(np.mean(y)) if prevalence is None else float(prevalence)
    hits, false_alarms = tpr * rate * PER, fpr * (1 - rate) * PER
    return {
        "threshold": float(threshold), "tpr": tpr, "fpr": fpr,
        "precision": tp / (tp + fp) if tp + fp else math.nan,
        "counts": {"tp": tp, "fp": fp, "fn": positives - tp, "tn": negatives - fp},
        "per_100k": {"prevalence": rate, "flagged": hits + false_alarms, "true_positives": hits,
                     "false_positives": false_alarms, "missed_positives": rate * PER - hits,
                     "precision": hits / (hits + false_alarms) if hits + false_alarms else math.nan},
    }


def pick_thresholds(labels: Sequence[int], scores: Sequence[float], target_tpr: float, max_fpr: float,
                    fixed: Sequence[float], prevalence: float | None) -> dict[str, dict[str, Any]]:
    """The threshold table: ``target_tpr``, ``max_fpr`` and each fixed value, each with its :func:`outcome`."""
    named = {"target_tpr": threshold_for_tpr(labels, scores, target_tpr),
             "max_fpr": threshold_for_fpr(labels, scores, max_fpr)}
    named.update({f"fixed_{t:g}": float(t) for t in fixed})
    rules = {"target_tpr": f"highest threshold with TPR >= {target_tpr:g}",
             "max_fpr": f"lowest threshold with FPR <= {max_fpr:g}"}
    return {name: {"rule": rules.get(name, "fixed"), **outcome(labels, scores, t, prevalence)}
            for name, t in named.items()}


def bands(labels: Sequence[int], scores: Sequence[float], spec: Mapping[str, Any],
          thresholds: Mapping[str, Mapping[str, Any]], prevalence: float | None, rest: str = "pass") -> list[dict]:
    """Outcome bands, most severe first: an event falls into the first band whose threshold its score reaches,
    and into ``rest`` when it reaches none. A band's threshold is a number or the name of a row of
    ``thresholds`` (``target_tpr``, ``max_fpr``). Per band: its share of events, of positives and of negatives,
    per 100,000 events at ``prevalence``, and the precision inside it."""
    y, s = as_arrays(labels, scores)
    rate = float(np.mean(y)) if prevalence is None else float(prevalence)
    remaining, above = np.ones(len(y), dtype=bool), math.inf
    rows = []
    for name, ref in [*spec.items(), (rest, -math.inf)]:
        cut = float(thresholds[ref]["threshold"]) if isinstance(ref, str) else float(ref)
        inside = remaining & (s >= cut)
        remaining &= ~inside
        pos, neg = float(np.mean(inside[y == 1])), float(np.mean(inside[y == 0]))
        hits, others = pos * rate * PER, neg * (1 - rate) * PER
        rows.append({
            "band": name, "threshold": cut, "from": ref if isinstance(ref, str) else None,
            "examples": int(inside.sum()), "share_of_positives": pos, "share_of_negatives": neg,
            "per_100k": {"events": hits + others, "positives": hits, "negatives": others},
            "precision": hits / (hits + others) if hits + others else math.nan,
            "note": "empty: its threshold is not below the band before it" if cut >= above else "",
        })
        above = min(above, cut)
    return rows


def calibration(labels: Sequence[int], scores: Sequence[float], bins: int) -> dict[str, Any]:
    """Reliability diagram points (:func:`sklearn.calibration.calibration_curve`, equal-width bins) and the
    expected calibration error: sum over bins of (share of examples) x |observed positive rate - mean score|."""
    from sklearn.calibration import calibration_curve

    y, s = as_arrays(labels, scores)
    observed, predicted = calibration_curve(y, s, n_bins=bins, strategy="uniform")
    edges = np.linspace(0.0, 1.0, bins + 1)
    counts = np.bincount(np.searchsorted(edges[1:-1], s), minlength=bins)  # sklearn's own binning
    counts = counts[counts > 0]
    ece = float(np.sum(counts / len(s) * np.abs(observed - predicted)))
    return {"ece": ece, "bins": int(bins), "observed": observed.tolist(), "predicted": predicted.tolist(),
            "counts": counts.tolist()}


def curves(labels: Sequence[int], scores: Sequence[float]) -> dict[str, list[float]]:
    """ROC and precision-recall curves, and the average precision."""
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_curve

    y, s = as_arrays(labels, scores)
    fpr, tpr, _ = roc_curve(y, s)
    precision, recall, _ = precision_recall_curve(y, s)
    return {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "precision": precision.tolist(), "recall": recall.tolist(),
            "average_precision": float(average_precision_score(y, s))}


def score_warnings(auc: Mapping[str, float], scores: Sequence[float], *, auc_high: float, auc_low: float,
                   middle: Sequence[float], middle_share: float, at_target: Mapping[str, Any]) -> list[dict]:
    """The warnings a fraud team reads off the scores alone, each with its evidence."""
    s = np.asarray(scores, dtype=float)
    interval = f"AUC {auc['auc']:.4f} ({auc['confidence']:.0%} CI {auc['low']:.4f}-{auc['high']:.4f})"
    found = []
    if auc["auc"] > auc_high:
        found.append({"kind": "possible_leakage", "message": f"{interval} is above {auc_high:g}: real-world "
                      "classifiers this good have usually seen the answers; see the data checks below.",
                      "evidence": dict(auc)})
    if auc["auc"] < auc_low:
        found.append({"kind": "weak_model", "message": f"{interval} is below {auc_low:g}: at TPR "
                      f"{at_target['tpr']:.2f} it flags {at_target['fpr']:.1%} of negatives.",
                      "evidence": {**auc, "fpr_at_target_tpr": at_target["fpr"]}})
    lo, hi = float(middle[0]), float(middle[1])
    share = float(np.mean((s >= lo) & (s <= hi)))
    if share > middle_share:
        found.append({"kind": "score_mass_in_middle", "message": f"{share:.1%} of the scores lie between {lo:g} "
                      f"and {hi:g} (more than {middle_share:.0%}): the model is unsure about them, and a threshold "
                      "there moves many events between outcomes.", "evidence": {"share": share, "range": [lo, hi]}})
    return found
