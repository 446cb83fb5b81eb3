import math

from fraudops.training.registry import decide_promotion


def test_first_model_becomes_champion():
    decision = decide_promotion(0.5, None, margin=0.01)
    assert decision.promote and "no comparable champion" in decision.reason


def test_better_by_margin_promotes():
    assert decide_promotion(0.92, 0.90, margin=0.01).promote


def test_better_but_within_margin_does_not():
    decision = decide_promotion(0.905, 0.90, margin=0.01)
    assert not decision.promote and decision.champion_score == 0.90


def test_worse_does_not_promote():
    assert not decide_promotion(0.80, 0.90, margin=0.0).promote


def test_undefined_challenger_never_promotes():
    assert not decide_promotion(math.nan, None, margin=0.0).promote


def test_reason_says_plainly_when_the_reference_wins():
    decision = decide_promotion(0.69, 0.68, margin=0.002, reference_score=0.72)
    assert decision.promote  # the reference is the yardstick, never a candidate
    assert decision.reference_score == 0.72
    assert "LightGBM reference beats the challenger" in decision.reason
    assert "0.7200 vs 0.6900" in decision.reason


def test_reason_says_when_the_challenger_beats_the_reference():
    decision = decide_promotion(0.75, None, margin=0.0, reference_score=0.72)
    assert "challenger beats or equals the LightGBM reference" in decision.reason
    assert "reference" not in decide_promotion(0.75, None, margin=0.0).reason
