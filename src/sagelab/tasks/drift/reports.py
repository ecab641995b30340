"""Monitoring outputs: Model Monitor style violations, statistics, and the score histogram.

``constraint_violations.json`` keeps SageMaker Model Monitor's shape
(``{"violations": [{"feature_name", "constraint_check_type", "description"}]}``)
plus the seed's fields (``sentence``, ``avg_cosine_score``, ``endpoint_name``,
``monitoring_schedule_name``) and where the record came from (file, line).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from sagelab.readers.capture import Record
from sagelab.readers.lines import print_skipped
from sagelab.tasks.drift.calibration import Threshold

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from sagelab.context import TaskContext

FEATURE_NAME = "sent_cosine_score"
CHECK_TYPE = "baseline_drift_check"


def violations_report(
    records: Sequence[Record],
    scores: np.ndarray,
    threshold: Threshold,
    endpoint_name: str | None = None,
    monitoring_schedule_name: str | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """One violation per record scoring below ``threshold.value``, in capture order."""
    how = (
        f"calibrated for a {threshold.target_fpr:g} false-positive rate"
        if threshold.method == "calibrated"
        else "fixed"
    )
    violations = []
    for record, score in zip(records, np.asarray(scores, dtype=float)):
        if not score < threshold.value:
            continue
        violations.append(
            {
                "feature_name": FEATURE_NAME,
                "constraint_check_type": CHECK_TYPE,
                "description": (
                    f"average cosine similarity to the baseline {score:.4f} is below the "
                    f"threshold {threshold.value:.4f} ({how})"
                ),
                "sentence": record.text,
                "avg_cosine_score": float(score),
                "endpoint_name": endpoint_name,
                "monitoring_schedule_name": monitoring_schedule_name,
                "file": record.file,
                "line": record.line,
                "item": record.item,
                "event_id": record.event_id,
                "inference_time": record.inference_time,
            }
        )
    return {"violations": violations}


def score_histogram(
    baseline_scores: np.ndarray, current_scores: np.ndarray, threshold: float, title: str = ""
) -> Figure:
    """Overlaid density histograms of held-out baseline vs monitored scores, threshold marked."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    both = np.concatenate([np.ravel(baseline_scores), np.ravel(current_scores)])
    both = both[np.isfinite(both)]
    lo, hi = (float(both.min()), float(both.max())) if both.size else (0.0, 1.0)
    if np.isfinite(threshold):
        lo, hi = min(lo, threshold), max(hi, threshold)
    bins = np.linspace(lo, hi if hi > lo else lo + 1e-6, 41)
    ax.hist(baseline_scores, bins=bins, density=True, alpha=0.55, label=f"baseline held-out (n={len(baseline_scores)})")
    if len(current_scores):  # a capture of only bad lines still gets its report
        ax.hist(current_scores, bins=bins, density=True, alpha=0.55, label=f"monitored (n={len(current_scores)})")
    if np.isfinite(threshold):
        ax.axvline(threshold, color="black", linestyle="--", linewidth=1, label=f"threshold {threshold:.3f}")
    ax.set_xlabel("average cosine similarity to the baseline")
    ax.set_ylabel("density")
    ax.set_title(title or "per-record drift score")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def jsonable(obj: Any) -> Any:
    """``obj`` with NaN/inf turned into ``None`` and numpy scalars into Python ones (strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def write_monitoring_reports(
    cfg: Any, context: TaskContext, baseline: Any, capture: Any, embeddings: np.ndarray, embed_rate: float
) -> dict[str, float]:
    """Analyse ``embeddings`` against ``baseline``; write and log the reports and metrics; return the metrics.

    Files go to ``<context.output_dir>/monitor/`` and to the MLflow artifact folder ``monitor/``:
    ``constraint_violations.json``, ``statistics.json``, ``score_histogram.png`` and
    ``scores.jsonl`` (every record with its score, file and line), per window (when there are several)
    ``windows/<hour or records a-b>/{constraint_violations,statistics}.json`` and, with
    ``task.save_embeddings``, ``embeddings.npy`` (for re-analysis without re-embedding).
    """
    import json
    import time

    from sagelab.tasks.drift.monitor import analyse, choose_threshold, statistics

    t = cfg.task
    threshold = choose_threshold(t.threshold, float(t.fpr), baseline)
    if threshold.note:
        print(f"monitor: warning: {threshold.note}")
    result = analyse(
        baseline,
        embeddings,
        threshold,
        alpha=float(t.alpha),
        window_size=int(t.window_size) if t.get("window_size") else None,
        hours=[r.inference_time for r in capture.records] if t.window == "hour" else None,
        n_permutations=int(t.n_permutations),
        max_reference=int(t.max_reference) if t.get("max_reference") else None,
        classifier_folds=int(t.classifier_folds),
        seed=int(cfg.seed),
    )
    extra = {
        "capture": {"source": str(t.capture), "files": capture.files, "lines_read": capture.lines_read},
        "bad_line_count": len(capture.bad_lines),
        "bad_lines": [b.as_dict() for b in capture.bad_lines],
        "baseline": {k: baseline.meta.get(k) for k in ("ref", "source", "pooling", "max_length", "encoder_checkpoint",
                                                       "reference_records", "calibration_records")}
        | {"model": (baseline.meta.get("model") or {}).get("name_or_path")},
        "mmd": {"kernel": "rbf", "bandwidth": "median pairwise distance (pooled)", "estimator": "unbiased",
                "n_permutations": int(t.n_permutations), "max_reference": t.get("max_reference")},
        "embed_sentences_per_s": embed_rate,
        "monitored_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    stats = statistics(result, baseline, extra)
    violations = violations_report(
        capture.records, result.scores, threshold, t.get("endpoint_name"), t.get("monitoring_schedule_name")
    )
    folder = context.output_dir / "monitor"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "constraint_violations.json").write_text(json.dumps(jsonable(violations), indent=2))
    if len(result.windows) > 1:  # one report per window too, as a monitoring schedule writes one per execution
        for w in result.windows:
            part = violations_report(capture.records[w.start : w.stop], result.scores[w.start : w.stop], threshold,
                                     t.get("endpoint_name"), t.get("monitoring_schedule_name"))
            window_folder = folder / "windows" / w.label.replace(" ", "_")
            window_folder.mkdir(parents=True, exist_ok=True)
            (window_folder / "constraint_violations.json").write_text(json.dumps(jsonable(part), indent=2))
            (window_folder / "statistics.json").write_text(json.dumps(jsonable(w.as_dict()), indent=2))
    (folder / "statistics.json").write_text(json.dumps(jsonable(stats), indent=2))
    with open(folder / "scores.jsonl", "w") as out:
        for record, score in zip(capture.records, result.scores):
            out.write(json.dumps({"text": record.text, "score": float(score), "file": record.file,
                                  "line": record.line, "item": record.item}) + "\n")
    if t.get("save_embeddings"):
        np.save(folder / "embeddings.npy", np.asarray(embeddings, dtype=np.float32))
    fig = score_histogram(baseline.calibration_scores, result.scores, threshold.value,
                          f"{Path(str(t.capture)).name} vs baseline")
    fig.savefig(folder / "score_histogram.png")
    context.tracker.log_artifact(folder, "monitor")

    whole = result.windows[0] if len(result.windows) == 1 else None
    metrics = {
        "drift/records": float(len(result.scores)),
        "drift/bad_lines": float(len(capture.bad_lines)),
        "drift/violations": float(stats["violation_count"]),
        "drift/violation_rate": stats["violation_rate"],
        "drift/threshold": threshold.value,  # dropped below when -inf (too few calibration records)
        "drift/mean_score": float(np.mean(result.scores)) if len(result.scores) else float("nan"),
        "drift/detected": float(result.drift),
        "drift/windows": float(len(result.windows)),
        "drift/windows_drifted": float(sum(w.drift for w in result.windows)),
        "drift/embed_sentences_per_s": embed_rate,
    }
    if result.windows:
        metrics["drift/min_p_value"] = min(w.p_value for w in result.windows)
        metrics["drift/max_classifier_auc"] = max(w.classifier_auc for w in result.windows)
    if whole is not None:
        metrics.update({"drift/mmd2": whole.mmd2, "drift/p_value": whole.p_value,
                        "drift/classifier_auc": whole.classifier_auc,
                        "drift/mean_embedding_distance": whole.mean_embedding_distance})
    metrics = {k: v for k, v in metrics.items() if np.isfinite(v)}
    context.tracker.log_metrics(metrics)
    for w in result.windows:  # one step per window: MLflow draws the trend inside the run
        window_metrics = {"window/p_value": w.p_value, "window/mmd2": w.mmd2, "window/classifier_auc": w.classifier_auc,
                          "window/violation_rate": w.violation_rate, "window/mean_score": w.mean_score}
        context.tracker.log_metrics({k: v for k, v in window_metrics.items() if np.isfinite(v)}, step=w.index)
    for w in result.windows if len(result.windows) > 1 else []:
        print(f"monitor: window {w.label}: {w.stop - w.start} records, MMD p={w.p_value:.4f}, "
              f"{w.violations} violation(s) -> {'DRIFT' if w.drift else 'no drift'}")
    print_skipped(capture.bad_lines, limit=20, rest=f"; all in {folder / 'statistics.json'}")
    verdict = "DRIFT" if result.drift else "no drift"
    print(f"monitor: {len(result.scores)} records ({len(capture.bad_lines)} bad lines skipped), "
          f"{stats['violation_count']} under threshold {threshold.value:.4f} ({threshold.method}); "
          f"{verdict} at alpha {t.alpha} in {metrics['drift/windows_drifted']:.0f}/{len(result.windows)} window(s); "
          f"reports in {folder}")
    return metrics
