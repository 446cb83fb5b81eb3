"""Label-informed features in drift checks: never drift columns (they move with the labelling
process: measured here on a generated stream without drift), and the reference is scored with
its label stream point in time, verdicts of transactions older than its lookback included."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from fraudops.data import tabular
from fraudops.data.generate import GeneratorConfig, generate
from fraudops.data.labels import generate_labels, labels_path, write_labels
from fraudops.features import build_spec, compute_batch
from fraudops.models import ScoreResult
from monitoring.drift_detection import LABEL_COLUMN, SCORE_COLUMNS, _column_results, _drift_report
from monitoring.features import (
    check_columns,
    drift_frame,
    known_columns,
    label_informed,
    window_rows,
)
from monitoring.reference import Champion, reference_data, reference_window
from monitoring.settings import (
    DEFAULT_CATEGORICAL_FEATURES,
    DEFAULT_NUMERIC_FEATURES,
    DriftSettings,
    RetrainPolicySettings,
)

SPEC = build_spec()
DAYS = 40
LOOKBACK = timedelta(days=7)


@pytest.fixture(scope="module")
def stream() -> tuple[pd.DataFrame, pd.DataFrame]:
    """A generated stream without drift and its label stream."""
    data = tabular.sort_by_time(generate(GeneratorConfig(rows=40_000, days=DAYS, seed=5)))
    return data, generate_labels(data, 5)


def test_label_informed_features_are_not_drift_columns() -> None:
    names = label_informed(SPEC)
    assert len(names) == 30 and "merchant_fraud_28d_log" in names
    assert "account_risky_visits_7d_log" in names and "merchant_count_7d_log" not in names
    assert not names & known_columns(SPEC)[0]
    assert not names & {*DEFAULT_NUMERIC_FEATURES, *DEFAULT_CATEGORICAL_FEATURES}
    check_columns(SPEC, DEFAULT_NUMERIC_FEATURES, DEFAULT_CATEGORICAL_FEATURES)
    for column in ("merchant_fraud_rate_7d", "device_fraud_known_7d"):
        with pytest.raises(ValueError, match="label-informed"):
            check_columns(SPEC, [column], [])
        with pytest.raises(ValueError, match="label-informed"):
            check_columns(SPEC, [], [column])


def _side(data, labels, days: tuple[float, float], columns, with_labels: bool) -> pd.DataFrame:
    start = data["timestamp"].min().normalize()
    frame, in_window = window_rows(data, start + pd.Timedelta(days=days[0]),
                                   start + pd.Timedelta(days=days[1]), LOOKBACK)
    features = compute_batch(frame, SPEC, labels=labels if with_labels else None)
    numeric = [c for c in columns if c not in DEFAULT_CATEGORICAL_FEATURES]
    out = drift_frame(features[in_window], SPEC, numeric,
                      [c for c in columns if c in DEFAULT_CATEGORICAL_FEATURES])
    for column in SCORE_COLUMNS:
        out[column] = 0.0
    out[LABEL_COLUMN] = 0
    return out


def _drift_share(data, labels, columns, current_labels: bool = True) -> float:
    """Drift share of `columns`: the week before last (reference) against the last day but
    one (current), as the drift job compares them."""
    settings = DriftSettings(
        numeric_features=tuple(c for c in columns if c not in DEFAULT_CATEGORICAL_FEATURES),
        categorical_features=tuple(c for c in columns if c in DEFAULT_CATEGORICAL_FEATURES))
    reference = _side(data, labels, (DAYS - 15, DAYS - 8), columns, True)
    current = _side(data, labels, (DAYS - 2, DAYS - 1), columns, current_labels)
    features, _ = _column_results(_drift_report(reference, current, settings).dict(), settings)
    return sum(c.drifted for c in features) / len(features)


def test_a_stream_without_drift_does_not_trigger_and_label_features_would(stream) -> None:
    data, labels = stream
    threshold = RetrainPolicySettings().drift_share_threshold
    default = _drift_share(data, labels, (*DEFAULT_NUMERIC_FEATURES,
                                          *DEFAULT_CATEGORICAL_FEATURES))
    counts = sorted(c for c in label_informed(SPEC) if "known" not in c)
    point_in_time = _drift_share(data, labels, counts)
    naive = _drift_share(data, labels, counts, current_labels=False)
    assert default < threshold
    # Both sides point in time, the transactions unchanged: they still move (the label
    # process is not stationary: maturity verdicts start a month into the stream).
    assert point_in_time > 0
    # One side with labels, the other "nothing known" (features computed without the
    # stream): most of them drift.
    assert naive >= 0.5 > point_in_time


class FeatureScorer:
    """Scores a sequence with one of its last event's features (so a test can read it)."""

    seq_len = 4

    def __init__(self, feature: str) -> None:
        self.column = SPEC.names.index(feature)

    def score(self, x, mask) -> ScoreResult:
        values = x[:, -1, self.column].astype(np.float32)
        return ScoreResult(values, values, np.array(["approve"] * len(x)))


def test_the_reference_is_scored_with_its_label_stream_point_in_time(stream, tmp_path) -> None:
    data, labels = stream
    path = tabular.write(data, tmp_path / "train.parquet")
    write_labels(labels, labels_path(path))
    frame, _, _ = reference_data(Champion("fraud-lstm-cnn", "1", None), None, str(path))
    end = data["timestamp"].min().normalize() + pd.Timedelta(days=DAYS - 1)
    expected = compute_batch(data, SPEC, labels=labels)
    for feature in ("merchant_fraud_28d_log", "account_risky_visits_7d_log"):
        window = reference_window(frame, FeatureScorer(feature), SPEC, timedelta(days=2),
                                  LOOKBACK, end)
        rows = data["transaction_id"].isin(window.frame["transaction_id"][window.in_window])
        scored = window.fraud_probability[window.in_window]
        np.testing.assert_allclose(scored, expected[rows.to_numpy(), SPEC.names.index(feature)],
                                   atol=1e-6, rtol=0)
        assert scored.max() > 0  # verdicts counted, many on transactions before the lookback
