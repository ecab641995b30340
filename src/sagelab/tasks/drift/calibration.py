"""Choose the per-record violation threshold from held-out baseline records.

The seed flags a record when its average cosine score is below a fixed 0.5,
whatever the model and data. Here ``threshold=auto`` takes it from scores of
baseline records that were *not* used to build the baseline mean, so a new
record from the baseline distribution is flagged with probability at most
``fpr``. The rule is the split-conformal one: with ``n`` held-out scores sorted
ascending, flag ``score < s_(k)`` with ``k = floor(fpr * (n + 1))``; for an
exchangeable new record ``P(score < s_(k)) <= k / (n + 1) <= fpr``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Threshold:
    """A violation threshold and how it was chosen (written into statistics.json)."""

    value: float
    method: str  # "fixed" | "calibrated"
    target_fpr: float | None = None
    calibration_records: int | None = None
    calibration_rank: int | None = None
    calibration_fpr: float | None = None  # share of the held-out scores below the threshold
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def calibrate_threshold(heldout_scores: np.ndarray, fpr: float) -> Threshold:
    """Threshold whose expected false-positive rate on baseline-like records is at most ``fpr``.

    When there are too few held-out records for the requested rate
    (``fpr * (n + 1) < 1``) no finite threshold can promise it, so the threshold
    is ``-inf`` (nothing is flagged) and the caller should warn.
    """
    if not 0.0 < fpr < 1.0:
        raise ValueError(f"fpr must be between 0 and 1 (exclusive), got {fpr}")
    scores = np.sort(np.asarray(heldout_scores, dtype=np.float64).reshape(-1))
    scores = scores[np.isfinite(scores)]
    n = scores.size
    if n == 0:
        raise ValueError("no held-out baseline scores to calibrate the threshold on")
    k = math.floor(fpr * (n + 1))
    value = float(scores[k - 1]) if k >= 1 else float("-inf")
    return Threshold(
        value=value,
        method="calibrated",
        target_fpr=float(fpr),
        calibration_records=int(n),
        calibration_rank=int(k),
        calibration_fpr=float(np.mean(scores < value)),
        note=None if k >= 1 else (
            f"{n} held-out records cannot resolve a false-positive rate of {fpr}: need at least "
            f"{math.ceil(1 / fpr) - 1}; no record is flagged"
        ),
    )


def fixed_threshold(value: float) -> Threshold:
    """The seed's way: a number chosen by hand (0.5 in the seed)."""
    return Threshold(value=float(value), method="fixed")


def violation_rate(scores: np.ndarray, threshold: float) -> float:
    """Share of records whose score falls below ``threshold`` (0.0 for no records)."""
    arr = np.asarray(scores, dtype=np.float64).reshape(-1)
    return float(np.mean(arr < threshold)) if arr.size else 0.0
