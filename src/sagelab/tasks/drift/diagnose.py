"""Drift's side of ``mode=diagnose``: the domain classifier read as a binary classifier.

A logistic regression separates the baseline's reference embeddings (label 0; at most ``task.max_reference``,
the sample ``mode=monitor`` compares against) from the whole of ``task.capture`` embedded with the baseline's
model (label 1); every record is scored out of fold (``task.classifier_folds``), as the monitor's
``classifier_auc`` is per window. Its probability of "captured" is the score: an AUC near 0.5 says the traffic
looks like the baseline, and the thresholds and bands say how many records one could route aside as
out-of-distribution at a given false-positive rate on baseline text. Baseline texts are not kept with a
baseline (only embeddings), so they appear as ``baseline #i``; there is no training set to check.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from sagelab.context import TaskContext
    from sagelab.diagnose import DiagnoseInputs
    from sagelab.tasks.drift.task import DriftTask


def diagnose_inputs(task: DriftTask, context: TaskContext) -> DiagnoseInputs:
    from sagelab.config import ConfigError
    from sagelab.diagnose import DiagnoseInputs
    from sagelab.tasks.drift.classifier import domain_classifier_scores
    from sagelab.tasks.drift.monitor import reference_sample

    cfg, t = context.cfg, context.cfg.task
    baseline, capture, emb, _ = task.embedded_capture(context)
    reference = reference_sample(np.asarray(baseline.embeddings, dtype=np.float64), t.get("max_reference"),
                                 int(cfg.seed))
    scored = domain_classifier_scores(reference, np.asarray(emb, dtype=np.float64), int(t.classifier_folds),
                                      int(cfg.seed))
    if scored is None:
        raise ConfigError("task.capture", f"has {len(emb)} record(s); the domain classifier needs at least 2.")
    labels, decision = scored
    return DiagnoseInputs(
        scores=(1.0 / (1.0 + np.exp(-decision))).tolist(), labels=labels.astype(int).tolist(),
        texts=[f"baseline #{i}" for i in range(len(reference))] + list(capture.texts),
        positive="captured (not baseline)",
        source={"eval": f"{len(reference)} baseline reference embeddings ({baseline.meta.get('ref')}) and "
                        f"{len(emb)} captured records ({t.capture}), scored out of fold"},
    )
