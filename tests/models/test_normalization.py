"""Input normalisation stored in the model: the rank-gauss `QuantileNormalizer` computes what
scikit-learn's QuantileTransformer computes, row by row, and travels with the checkpoint."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.preprocessing import QuantileTransformer

from fraudops.models import LSTMCNN, LSTMCNNConfig, ModelBundle, load_checkpoint, save_checkpoint
from fraudops.models.normalization import QuantileNormalizer, Standardizer, make_normalizer

# Small float32 values with many repeats (one-hots, counts, constants arise by themselves).
_values = st.one_of(st.integers(-3, 3).map(float),
                    st.floats(-1e3, 1e3, width=32, allow_nan=False, allow_infinity=False))


def _sklearn(rows: np.ndarray, quantiles: int) -> QuantileTransformer:
    return QuantileTransformer(n_quantiles=quantiles, output_distribution="normal",
                               subsample=None).fit(rows)


@settings(max_examples=30, deadline=None)
@given(rows=hnp.arrays(np.float32, st.tuples(st.integers(20, 80), st.integers(1, 3)),
                       elements=_values),
       quantiles=st.integers(2, 50), seed=st.integers(0, 2**16))
def test_matches_scikit_learn(rows, quantiles, seed):
    quantiles = min(quantiles, len(rows))  # scikit-learn refuses more quantiles than rows
    rng = np.random.default_rng(seed)
    # Training rows and unseen values, inside and beyond the training range.
    points = np.vstack([rows, rows * np.float32(1.5) + rng.normal(size=rows.shape)]).astype(
        np.float32)
    normalizer = QuantileNormalizer(rows.shape[1], quantiles).fit(rows)
    reference = _sklearn(rows.astype(np.float64), quantiles)
    # The same knots, stored in float32 ...
    np.testing.assert_array_equal(normalizer.quantiles.numpy().T,
                                  reference.quantiles_.astype(np.float32))
    # ... and the same map through them (interpolation, ties, bounds): scikit-learn is given
    # the stored knots, as rounding a knot can merge or split a tie and move a value a lot.
    reference.quantiles_ = reference.quantiles_.astype(np.float32).astype(np.float64)
    ours = normalizer(torch.from_numpy(points)).numpy()
    expected = reference.transform(points.astype(np.float64))
    np.testing.assert_allclose(ours, expected, atol=2e-3, rtol=1e-3)


def test_output_is_standard_normal_on_the_training_rows():
    rows = np.random.default_rng(0).lognormal(size=(20_000, 3)) ** 3  # heavy right tail
    out = QuantileNormalizer(3).fit(rows)(torch.from_numpy(rows.astype(np.float32))).numpy()
    assert np.abs(out.mean(axis=0)).max() < 0.02
    assert np.abs(out.std(axis=0) - 1).max() < 0.05
    assert np.abs(out).max() < 5.2  # the bounds keep extremes finite


def test_each_row_is_normalised_alone():
    """A row's value never depends on the batch it arrives in (the scorer's exactness)."""
    rng = np.random.default_rng(1)
    normalizer = QuantileNormalizer(4, 100).fit(rng.exponential(size=(500, 4)))
    batch = torch.from_numpy(rng.exponential(size=(8, 5, 4)).astype(np.float32))
    whole = normalizer(batch)
    for i in range(len(batch)):
        assert torch.equal(normalizer(batch[i:i + 1])[0], whole[i])


def test_too_few_quantiles_is_refused():
    with pytest.raises(ValueError, match="at least 2"):
        QuantileNormalizer(3, 1)


def test_the_config_chooses_the_normalisation():
    assert isinstance(make_normalizer(3, 0), Standardizer)
    assert isinstance(LSTMCNN(LSTMCNNConfig(input_dim=3)).normalize, Standardizer)
    model = LSTMCNN(LSTMCNNConfig(input_dim=3, quantiles=16))
    assert isinstance(model.normalize, QuantileNormalizer)
    assert model.normalize.quantiles.shape == (3, 16)


def test_quantiles_travel_with_the_checkpoint(tmp_path):
    rng = np.random.default_rng(2)
    model = LSTMCNN(LSTMCNNConfig(input_dim=5, quantiles=64, wide_size=8)).eval()
    model.normalize.fit(rng.exponential(size=(300, 5)))
    save_checkpoint(ModelBundle(model, "lstm_cnn", {"version": "x"}, 6), tmp_path)
    loaded = load_checkpoint(tmp_path).module
    assert isinstance(loaded.normalize, QuantileNormalizer)
    x = torch.from_numpy(rng.exponential(size=(4, 6, 5)).astype(np.float32))
    mask = torch.ones(4, 6, dtype=torch.bool)
    mask[0, :4] = False
    assert torch.equal(loaded(x, mask), model(x, mask))
