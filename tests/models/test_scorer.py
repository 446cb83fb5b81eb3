import json

import numpy as np
import pytest
import torch

from fraudops.models import (
    LSTMCNN,
    Autoencoder,
    AutoencoderConfig,
    DecisionPolicy,
    FeatureSpecMismatchError,
    LSTMCNNConfig,
    ModelBundle,
    ModelInputError,
    ModelLoadError,
    load_scorer,
    save_checkpoint,
    seed_everything,
)
from fraudops.models.checkpoint import META_FILE, load_checkpoint
from fraudops.models.untrained import write_untrained_pair

SPEC = {"version": "test-1", "fingerprint": "abc", "names": ["a", "b", "c"]}
K, F = 4, 3


def _save(tmp_path, spec=SPEC):
    seed_everything(0)
    policy = DecisionPolicy(0.9, 0.5, 2.0)
    seq = ModelBundle(LSTMCNN(LSTMCNNConfig(F, conv_channels=4, hidden_size=4, head_size=4)),
                      "lstm_cnn", spec, K, {"policy": policy.to_dict()})
    ae = ModelBundle(Autoencoder(AutoencoderConfig(F, 4, 2)), "autoencoder", spec, K)
    return save_checkpoint(seq, tmp_path / "seq"), save_checkpoint(ae, tmp_path / "ae")


def _inputs(b=5):
    g = np.random.default_rng(0)
    x = g.normal(size=(b, K, F)).astype(np.float32)
    mask = np.ones((b, K), dtype=bool)
    mask[0, :2] = False
    return x, mask


def test_checkpoint_round_trip_gives_same_outputs(tmp_path):
    seq_dir, _ = _save(tmp_path)
    original = load_checkpoint(seq_dir)
    again = load_checkpoint(seq_dir)
    x, mask = map(torch.from_numpy, _inputs())
    assert torch.equal(original.module(x, mask), again.module(x, mask))
    assert again.extra["policy"]["review_anomaly"] == 2.0


def test_scorer_from_local_dirs(tmp_path):
    seq_dir, ae_dir = _save(tmp_path)
    scorer = load_scorer(str(seq_dir), str(ae_dir), device="cpu", expected_spec_version="test-1")
    result = scorer.score(*_inputs(), reasons=2)
    assert result.fraud_probability.shape == (5,) and result.fraud_probability.dtype == np.float32
    assert ((result.fraud_probability > 0) & (result.fraud_probability < 1)).all()
    assert set(result.decision) <= {"approve", "review", "block"}
    assert all(len(r) == 2 and set(r) <= set(SPEC["names"]) for r in result.reason_codes)
    assert scorer.seq_len == K and scorer.feature_dim == F
    assert scorer.policy.review_anomaly == 2.0


def test_scorer_rejects_wrong_shapes(tmp_path):
    scorer = load_scorer(*map(str, _save(tmp_path)), device="cpu", expected_spec_version="test-1")
    x, mask = _inputs()
    with pytest.raises(ModelInputError, match=r"\[B, 4, 3\]"):
        scorer.score(x[:, :, :2], mask)
    with pytest.raises(ModelInputError, match="mask"):
        scorer.score(x, mask[:, :2])
    x[0, 0, 0] = np.nan
    with pytest.raises(ModelInputError, match="NaN"):
        scorer.score(x, mask)


def test_feature_spec_version_mismatch_is_refused(tmp_path):
    seq_dir, ae_dir = _save(tmp_path)
    with pytest.raises(FeatureSpecMismatchError, match="test-1"):
        load_scorer(str(seq_dir), str(ae_dir), device="cpu", expected_spec_version="other")


def test_missing_or_foreign_directory_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_scorer(str(tmp_path / "nope"), str(tmp_path / "nope"), expected_spec_version="x")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / META_FILE).write_text(json.dumps({"format": "other"}))
    with pytest.raises(ModelLoadError, match="unsupported"):
        load_checkpoint(tmp_path / "foreign")


def test_models_from_different_specs_are_not_paired(tmp_path):
    seq_dir, _ = _save(tmp_path)
    _, ae_dir = _save(tmp_path / "other", spec={**SPEC, "fingerprint": "zzz"})
    with pytest.raises(ModelLoadError, match="different"):
        load_scorer(str(seq_dir), str(ae_dir), device="cpu", expected_spec_version="test-1")


def _differing_across_batches(scorer, x: np.ndarray, mask: np.ndarray, seed: int = 2) -> int:
    """Scores that differ, bit for bit, between the whole batch and smaller shuffled ones."""
    whole = scorer.score(x, mask, reasons=3)
    order = np.random.default_rng(seed).permutation(len(x))
    differing = 0
    for size in (1, 7, 17, 64, 65, 333):
        for start in range(0, len(x), size):
            rows = order[start:start + size]
            part = scorer.score(x[rows], mask[rows], reasons=3)
            differing += int((part.fraud_probability != whole.fraud_probability[rows]).sum())
            differing += int((part.anomaly_score != whole.anomaly_score[rows]).sum())
            differing += sum(a != whole.reason_codes[r]
                             for a, r in zip(part.reason_codes, rows, strict=True))
    return differing


@pytest.mark.parametrize(("exact", "block_rows"), [(True, None), (False, 64), (False, 32)])
def test_a_row_scores_the_same_whatever_shares_its_batch(tmp_path, exact, block_rows):
    """A batch redone after a crash has other neighbours; its rows must score bit for bit as
    before (else `fraud-decisions` gets two different records for one id): float64 in one
    pass, or float32 in passes of one fixed shape. Histories of every length, so that the
    rows' real steps differ (packed sequences made a row's float32 result depend on the other
    rows' lengths)."""
    g = np.random.default_rng(1)
    rows, k, f = 600, 16, 59
    x = g.normal(size=(rows, k, f)).astype(np.float32)
    mask = np.arange(k)[None, :] >= g.integers(0, k, size=rows)[:, None]
    seq_dir, ae_dir = write_untrained_pair(tmp_path, {**SPEC, "names": [f"f{i}" for i in range(f)]},
                                           x[:, -1, :], k)
    scorer = load_scorer(str(seq_dir), str(ae_dir), device="cpu", expected_spec_version="test-1",
                         exact=exact, block_rows=block_rows)
    assert _differing_across_batches(scorer, x, mask) == 0


def test_block_rows_needs_float32(tmp_path):
    with pytest.raises(ValueError, match="block_rows"):
        load_scorer(*map(str, _save(tmp_path)), device="cpu", expected_spec_version="test-1",
                    block_rows=64)


@pytest.mark.parametrize("exact", [True, False])
def test_fused_forward_matches_the_two_models_called_apart(tmp_path, exact):
    """One call for both models (one device-to-host copy) gives what each model gives alone."""
    scorer = load_scorer(*map(str, _save(tmp_path)), device="cpu", expected_spec_version="test-1",
                         exact=exact)
    assert scorer.dtype == (torch.float64 if exact else torch.float32)
    x, mask = _inputs()
    result = scorer.score(x, mask)
    xt = torch.from_numpy(x).to(scorer.dtype)
    with torch.no_grad():
        raw = torch.sigmoid(scorer.sequence_model(xt, torch.from_numpy(mask))).numpy()
        anomaly = scorer.autoencoder.anomaly_score(xt[:, -1, :]).numpy()
    np.testing.assert_array_equal(result.anomaly_score, anomaly.astype(np.float32))
    np.testing.assert_array_equal(result.fraud_probability,
                                  scorer.calibration.apply(raw, anomaly).astype(np.float32))
