import numpy as np

from fraudops.training.config import PolicyConfig
from fraudops.training.policy import fit_policy


def test_policy_meets_false_positive_budgets_on_validation():
    rng = np.random.default_rng(0)
    labels = np.r_[np.zeros(5000, int), np.ones(100, int)]
    probability = np.r_[rng.beta(1, 20, 5000), rng.beta(8, 2, 100)]
    anomaly = np.r_[rng.normal(0, 1, 5000), rng.normal(3, 1, 100)]
    config = PolicyConfig(review_fpr=0.02, block_fpr=0.002, anomaly_fpr=0.01)
    policy = fit_policy(labels, probability, anomaly, config)
    decisions = policy.decide(probability, anomaly)
    legit = labels == 0
    assert np.mean(decisions[legit] == "block") <= 0.002
    assert np.mean(decisions[legit] != "approve") <= 0.02 + 0.01
    assert policy.block_probability >= policy.review_probability
    assert np.mean(decisions[~legit] != "approve") > 0.8  # and still catches fraud
