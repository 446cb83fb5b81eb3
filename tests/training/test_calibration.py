"""Calibration fitted on validation, the cost rule of the policy, and the fraud-team metrics."""

import numpy as np
import pytest

from fraudops.models.calibration import Calibration
from fraudops.models.policy import DecisionPolicy
from fraudops.training.calibration import calibration_metrics, fit_calibration
from fraudops.training.config import CalibrationConfig, PolicyConfig
from fraudops.training.metrics import (
    MICROS_PER_DAY,
    precision_at_daily_capacity,
    value_detected_at_fp_ratio,
)
from fraudops.training.policy import fit_policy


def _overconfident(n=20_000, seed=0):
    """Labels drawn from true probabilities; the 'model' reports them pushed towards 1."""
    rng = np.random.default_rng(seed)
    truth = np.clip(rng.beta(0.3, 8.0, n), 1e-4, 1.0)
    labels = (rng.random(n) < truth).astype(int)
    raw = truth ** 0.5  # over-confident and monotone: calibration can fix it
    return labels, raw, truth


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_calibration_lowers_the_calibration_error_on_fresh_rows(method):
    labels, raw, _ = _overconfident(seed=1)
    calibration = fit_calibration(labels, raw, np.zeros_like(raw), CalibrationConfig(method=method))
    test_labels, test_raw, _ = _overconfident(seed=2)
    before = calibration_metrics(test_labels, test_raw)
    after = calibration_metrics(test_labels, calibration.apply(test_raw, np.zeros_like(test_raw)))
    assert after["calibration_error"] < before["calibration_error"] / 3
    assert after["brier"] < before["brier"]


def test_platt_keeps_the_ranking_and_round_trips_as_json():
    labels, raw, _ = _overconfident(seed=3)
    calibration = fit_calibration(labels, raw, np.zeros_like(raw), CalibrationConfig())
    calibrated = calibration.apply(raw, np.zeros_like(raw))
    assert np.array_equal(np.argsort(raw, kind="stable"), np.argsort(calibrated, kind="stable"))
    again = Calibration.from_dict(calibration.to_dict())
    assert np.array_equal(again.apply(raw, raw), calibration.apply(raw, raw))
    assert Calibration.from_dict(None).apply(raw, raw) is not None  # older checkpoints: raw


def test_the_combiner_uses_an_informative_anomaly_score():
    rng = np.random.default_rng(4)
    labels = (rng.random(20_000) < 0.05).astype(int)
    raw = np.clip(0.05 + 0.1 * labels + rng.normal(0, 0.05, labels.size), 0.001, 0.999)
    anomaly = 2.0 * labels + rng.normal(0, 1, labels.size)
    combiner = fit_calibration(labels, raw, anomaly, CalibrationConfig(use_anomaly=True))
    assert combiner.uses_anomaly and combiner.weights[1] > 0.5


def test_cost_rule_reviews_where_expected_loss_beats_the_review_cost():
    policy = DecisionPolicy(review_probability=0.9, block_probability=0.95,
                            review_expected_loss=20.0)
    p = np.array([0.1, 0.1, 0.5])
    amounts = np.array([100.0, 500.0, 10.0])  # expected losses 10, 50, 5
    assert policy.decide(p, np.zeros(3), amounts).tolist() == ["approve", "review", "approve"]
    assert policy.decide(p, np.zeros(3)).tolist() == ["approve"] * 3  # no amounts: no rule
    assert DecisionPolicy.from_dict(policy.to_dict()) == policy


def test_capacity_raises_the_cost_threshold_to_the_daily_budget():
    rng = np.random.default_rng(5)
    n, days = 10_000, 10
    stamps = np.sort(rng.integers(0, days * MICROS_PER_DAY, n))
    p, amounts = rng.random(n) * 0.1, rng.lognormal(4, 1, n)
    labels = (rng.random(n) < p).astype(int)
    config = PolicyConfig(review_cost=1.0, daily_review_capacity=30)
    policy = fit_policy(labels, p, np.zeros(n), config, amounts, stamps)
    flagged = (p * amounts >= policy.review_expected_loss).sum()
    assert policy.review_expected_loss > 1.0
    assert 0.9 * 30 * days <= flagged <= 30 * days


def test_value_detected_at_a_false_positive_ratio():
    labels = np.array([1, 0, 1, 0, 0, 1])
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.1])
    amounts = np.array([100.0, 1.0, 50.0, 1.0, 1.0, 850.0])
    # top 3: 2 fraud, 1 legit (ratio 0.5) -> 150 of 1000; going on to the last fraud costs 3 legit
    assert value_detected_at_fp_ratio(labels, scores, amounts, 0.5) == pytest.approx(0.15)
    assert value_detected_at_fp_ratio(labels, scores, amounts, 1.0) == pytest.approx(1.0)
    assert value_detected_at_fp_ratio(labels, scores, amounts, 0.0) == pytest.approx(0.1)


def test_precision_at_daily_capacity_takes_each_days_top_rows():
    day = MICROS_PER_DAY
    stamps = np.array([0, 1, 2, day, day + 1, day + 2])
    scores = np.array([0.9, 0.8, 0.1, 0.7, 0.2, 0.6])
    labels = np.array([1, 0, 1, 1, 0, 0])
    assert precision_at_daily_capacity(labels, scores, stamps, 1) == pytest.approx(1.0)
    assert precision_at_daily_capacity(labels, scores, stamps, 2) == pytest.approx(0.5)
