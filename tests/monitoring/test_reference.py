"""Finding the reference data from the champion's lineage (with the path fallback)."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

from fraudops.data import tabular
from monitoring.exceptions import ReferenceNotFoundError
from monitoring.reference import Champion, reference_data


def _data(tmp_path, name: str, days: int = 10):
    times = pd.date_range("2026-03-01", periods=days * 24, freq="1h", tz="UTC")
    frame = tabular.normalize(pd.DataFrame({
        "transaction_id": [f"{name}-{i}" for i in range(len(times))],
        "account_id": "a", "timestamp": times, "amount": 1.0}))
    return tabular.write(frame, tmp_path / f"{name}.parquet")


def _champion(**lineage) -> Champion:
    return Champion("fraud-lstm-cnn", "4", None, lineage)


def test_lineage_path_and_window_end_come_first(tmp_path):
    logged, fallback = _data(tmp_path, "logged"), _data(tmp_path, "fallback")
    frame, end, source = reference_data(
        _champion(**{"fraudops.data_path": str(logged), "data.window_end": "2026-03-05 00:00:00"}),
        client=None, fallback_path=str(fallback))
    assert source == str(logged) and frame["transaction_id"][0] == "logged-0"
    assert end == pd.Timestamp("2026-03-05", tz="UTC")


def test_unset_values_read_back_from_mlflow_count_as_missing(tmp_path):
    logged = _data(tmp_path, "logged")
    _, end, _ = reference_data(_champion(**{"fraudops.data_path": str(logged),
                                            "data.window_end": "None"}), None)
    assert end is None


def test_fallback_when_the_logged_path_is_unreachable(tmp_path):
    fallback = _data(tmp_path, "fallback")
    frame, end, source = reference_data(
        _champion(**{"fraudops.data_path": str(tmp_path / "gone.parquet")}), None, str(fallback))
    assert source == str(fallback) and end is None and len(frame) == 240


def test_no_lineage_and_no_fallback_is_a_clear_error():
    with pytest.raises(ReferenceNotFoundError, match="--reference PATH"):
        reference_data(_champion(), None)


def test_reference_window_takes_the_last_span_before_the_end(tmp_path):
    from monitoring.reference import reference_window

    class ConstantScorer:
        seq_len = 2

        def score(self, x, mask):
            import numpy as np

            from fraudops.models import ScoreResult

            ones = np.full(len(x), 0.5, dtype=np.float32)
            return ScoreResult(ones, ones, np.array(["approve"] * len(x)))

    from fraudops.features import build_spec

    frame = tabular.read(_data(tmp_path, "d"))
    end = pd.Timestamp("2026-03-05", tz="UTC")
    window = reference_window(frame, ConstantScorer(), build_spec(), timedelta(days=2),
                              timedelta(days=1), end)
    assert window.rows == 48 and len(window.frame) == 72
    assert window.frame["timestamp"][window.in_window].max() < end
    assert (window.fraud_probability[window.in_window] == 0.5).all()
    with pytest.raises(ReferenceNotFoundError, match="no rows"):
        reference_window(frame, ConstantScorer(), build_spec(), timedelta(days=1),
                         timedelta(0), pd.Timestamp("2027-01-01", tz="UTC"))


def test_holdout_metrics_are_the_sequence_models_run_metrics():
    champion = Champion("fraud-lstm-cnn", "2", "run", metrics={
        "sequence.recall_at_1pct_fpr": 0.61, "sequence.auprc": 0.8, "autoencoder.auprc": 0.3,
        "decision.flagged_recall": 0.7})
    assert champion.holdout_metrics() == {"recall_at_1pct_fpr": 0.61, "auprc": 0.8}
    assert Champion("m", "1", None).holdout_metrics() == {}
