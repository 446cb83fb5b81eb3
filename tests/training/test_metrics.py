import numpy as np
import pytest

from fraudops.training import metrics
from fraudops.training.exceptions import TrainingDataError


def test_perfect_ranking():
    labels = np.array([0, 0, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.8, 0.9])
    assert metrics.auprc(labels, scores) == 1.0
    assert metrics.roc_auc(labels, scores) == 1.0
    assert metrics.precision_at_k(labels, scores, 2) == 1.0


def test_recall_at_fpr_by_hand():
    # 10 legit rows with scores 0..9, fraud at 5.5 and 9.5. At 10% FPR one legit row (9) may
    # be flagged: the threshold lies just above 8, so only the fraud at 9.5 is caught.
    labels = np.array([0] * 10 + [1, 1])
    scores = np.array(list(range(10)) + [5.5, 9.5], dtype=float)
    assert metrics.recall_at_fpr(labels, scores, 0.10) == 0.5
    assert 8.0 < metrics.threshold_at_fpr(labels, scores, 0.10) <= 9.0
    # At 50% FPR five legit rows (5..9) may be flagged: both fraud rows are caught.
    assert metrics.recall_at_fpr(labels, scores, 0.50) == 1.0


def test_precision_at_k_by_hand():
    labels = np.array([1, 0, 1, 0])
    scores = np.array([0.9, 0.8, 0.7, 0.1])
    assert metrics.precision_at_k(labels, scores, 2) == 0.5
    assert metrics.precision_at_k(labels, scores, 3) == pytest.approx(2 / 3)


def test_amount_weighted_catch():
    labels = np.array([1, 1, 0])
    flagged = np.array([True, False, True])
    amounts = np.array([90.0, 10.0, 1000.0])
    assert metrics.amount_caught(labels, flagged, amounts) == 0.9


def test_recall_by_scenario():
    labels = np.array([1, 1, 1, 0])
    flagged = np.array([True, False, True, True])
    scenarios = np.array(["ato", "ato", "card_testing", None], dtype=object)
    assert metrics.recall_by_scenario(labels, flagged, scenarios) == {"ato": 0.5,
                                                                      "card_testing": 1.0}


def test_one_class_gives_nan_not_crash():
    assert np.isnan(metrics.auprc(np.zeros(4), np.arange(4.0)))
    assert np.isnan(metrics.recall_at_fpr(np.zeros(4), np.arange(4.0), 0.01))


def test_unlabelled_rows_are_rejected():
    with pytest.raises(TrainingDataError, match="0/1"):
        metrics.auprc(np.array([0, 1, -1]), np.array([0.1, 0.2, 0.3]))


def test_decision_metrics():
    labels = np.array([1, 1, 0, 0])
    decisions = np.array(["block", "approve", "review", "approve"])
    out = metrics.decision_metrics(labels, decisions, amounts=np.array([5.0, 5.0, 1.0, 1.0]))
    assert out["flagged_recall"] == 0.5 and out["flagged_fpr"] == 0.5
    assert out["block_precision"] == 1.0 and out["amount_blocked"] == 0.5
