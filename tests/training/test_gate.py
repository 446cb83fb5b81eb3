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
