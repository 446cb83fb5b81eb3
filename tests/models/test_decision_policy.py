import numpy as np
import pytest

from fraudops.models import DecisionPolicy


def test_decisions_follow_thresholds():
    policy = DecisionPolicy(block_probability=0.9, review_probability=0.5, review_anomaly=3.0)
    p = np.array([0.1, 0.6, 0.95, 0.1, 0.95])
    a = np.array([0.0, 0.0, 0.0, 4.0, 9.0])
    assert policy.decide(p, a).tolist() == ["approve", "review", "block", "review", "block"]


def test_round_trip_through_dict_keeps_infinite_anomaly_threshold():
    policy = DecisionPolicy(0.8, 0.3, fitted={"target_fpr": 0.01})
    data = policy.to_dict()
    assert data["review_anomaly"] is None  # JSON-safe
    assert DecisionPolicy.from_dict(data) == policy


def test_review_above_block_is_rejected():
    with pytest.raises(ValueError):
        DecisionPolicy(block_probability=0.2, review_probability=0.5)
