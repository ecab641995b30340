"""Domain classifier: can a linear model tell the monitored window from the baseline?

Evidently's default embedding-drift method. A logistic regression is trained to
separate reference embeddings (label 0) from the current window (label 1); its
ROC AUC on out-of-fold predictions (stratified k-fold, so every record is
scored by a model that never saw it) is ~0.5 without drift and approaches 1.0
as the window moves away. The AUC is reported beside the MMD p-value; the drift
decision itself is the calibrated MMD test.
"""

from __future__ import annotations

import numpy as np

from sagelab.tasks.drift.scoring import as_matrix


def domain_classifier_auc(
    reference: np.ndarray, current: np.ndarray, folds: int = 5, seed: int = 0
) -> float:
    """Out-of-fold ROC AUC of a logistic regression separating ``current`` from ``reference``.

    ``folds`` is reduced to the size of the smaller sample when that is smaller;
    with fewer than 2 records on a side the AUC is undefined and ``nan`` is returned.
    """
    from sklearn.metrics import roc_auc_score

    scored = domain_classifier_scores(reference, current, folds, seed)
    return float("nan") if scored is None else float(roc_auc_score(*scored))


def domain_classifier_scores(
    reference: np.ndarray, current: np.ndarray, folds: int = 5, seed: int = 0
) -> tuple[np.ndarray, np.ndarray] | None:
    """(labels, out-of-fold decision values): reference rows are 0, current rows 1, in that order; None with
    fewer than 2 records on a side. ``mode=diagnose`` reads these as the classifier's scores."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = as_matrix(reference, "reference")
    y = as_matrix(current, "current")
    k = min(folds, x.shape[0], y.shape[0])
    if k < 2:
        return None
    features = np.vstack([x, y])
    labels = np.concatenate([np.zeros(len(x)), np.ones(len(y))])
    scores = np.zeros(len(labels))
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    for train_idx, test_idx in splitter.split(features, labels):
        model = make_pipeline(
            StandardScaler(),
            # balanced weights: the reference is usually much larger than the window
            LogisticRegression(C=1.0, max_iter=1000, class_weight="balanced"),
        )
        model.fit(features[train_idx], labels[train_idx])
        scores[test_idx] = model.decision_function(features[test_idx])
    return labels, scores
