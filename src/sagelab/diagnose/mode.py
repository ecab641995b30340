"""``mode=diagnose`` itself: a task's :class:`~sagelab.diagnose.DiagnoseInputs` in, the report out.

Writes ``<output_dir>/diagnose/`` (``report.json``, ``report.html``, the PNG figures, ``duplicates.jsonl``),
logs that folder as the run's ``diagnose/`` artifacts and returns the headline numbers as ``diagnose/*``
metrics; the runner logs them like any mode's. The thresholds and bands are computed on the evaluation set
itself, so they describe it; on a small set, read them with the AUC's interval in mind.
"""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from sagelab.context import TaskContext
    from sagelab.diagnose import DiagnoseInputs


def run_diagnose(context: TaskContext, task_name: str, scored: Callable[[], DiagnoseInputs]) -> dict[str, float]:
    """``scored()`` is the task's hook: it loads the model and scores the evaluation set (timed as ``scoring``)."""
    import numpy as np

    from sagelab.diagnose import metrics, plots, report
    from sagelab.diagnose.datachecks import data_checks

    cfg = context.cfg.diagnose
    out = context.output_dir / "diagnose"
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        timings[name] = round(time.perf_counter() - clock, 3)
        clock = time.perf_counter()
        print(f"diagnose: {name} done in {timings[name]:.1f} s", file=sys.stderr, flush=True)

    inputs = scored()
    present = sorted({int(label) for label in inputs.labels})
    if present != [0, 1]:
        from sagelab.config import ConfigError

        raise ConfigError("mode", f"diagnose needs labels 0 and 1 in the evaluation set; its {len(inputs.labels)} "
                          f"example(s) have {present} (a small data.eval_limit?).")
    y, s = metrics.as_arrays(inputs.labels, inputs.scores)
    lap("scoring")

    prevalence = cfg.get("prevalence")
    auc = metrics.auc_interval(y, s, int(cfg.bootstrap), int(cfg.bootstrap_seed), float(cfg.confidence))
    table = metrics.pick_thresholds(y, s, float(cfg.target_tpr), float(cfg.max_fpr),
                                    [float(t) for t in cfg.thresholds], prevalence)
    band_rows = metrics.bands(y, s, dict(cfg.bands), table, prevalence)
    calibration = metrics.calibration(y, s, int(cfg.calibration_bins))
    curves = metrics.curves(y, s)
    warnings = metrics.score_warnings(auc, s, auc_high=float(cfg.auc_high), auc_low=float(cfg.auc_low),
                                      middle=list(cfg.middle), middle_share=float(cfg.middle_share),
                                      at_target=table["target_tpr"])
    lap("metrics")
    data = None
    if len(inputs.train_texts):
        data = data_checks(list(inputs.train_texts), list(inputs.train_labels), list(inputs.texts), list(y), cfg)
        warnings += data["warnings"]
        lap("data_checks")
    attribution = _attribution(inputs, y, s, cfg) if inputs.attribute and int(cfg.attribution_examples) else None
    if attribution:
        lap("attribution")
    importance = None
    if inputs.permuted is not None and len(inputs.features) and int(cfg.permutation_repeats):
        from sagelab.diagnose.importance import permutation_importance

        importance = permutation_importance(y, auc["auc"], list(inputs.features), inputs.permuted,
                                            int(cfg.permutation_repeats), int(cfg.bootstrap_seed))
        lap("importance")

    figures = {"score_histogram": plots.score_histogram(y, s, table, inputs.positive),
               "roc": plots.roc(curves, auc, table), "precision_recall": plots.precision_recall(curves, table),
               "reliability": plots.reliability(calibration), "bands": plots.bands(band_rows)}
    if attribution:
        figures["attribution"] = plots.attributions(attribution["top"])
    if importance:
        figures["importance"] = plots.importance(importance)
    paths = {}
    for name, fig in figures.items():
        paths[name] = out / f"{name}.png"
        plots.save(fig, paths[name])
    lap("figures")

    files = {"json": str(out / "report.json"), "html": str(out / "report.html")}
    result = {"task": task_name, "run_id": context.run_id, "examples": int(len(y)), "positive": inputs.positive,
              "source": dict(inputs.source), "auc": auc, "thresholds": table, "bands": band_rows,
              "calibration": calibration, "curves": {"average_precision": curves["average_precision"]},
              "score_quantiles": dict(zip(("p01", "p10", "p50", "p90", "p99"),
                                          np.quantile(s, [0.01, 0.1, 0.5, 0.9, 0.99]).tolist())),
              "middle_share": float(np.mean((s >= float(cfg.middle[0])) & (s <= float(cfg.middle[1])))),
              "warnings": warnings, "data": data, "attribution": attribution, "importance": importance,
              "config": _config(cfg),
              "timings_s": timings, "files": files}
    report.write_json(result, out / "report.json")
    report.write_html(result, paths, out / "report.html")
    if data:
        with open(out / "duplicates.jsonl", "w") as f:
            for row in [*data["exact_duplicates"], *data["near_duplicates"]["pairs"]]:
                f.write(json.dumps(report.plain(row), ensure_ascii=False) + "\n")
    for path in sorted(out.iterdir()):
        context.tracker.log_artifact(path, "diagnose")
    print(report.summary(result))
    return _metrics(result)


def _attribution(inputs: DiagnoseInputs, y: Any, s: Any, cfg: Any) -> dict[str, Any]:
    """Integrated gradients over a seeded sample of evaluation examples; the largest errors are shown."""
    import numpy as np

    from sagelab.diagnose.attribution import top_words

    n = min(len(y), int(cfg.attribution_examples))
    picked = np.sort(np.random.default_rng(int(cfg.bootstrap_seed)).choice(len(y), n, replace=False)).tolist()
    words = inputs.attribute(picked)
    errors = sorted(range(n), key=lambda i: -abs(float(s[picked[i]]) - float(y[picked[i]])))
    shown = [{"eval_index": picked[i], "label": int(y[picked[i]]), "score": float(s[picked[i]]),
              "words": [[w, float(a)] for w, a in words[i]]} for i in errors[:int(cfg.attribution_shown)]]
    return {"method": "integrated_gradients", "examples": n, "steps": int(cfg.attribution_steps),
            "top": top_words(words, int(cfg.top_k)), "shown": shown}


def _config(cfg: Any) -> dict[str, Any]:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=True)


def _metrics(result: dict[str, Any]) -> dict[str, float]:
    """The headline numbers as ``diagnose/*`` metrics (an infinite threshold -- nothing flagged -- is left out)."""
    import math

    rows = result["thresholds"]
    values = {"diagnose/auc": result["auc"]["auc"], "diagnose/auc_low": result["auc"]["low"],
              "diagnose/auc_high": result["auc"]["high"], "diagnose/ece": result["calibration"]["ece"],
              "diagnose/average_precision": result["curves"]["average_precision"],
              "diagnose/warnings": float(len(result["warnings"]))}
    for name in ("target_tpr", "max_fpr"):
        values.update({f"diagnose/{name}/threshold": rows[name]["threshold"], f"diagnose/{name}/tpr": rows[name]["tpr"],
                       f"diagnose/{name}/fpr": rows[name]["fpr"]})
    if result["data"]:
        values["diagnose/exact_duplicates"] = float(len(result["data"]["exact_duplicates"]))
        values["diagnose/near_duplicates"] = float(len(result["data"]["near_duplicates"]["pairs"]))
    for row in (result["importance"] or {}).get("rows", []):
        values[f"diagnose/importance/{_metric_name(row['feature'])}"] = row["mean_drop"]
    return {k: float(v) for k, v in values.items() if isinstance(v, (int, float)) and math.isfinite(v)}


def _metric_name(feature: str) -> str:
    """A feature name as MLflow accepts it in a metric key (letters, digits, ``_-. /``)."""
    import re

    return re.sub(r"[^A-Za-z0-9_\-. ]", "_", feature) or "_"
