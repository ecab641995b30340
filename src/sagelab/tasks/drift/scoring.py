"""Per-record drift score: average cosine similarity of a record to the baseline.

The seed computes, for each captured record ``q``, ``mean_i cos(q, b_i)`` with a
Python loop over all ``N`` baseline vectors (``O(N*d)`` per record). Cosine is a
dot product of unit vectors, and a dot product is linear, so

    mean_i cos(q, b_i) = (q / |q|) . mean_i (b_i / |b_i|)

is the *same number* computed in ``O(d)`` once the mean of the unit baseline
vectors (``unit_mean``) is stored with the baseline. :func:`seed_cosine_scores`
keeps the seed's loop as the reference that tests and the benchmark compare to.
"""

from __future__ import annotations

import numpy as np

_EPS = 1e-12


def as_matrix(x: np.ndarray, name: str = "embeddings") -> np.ndarray:
    """Return ``x`` as a 2-D float64 array (a single vector becomes one row)."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a vector or a 2-D array (records x dims), got shape {arr.shape}")
    return arr


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Scale every row to unit length; an all-zero row stays zero (its cosine is taken as 0)."""
    arr = as_matrix(x)
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    return arr / np.maximum(norms, _EPS)


def unit_mean(baseline: np.ndarray) -> np.ndarray:
    """Mean of the unit-normalised baseline vectors: the one ``d``-vector monitoring needs."""
    base = as_matrix(baseline, "baseline")
    if base.shape[0] == 0:
        raise ValueError("the baseline has no records")
    return unit_rows(base).mean(axis=0)


def cosine_scores(queries: np.ndarray, baseline_unit_mean: np.ndarray) -> np.ndarray:
    """Average cosine similarity of each query row to the baseline, via ``unit_mean``.

    Equals :func:`seed_cosine_scores` (the seed's loop) to floating-point rounding.
    """
    q = unit_rows(queries)
    mu = np.asarray(baseline_unit_mean, dtype=np.float64).reshape(-1)
    if q.shape[1] != mu.shape[0]:
        raise ValueError(
            f"query embeddings have {q.shape[1]} dimensions but the baseline has {mu.shape[0]}: "
            "were they embedded with the same model and pooling?"
        )
    return q @ mu


def seed_cosine_scores(queries: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    """The seed's per-record loop, kept verbatim in spirit as the reference implementation.

    ``cosine_score += 1 - scipy.spatial.distance.cosine(q, b)`` over every baseline
    vector, divided by the baseline size. Slow by design: tests and
    ``benchmarks/drift_scoring.py`` compare :func:`cosine_scores` against it.
    """
    from scipy.spatial.distance import cosine

    base = as_matrix(baseline, "baseline")
    out = []
    for q in as_matrix(queries, "queries"):
        total = 0.0
        for b in base:
            total += 1 - cosine(q, b)
        out.append(total / len(base))
    return np.asarray(out)


def mean_embedding_distance(reference: np.ndarray, current: np.ndarray) -> float:
    """Cosine distance between the two samples' mean embeddings (Evidently's simplest drift statistic)."""
    a = as_matrix(reference, "reference").mean(axis=0)
    b = as_matrix(current, "current").mean(axis=0)
    denom = max(float(np.linalg.norm(a) * np.linalg.norm(b)), _EPS)
    return float(1.0 - a @ b / denom)
