"""Drift columns from the shared feature implementation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fraudops.data import tabular
from fraudops.features import build_spec, compute_batch
from monitoring.features import check_columns, drift_frame, window_rows
from monitoring.settings import DEFAULT_CATEGORICAL_FEATURES, DEFAULT_NUMERIC_FEATURES

SPEC = build_spec()


def _frame() -> pd.DataFrame:
    times = pd.date_range("2026-03-01", periods=6, freq="6h", tz="UTC")
    return tabular.normalize(pd.DataFrame({
        "transaction_id": [f"t{i}" for i in range(6)], "account_id": ["a", "a", "b", "a", "b", "c"],
        "timestamp": times, "amount": [5, 50, 7, 500, 8, 9],
        "channel": ["online", "atm", "online", "card_present", "transfer", "bogus"],
        "merchant_category": ["grocery", "travel", "grocery", "jewelry", "fuel", "health"],
        "merchant_id": ["m1", "m2", "m1", "m3", "m1", "m4"]}))


def test_one_hot_groups_decode_to_their_category():
    frame = _frame()
    out = drift_frame(compute_batch(frame, SPEC), SPEC, DEFAULT_NUMERIC_FEATURES,
                      DEFAULT_CATEGORICAL_FEATURES)
    assert list(out["channel"]) == ["online", "atm", "online", "card_present", "transfer", "other"]
    assert list(out["category"]) == list(frame["merchant_category"])
    assert list(out["account_new_merchant"]) == ["yes", "yes", "yes", "yes", "no", "yes"]
    assert out["amount_log"].is_monotonic_increasing is False
    assert np.isfinite(out[list(DEFAULT_NUMERIC_FEATURES)].to_numpy()).all()


def test_unknown_drift_feature_is_refused_with_the_choices():
    check_columns(SPEC, DEFAULT_NUMERIC_FEATURES, DEFAULT_CATEGORICAL_FEATURES)
    with pytest.raises(ValueError, match="amount_cubed"):
        check_columns(SPEC, ["amount_cubed"], [])
    with pytest.raises(ValueError, match="channel"):
        check_columns(SPEC, [], ["amount_log"])


def test_window_rows_keep_lookback_and_mark_the_window():
    frame = _frame()
    start = frame["timestamp"][3].to_pydatetime()
    loaded, in_window = window_rows(frame, start, start + pd.Timedelta(hours=7),
                                    pd.Timedelta(hours=12))
    assert list(loaded["transaction_id"]) == ["t1", "t2", "t3", "t4"]
    assert list(in_window) == [False, False, True, True]
