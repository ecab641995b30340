"""Drift statistics on small arrays: scores, calibration, MMD permutation test, classifier, windows."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sagelab.tasks.drift.baseline import Baseline, summary
from sagelab.tasks.drift.calibration import calibrate_threshold, fixed_threshold, violation_rate
from sagelab.tasks.drift.classifier import domain_classifier_auc
from sagelab.tasks.drift.mmd import mmd_test
from sagelab.tasks.drift.monitor import analyse, choose_threshold, hour_bounds, statistics, window_bounds
from sagelab.tasks.drift.scoring import cosine_scores, seed_cosine_scores, unit_mean


def _mmd2_naive(x: np.ndarray, y: np.ndarray, sigma: float) -> float:
    def k(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.exp(-np.sum((a - b) ** 2) / (2 * sigma * sigma)))

    n, m = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return xx + yy - 2 * xy


# -- per-record scores ----------------------------------------------------------------------------
def test_unit_mean_scores_equal_the_seed_loop() -> None:
    rng = np.random.default_rng(0)
    baseline = rng.normal(size=(300, 24)) * rng.uniform(0.1, 5.0, size=(300, 1)) + 0.3
    queries = rng.normal(size=(40, 24)) * 3.0
    fast = cosine_scores(queries, unit_mean(baseline))
    slow = seed_cosine_scores(queries, baseline)
    assert fast.shape == (40,)
    assert np.max(np.abs(fast - slow)) <= 1e-6


def test_scores_ignore_vector_length_and_rank_by_direction() -> None:
    base = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]])
    mu = unit_mean(base)
    scores = cosine_scores(np.array([[5.0, 0.0], [0.0, 0.5], [-1.0, 0.0]]), mu)
    np.testing.assert_allclose(scores, [2 / 3, 1 / 3, -2 / 3])


def test_dimension_mismatch_names_the_cause() -> None:
    with pytest.raises(ValueError, match="same model and pooling"):
        cosine_scores(np.ones((2, 3)), np.ones(4))


# -- calibration ----------------------------------------------------------------------------------
def test_calibrated_threshold_is_the_conformal_order_statistic() -> None:
    scores = np.arange(1, 100) / 100.0  # 99 distinct scores 0.01..0.99
    t = calibrate_threshold(scores, fpr=0.05)
    assert t.calibration_rank == 5  # floor(0.05 * 100)
    assert t.value == pytest.approx(0.05)
    assert t.calibration_fpr == pytest.approx(4 / 99)
    assert t.method == "calibrated" and t.target_fpr == 0.05


def test_calibrated_threshold_holds_its_false_positive_rate_on_fresh_data() -> None:
    rng = np.random.default_rng(1)
    rates = []
    for _ in range(200):
        t = calibrate_threshold(rng.normal(size=400), fpr=0.05)
        rates.append(violation_rate(rng.normal(size=2000), t.value))
    assert 0.035 < np.mean(rates) <= 0.055


def test_too_few_records_for_the_rate_flags_nothing() -> None:
    t = calibrate_threshold(np.array([0.2, 0.4, 0.6]), fpr=0.01)
    assert t.value == -math.inf and t.calibration_rank == 0
    with pytest.raises(ValueError, match="fpr"):
        calibrate_threshold(np.array([0.1]), fpr=1.5)


def test_choose_threshold_auto_or_fixed() -> None:
    base = Baseline(np.eye(3), calibration_scores=np.linspace(0, 1, 199))
    assert choose_threshold(0.5, 0.01, base) == fixed_threshold(0.5)
    assert choose_threshold("auto", 0.01, base).calibration_rank == 2


# -- MMD ------------------------------------------------------------------------------------------
def test_mmd2_matches_the_textbook_estimator() -> None:
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(12, 3)), rng.normal(loc=0.5, size=(9, 3))
    res = mmd_test(x, y, n_permutations=10, sigma=1.3)
    assert res.mmd2 == pytest.approx(_mmd2_naive(x, y, 1.3), abs=1e-12)


def test_mmd_median_heuristic_uses_pooled_median_distance() -> None:
    x = np.array([[0.0], [1.0]])
    y = np.array([[3.0], [7.0]])
    # pooled distances: 1, 3, 7, 2, 6, 4 -> median 3.5
    assert mmd_test(x, y, n_permutations=5).sigma == pytest.approx(3.5)


def test_mmd_permutation_p_value_is_calibrated_under_no_drift() -> None:
    rng = np.random.default_rng(3)
    pvals = [mmd_test(rng.normal(size=(40, 5)), rng.normal(size=(30, 5)), 99, seed=s).p_value for s in range(60)]
    # valid test: about alpha of the p-values fall below alpha, none is 0
    assert 0.0 < min(pvals) and np.mean(np.array(pvals) < 0.1) <= 0.2
    assert 0.3 < np.mean(pvals) < 0.7


def test_mmd_detects_a_shift() -> None:
    rng = np.random.default_rng(4)
    res = mmd_test(rng.normal(size=(60, 8)), rng.normal(loc=0.6, size=(50, 8)), n_permutations=199)
    assert res.p_value == pytest.approx(1 / 200)
    assert res.mmd2 > 0


def test_mmd_rejects_too_small_samples() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        mmd_test(np.ones((5, 2)), np.ones((1, 2)))


# -- domain classifier ----------------------------------------------------------------------------
def test_domain_classifier_auc_near_half_without_drift_and_high_with_drift() -> None:
    rng = np.random.default_rng(5)
    ref = rng.normal(size=(200, 10))
    same = domain_classifier_auc(ref, rng.normal(size=(100, 10)))
    shifted = domain_classifier_auc(ref, rng.normal(loc=0.8, size=(100, 10)))
    assert 0.35 < same < 0.65
    assert shifted > 0.9
    assert math.isnan(domain_classifier_auc(ref, rng.normal(size=(1, 10))))


# -- windows and the whole analysis ---------------------------------------------------------------
def test_window_bounds_cover_every_record_once() -> None:
    assert window_bounds(10, None) == [(0, 10)]
    assert window_bounds(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert window_bounds(9, 4) == [(0, 4), (4, 9)]  # a 1-record tail joins the previous window
    assert window_bounds(0, 4) == []


def test_analyse_flags_shifted_window_and_low_scoring_records() -> None:
    rng = np.random.default_rng(6)
    direction = np.zeros(16)
    direction[0] = 3.0
    base_emb = rng.normal(size=(150, 16)) + direction
    calib = cosine_scores(rng.normal(size=(100, 16)) + direction, unit_mean(base_emb))
    baseline = Baseline(base_emb, calib)
    same = rng.normal(size=(60, 16)) + direction
    moved = rng.normal(size=(60, 16)) - direction
    threshold = choose_threshold("auto", 0.05, baseline)
    res = analyse(baseline, np.vstack([same, moved]), threshold, alpha=0.01, window_size=60, n_permutations=199)
    first, second = res.windows
    assert (first.start, first.stop, second.start, second.stop) == (0, 60, 60, 120)
    assert not first.drift and second.drift and res.drift
    assert first.violation_rate <= 0.15 and second.violation_rate > 0.9
    assert second.classifier_auc > 0.9 > first.classifier_auc
    assert summary(res.scores)["count"] == 120


def test_hour_windows_follow_the_inference_time() -> None:
    times = ["2026-01-05T10:00:01Z", "2026-01-05T10:59:59Z", "2026-01-05T11:00:00Z", None, None]
    assert hour_bounds(times) == [(0, 2, "2026-01-05T10"), (2, 3, "2026-01-05T11"), (3, 5, "unknown")]

    rng = np.random.default_rng(7)
    direction = np.zeros(16)
    direction[0] = 3.0
    base_emb = rng.normal(size=(150, 16)) + direction
    baseline = Baseline(base_emb, cosine_scores(rng.normal(size=(100, 16)) + direction, unit_mean(base_emb)))
    embeddings = np.vstack([rng.normal(size=(50, 16)) + direction, rng.normal(size=(70, 16)) - direction])
    hours = ["2026-01-05T10:30:00Z"] * 50 + ["2026-01-05T11:30:00Z"] * 70
    res = analyse(baseline, embeddings, choose_threshold("auto", 0.05, baseline), alpha=0.01, window_size=None,
                  hours=hours, n_permutations=199)
    assert [(w.label, w.start, w.stop, w.drift) for w in res.windows] == [
        ("2026-01-05T10", 0, 50, False), ("2026-01-05T11", 50, 120, True)]


def test_analyse_with_no_good_records_still_reports() -> None:
    baseline = Baseline(np.eye(4), calibration_scores=np.linspace(0, 1, 200))
    res = analyse(baseline, np.zeros((0, 4)), choose_threshold("auto", 0.01, baseline))
    stats = statistics(res, baseline, {"bad_line_count": 3})
    assert res.windows == [] and not res.drift
    assert stats["record_count"] == 0 and stats["violation_count"] == 0 and stats["bad_line_count"] == 3
