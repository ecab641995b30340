"""The saved baseline: what ``mode=baseline`` writes and ``mode=monitor`` reads.

A baseline folder holds

* ``embeddings.npy``          -- reference embeddings (``N x d``, float32), for MMD and the classifier;
* ``unit_mean.npy``           -- mean of the unit reference vectors (``d``), for per-record scores;
* ``calibration_scores.npy``  -- scores of held-out baseline records against ``unit_mean``,
  from which ``threshold=auto`` is calibrated;
* ``baseline.json``           -- the model reference, pooling, max length, sizes, the source
  and summary statistics, so that monitoring embeds captured text the same way.

It is logged as the MLflow artifact folder ``baseline/`` of the baseline run;
``task.baseline`` accepts that run id or any local folder.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sagelab.tasks.drift.scoring import unit_mean

ARTIFACT_DIR = "baseline"
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass
class Baseline:
    embeddings: np.ndarray
    calibration_scores: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    unit_mean: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.unit_mean is None:
            self.unit_mean = unit_mean(self.embeddings)

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "embeddings.npy", self.embeddings.astype(np.float32))
        np.save(folder / "unit_mean.npy", np.asarray(self.unit_mean, dtype=np.float64))
        np.save(folder / "calibration_scores.npy", np.asarray(self.calibration_scores, dtype=np.float64))
        (folder / "baseline.json").write_text(json.dumps(self.meta, indent=2, default=str))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> Baseline:
        folder = Path(folder)
        missing = [
            name
            for name in ("embeddings.npy", "unit_mean.npy", "calibration_scores.npy", "baseline.json")
            if not (folder / name).exists()
        ]
        if missing:
            raise FileNotFoundError(f"'{folder}' is not a drift baseline: missing {', '.join(missing)}")
        return cls(
            embeddings=np.load(folder / "embeddings.npy"),
            calibration_scores=np.load(folder / "calibration_scores.npy"),
            meta=json.loads((folder / "baseline.json").read_text()),
            unit_mean=np.load(folder / "unit_mean.npy"),
        )


def looks_like_run_id(text: str) -> bool:
    return bool(_RUN_ID.match(text))


def resolve_baseline(ref: str, tracking_uri: str | None = None) -> Path:
    """A local baseline folder for ``ref``: a folder path, or an MLflow run id whose ``baseline/`` is fetched."""
    path = Path(ref)
    if path.is_dir():
        if (path / ARTIFACT_DIR / "baseline.json").exists():
            return path / ARTIFACT_DIR
        return path
    if looks_like_run_id(ref):
        import mlflow

        return Path(
            mlflow.artifacts.download_artifacts(
                run_id=ref, artifact_path=ARTIFACT_DIR, tracking_uri=tracking_uri
            )
        )
    raise FileNotFoundError(f"'{ref}' is neither a baseline folder nor an MLflow run id")


def summary(values: np.ndarray) -> dict[str, float]:
    """Count, mean, std, min, max and quantiles of a score vector (the statistics.json block)."""
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.size == 0:
        return {"count": 0}
    q = np.quantile(arr, [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99])
    return {
        "count": int(arr.size),
        "mean": float(arr.mean()),
        "std": float(arr.std()),
        "min": float(arr.min()),
        "max": float(arr.max()),
        **{f"p{int(round(p * 100)):02d}": float(v) for p, v in zip((0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99), q)},
    }
