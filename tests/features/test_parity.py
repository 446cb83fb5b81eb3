"""Batch and online execution of the feature spec agree on the same stream (within 1e-6)."""

from __future__ import annotations

import numpy as np
import pytest

from fraudops.data import frame as tabular
from fraudops.features import (
    OnlineFeatureState,
    build_spec,
    compute_batch,
    gather_sequences,
    sequence_index,
)

SEQ_LEN = 5


@pytest.fixture(scope="module")
def both(stream):
    spec = build_spec(tabular.passthrough_names(stream))
    batch = compute_batch(stream, spec)
    state = OnlineFeatureState(spec, SEQ_LEN)
    online, sequences, masks = [], [], []
    for tx in tabular.to_transactions(stream):
        features, seq, mask = state.update(tx)
        online.append(features)
        sequences.append(seq)
        masks.append(mask)
    return spec, batch, np.stack(online), np.stack(sequences), np.stack(masks)


def test_batch_and_online_features_match(both):
    spec, batch, online, _, _ = both
    assert batch.shape == online.shape == (len(online), spec.dim)
    worst = np.abs(batch.astype(np.float64) - online).max(axis=0)
    mismatched = {n: float(w) for n, w in zip(spec.names, worst, strict=True) if w > 1e-6}
    assert not mismatched, f"batch/online disagree: {mismatched}"


def test_batch_and_online_sequences_match(stream, both):
    _, batch, _, sequences, masks = both
    x, mask = gather_sequences(batch, sequence_index(stream, SEQ_LEN))
    np.testing.assert_array_equal(mask, masks)
    np.testing.assert_allclose(x, sequences, atol=1e-6, rtol=1e-6)


def test_features_are_not_trivial(both):
    """Guard against a parity that holds because both sides return zeros."""
    spec, batch, _, _, _ = both
    constant = [n for n, col in zip(spec.names, batch.T, strict=True) if np.ptp(col) == 0]
    assert not constant, f"features constant over a varied stream: {constant}"
