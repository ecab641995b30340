"""The saved baseline: what ``mode=baseline`` writes and ``mode=monitor`` reads.

A baseline folder holds

* ``embeddings.npy``          -- reference embeddings (``N x d``, float32), for MMD and the classifier;
* ``unit_mean.npy``           -- mean of the unit reference vectors (``d``), for per-record scores;
* ``calibration_scores.npy``  -- scores of held-out baseline records against ``unit_mean``,
  from which ``threshold=auto`` is calibrated;
* ``baseline.json``           -- the model reference, pooling, max length, sizes, the source
  and summary statistics, so that monitoring embeds captured text the same way.

It is logged as the MLflow artifact folder ``baseline/`` of the baseline run;
``task.baseline`` accepts that run id or any local folder. :func:`build_baseline` is ``mode=baseline``;
:func:`resolve_baseline` and :func:`latest_baseline_run` find one for ``mode=monitor``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
from omegaconf import DictConfig, OmegaConf

from sagelab.config import ConfigError
from sagelab.readers.lines import print_skipped
from sagelab.tasks.drift.calibration import calibrate_threshold
from sagelab.tasks.drift.scoring import cosine_scores, unit_mean
from sagelab.tracking import resolve_artifact

if TYPE_CHECKING:
    from sagelab.context import TaskContext

ARTIFACT_DIR = "baseline"
#: (texts, model config, encoder checkpoint, pooling, max length) -> (embeddings, sentences/s)
Embed = Callable[[list, Any, "str | None", str, int], "tuple[np.ndarray, float]"]


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


def resolve_baseline(ref: str, tracking_uri: str) -> Path:
    """A local baseline folder for ``ref``: a folder (or a run's output folder holding ``baseline/``), or an
    MLflow run id whose ``baseline/`` artifact is fetched."""
    path = resolve_artifact("task.baseline", ref, tracking_uri, ARTIFACT_DIR)
    nested = path / ARTIFACT_DIR
    return nested if (nested / "baseline.json").exists() else path


def latest_baseline_run(cfg: DictConfig) -> str:
    """The newest finished baseline (or report) run of this experiment."""
    import mlflow

    mlflow.set_tracking_uri(str(cfg.logger.tracking_uri))
    experiment = mlflow.get_experiment_by_name(str(cfg.logger.experiment_name))
    runs = [] if experiment is None else [
        run
        for mode in ("baseline", "report")  # MLflow's filter has no IN for tags
        for run in mlflow.search_runs(
            [experiment.experiment_id],
            filter_string=f"tags.mode = '{mode}' AND attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"], max_results=1, output_format="list",
        )
    ]
    runs.sort(key=lambda run: run.info.start_time, reverse=True)
    if not runs:
        raise ConfigError("task.baseline", f"is not set and experiment '{cfg.logger.experiment_name}' has "
                          "no finished baseline run: run mode=baseline first or pass a run id or folder.")
    print(f"monitor: using the latest baseline run {runs[0].info.run_id}")
    return runs[0].info.run_id


def build_baseline(context: TaskContext, embed: Embed) -> Baseline:
    """``mode=baseline``: embed ``task.baseline_source``, hold out the calibration part, save and log the folder."""
    from sagelab.tasks.drift.sources import read_source

    cfg, t = context.cfg, context.cfg.task
    data = read_source(str(t.baseline_source), str(t.text_column))
    texts = list(dict.fromkeys(data.texts))  # exact duplicates would leak into the held-out part
    duplicates = len(data.texts) - len(texts)
    rng = np.random.default_rng(int(cfg.seed))
    order = rng.permutation(len(texts))
    if t.get("baseline_limit"):
        order = order[: int(t.baseline_limit)]
    n_cal = int(round(len(order) * float(t.calibration_fraction)))
    if len(order) - n_cal < 2 or n_cal < 1:
        raise ConfigError("task.baseline_source", f"{len(order)} distinct texts are too few to split into a "
                          f"reference and a calibration part (task.calibration_fraction={t.calibration_fraction}).")
    cal_texts = [texts[i] for i in order[:n_cal]]
    ref_texts = [texts[i] for i in order[n_cal:]]

    ckpt = str(t.encoder_checkpoint) if t.get("encoder_checkpoint") else None
    emb, rate = embed(ref_texts + cal_texts, cfg.model, ckpt, str(t.pooling), int(t.max_length))
    ref_emb, cal_emb = emb[: len(ref_texts)], emb[len(ref_texts) :]
    cal_scores = cosine_scores(cal_emb, unit_mean(ref_emb))
    meta = {
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "encoder_checkpoint": ckpt,
        "pooling": str(t.pooling),
        "max_length": int(t.max_length),
        "source": str(t.baseline_source),
        "text_column": str(t.text_column),
        "reference_records": len(ref_texts),
        "calibration_records": len(cal_texts),
        "duplicates_dropped": duplicates,
        "bad_lines": [b.as_dict() for b in data.bad_lines],
        "calibration_scores": summary(cal_scores),
        "seed": int(cfg.seed),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    baseline = Baseline(ref_emb, cal_scores, meta)
    folder = baseline.save(context.output_dir / ARTIFACT_DIR)
    with open(folder / "texts.jsonl", "w") as out:
        for role, group in (("reference", ref_texts), ("calibration", cal_texts)):
            for text in group:
                out.write(json.dumps({"role": role, "text": text}) + "\n")
    context.tracker.log_artifact(folder, ARTIFACT_DIR)
    auto = calibrate_threshold(cal_scores, float(t.fpr))
    metrics = {
        "baseline/reference_records": len(ref_texts),
        "baseline/calibration_records": len(cal_texts),
        "baseline/duplicates_dropped": duplicates,
        "baseline/bad_lines": len(data.bad_lines),
        "baseline/threshold_auto": auto.value,
        "baseline/score_median": float(np.median(cal_scores)),
        "baseline/embed_sentences_per_s": rate,
    }
    context.tracker.log_metrics({k: v for k, v in metrics.items() if np.isfinite(v)})
    print_skipped(data.bad_lines, limit=20, rest=f"; all in {folder / 'baseline.json'}")
    if auto.note:
        print(f"baseline: warning: {auto.note}")
    print(f"baseline: {len(ref_texts)} reference + {len(cal_texts)} calibration texts from {t.baseline_source}; "
          f"threshold at fpr {t.fpr}: {auto.value:.4f}; saved to {folder} (MLflow run {context.run_id})")
    return baseline


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
