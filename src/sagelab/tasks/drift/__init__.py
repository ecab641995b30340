"""NLP data drift, one task family: ``python run.py task=drift mode=baseline|monitor|report``.

Modules (numpy-only unless noted, so they import fast; nothing here is imported at package import):

* :mod:`~sagelab.tasks.drift.task`        -- :class:`DriftTask` and its config schema (no numpy, no torch);
* :mod:`~sagelab.tasks.drift.sources`     -- where baseline and monitored text comes from;
* :mod:`~sagelab.tasks.drift.embedding`   -- pooling and batched embedding (torch, transformers);
* :mod:`~sagelab.tasks.drift.scoring`     -- average cosine similarity via the mean of unit vectors;
* :mod:`~sagelab.tasks.drift.calibration` -- threshold with a target false-positive rate;
* :mod:`~sagelab.tasks.drift.mmd`         -- MMD^2 (RBF, median heuristic) with a permutation p-value;
* :mod:`~sagelab.tasks.drift.classifier`  -- domain-classifier AUC (scikit-learn);
* :mod:`~sagelab.tasks.drift.baseline`    -- the saved baseline artifact set, built and found;
* :mod:`~sagelab.tasks.drift.monitor`     -- per-record and per-window analysis;
* :mod:`~sagelab.tasks.drift.reports`     -- constraint_violations.json, statistics, histogram (matplotlib).
"""
