"""The retraining policy as a pure function (no services)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from monitoring.policy import PastDecision, WindowSignal, decide
from monitoring.settings import RetrainPolicySettings

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
POLICY = RetrainPolicySettings(drift_share_threshold=0.3, consecutive_windows=2,
                               cooldown=timedelta(hours=6), max_per_day=2,
                               max_quality_drop=0.2)


def past(hours_ago: float, window: str, drifted: bool, triggered: bool = False) -> PastDecision:
    return PastDecision(NOW - timedelta(hours=hours_ago), window, drifted, triggered)


def signal(share: float, window: str = "w9", **quality) -> WindowSignal:
    return WindowSignal(window_end=window, drift_share=share, **quality)


def test_no_drift_holds():
    decision = decide(signal(0.1), [], NOW, POLICY)
    assert (decision.decision, decision.reason, decision.drifted) == ("hold", "no_drift", False)


def test_one_drifted_window_waits_for_confirmation():
    decision = decide(signal(0.5), [past(1, "w1", drifted=False)], NOW, POLICY)
    assert decision.reason == "awaiting_confirmation" and decision.consecutive == 1
    assert "1 of 2" in decision.detail


def test_two_drifted_windows_in_a_row_trigger():
    decision = decide(signal(0.5), [past(1, "w1", drifted=True)], NOW, POLICY)
    assert (decision.decision, decision.reason, decision.consecutive) == ("trigger", "drift", 2)


def test_a_clean_window_breaks_the_streak():
    history = [past(2, "w1", drifted=True), past(1, "w2", drifted=False)]
    assert decide(signal(0.5), history, NOW, POLICY).reason == "awaiting_confirmation"


def test_checks_of_the_same_window_count_once():
    history = [past(2, "w9", drifted=True), past(1, "w9", drifted=True)]
    decision = decide(signal(0.5, "w9"), history, NOW, POLICY)
    assert decision.consecutive == 1 and decision.decision == "hold"


def test_the_streak_restarts_after_a_run():
    history = [past(30, "w1", drifted=True), past(29, "w2", drifted=True, triggered=True)]
    assert decide(signal(0.5), history, NOW, POLICY).consecutive == 1


def test_cooldown_holds_a_confirmed_drift():
    history = [past(3, "w1", drifted=True, triggered=True), past(1, "w2", drifted=True)]
    decision = decide(signal(0.5), history, NOW, POLICY)
    assert (decision.decision, decision.reason) == ("hold", "cooldown")


def test_at_most_max_per_day_runs():
    policy = POLICY.model_copy(update={"cooldown": timedelta(0)})
    history = [past(20, "w1", True, triggered=True), past(10, "w2", True, triggered=True),
               past(1, "w3", drifted=True)]
    decision = decide(signal(0.5), history, NOW, policy)
    assert (decision.decision, decision.reason) == ("hold", "max_frequency")
    older = [past(30, "w1", True, triggered=True), past(10, "w2", True, triggered=True),
             past(1, "w3", drifted=True)]
    assert decide(signal(0.5), older, NOW, policy).decision == "trigger"


@pytest.mark.parametrize(("current", "expected"), [(0.5, "quality"), (0.7, "no_drift")])
def test_quality_drop_triggers_without_feature_drift(current, expected):
    decision = decide(signal(0.0, quality_current=current, quality_reference=0.8), [], NOW,
                      POLICY)
    assert decision.reason == expected
    assert decision.quality_degraded == (expected == "quality")
    below = f"{(0.8 - current) / 0.8:.0%} below the reference"
    assert below in decision.detail


def test_drift_and_quality_together():
    decision = decide(signal(0.5, quality_current=0.2, quality_reference=0.8),
                      [past(1, "w1", drifted=True)], NOW, POLICY)
    assert decision.reason == "drift_and_quality"


def test_score_drift_counts_only_when_enabled():
    drifted = WindowSignal("w9", 0.0, score_drifted=True)
    assert decide(drifted, [], NOW, POLICY).reason == "no_drift"
    policy = POLICY.model_copy(update={"score_drift_triggers": True, "consecutive_windows": 1})
    assert decide(drifted, [], NOW, policy).decision == "trigger"


def test_default_quality_metric_sees_a_hidden_fraud_pattern_that_auprc_misses():
    """More fraud in a window lifts AUPRC even when the model misses a new pattern; the default
    quality metric (recall at a fixed FPR) must fall instead."""
    import numpy as np

    from fraudops.training.metrics import score_metrics

    rng = np.random.default_rng(3)
    legit = rng.uniform(0.0, 0.5, 4000)
    reference = (np.r_[np.zeros(4000), np.ones(40)], np.r_[legit, rng.uniform(0.9, 1.0, 40)])
    # Current: fifty times the fraud; half of it a new pattern that scores like busy legit traffic.
    caught, hidden = rng.uniform(0.9, 1.0, 1000), rng.uniform(0.47, 0.5, 1000)
    current = (np.r_[np.zeros(4000), np.ones(2000)], np.r_[legit, caught, hidden])
    ref, cur = score_metrics(*reference), score_metrics(*current)
    policy = RetrainPolicySettings()

    def drop(metric: str) -> float:
        return WindowSignal("w", 0.0, quality_current=cur[metric],
                            quality_reference=ref[metric]).quality_drop()

    assert drop("auprc") < policy.max_quality_drop  # AUPRC would not call this a drop...
    assert drop(policy.quality_metric) > policy.max_quality_drop  # ...the default metric does


def test_new_regime_wait_holds_until_the_windows_move_past_the_first_alarm():
    wait = POLICY.model_copy(update={"new_regime_wait": timedelta(days=2), "consecutive_windows": 1})
    day = [f"2026-02-{d:02d}T00:00:00+00:00" for d in range(1, 10)]
    # First alarm (a quality drop, not drift) in the window ending on day 3.
    history = [past(5, day[1], drifted=False),
               PastDecision(NOW - timedelta(hours=4), day[2], False, False, degraded=True)]
    waiting = decide(signal(0.5, day[3]), history, NOW, wait)
    assert (waiting.decision, waiting.reason) == ("hold", "awaiting_data")
    assert day[2] in waiting.detail and "1 day" in waiting.detail
    history.append(past(3, day[3], drifted=True))
    assert decide(signal(0.5, day[4]), history, NOW, wait).decision == "trigger"
    # A clean window in between restarts the wait from the next alarm.
    history.append(past(2, day[4], drifted=False))
    assert decide(signal(0.5, day[5]), history, NOW, wait).reason == "awaiting_data"
    # Without a wait the same first alarm triggers at once.
    assert decide(signal(0.5, day[5]), history, NOW, POLICY.model_copy(
        update={"consecutive_windows": 1})).decision == "trigger"
