"""NLP data-drift monitoring: embeddings, per-record scores, calibrated thresholds, MMD and reports.

Modules (numpy-only unless noted, so they import fast):

* :mod:`~sagelab.monitoring.embedding`   -- pooling and batched embedding (torch, transformers);
* :mod:`~sagelab.monitoring.scoring`     -- average cosine similarity via the mean of unit vectors;
* :mod:`~sagelab.monitoring.calibration` -- threshold with a target false-positive rate;
* :mod:`~sagelab.monitoring.mmd`         -- MMD^2 (RBF, median heuristic) with a permutation p-value;
* :mod:`~sagelab.monitoring.classifier`  -- domain-classifier AUC (scikit-learn);
* :mod:`~sagelab.monitoring.baseline`    -- the saved baseline artifact set;
* :mod:`~sagelab.monitoring.monitor`     -- per-record and per-window analysis;
* :mod:`~sagelab.monitoring.reports`     -- constraint_violations.json, statistics, histogram (matplotlib).
"""
