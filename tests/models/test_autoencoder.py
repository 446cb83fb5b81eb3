import numpy as np
import pytest
import torch

from fraudops.models import Autoencoder, AutoencoderConfig, seed_everything


def _model(seed=0):
    seed_everything(seed)
    return Autoencoder(AutoencoderConfig(input_dim=4, hidden_size=8, bottleneck=2)).eval()


@torch.no_grad()
def test_score_shape_and_determinism():
    x = torch.randn(10, 4, generator=torch.Generator().manual_seed(0))
    assert _model().anomaly_score(x).shape == (10,)
    assert torch.equal(_model(3).anomaly_score(x), _model(3).anomaly_score(x))


@torch.no_grad()
def test_calibration_flags_target_share_of_legit_rows():
    model = _model()
    legit = torch.randn(2000, 4, generator=torch.Generator().manual_seed(1))
    threshold = model.calibrate(legit, target_fpr=0.05)
    scores = model.anomaly_score(legit).detach().numpy()
    assert np.mean(scores >= threshold) == pytest.approx(0.05, abs=0.01)
    assert abs(np.median(scores)) < 0.05  # normalised: a typical legit row scores ~0


@torch.no_grad()
def test_far_outlier_scores_higher_than_typical_rows():
    model = _model()
    legit = torch.randn(500, 4, generator=torch.Generator().manual_seed(2))
    model.normalize.fit(legit.numpy())
    model.calibrate(legit, target_fpr=0.01)
    outlier = torch.full((1, 4), 8.0)
    assert model.anomaly_score(outlier).item() > model.anomaly_score(legit).median().item()


@torch.no_grad()
def test_calibrate_rejects_bad_rate():
    with pytest.raises(ValueError):
        _model().calibrate(torch.zeros(3, 4), target_fpr=1.5)


def _scaled_model(seed=0):
    seed_everything(seed)
    return Autoencoder(AutoencoderConfig(input_dim=4, hidden_size=8, bottleneck=2,
                                         feature_scaled=True)).eval()


@torch.no_grad()
def test_feature_scaled_score_weighs_a_quiet_feature_like_a_noisy_one():
    generator = torch.Generator().manual_seed(4)
    legit = torch.randn(3000, 4, generator=generator)
    legit[:, 0] *= 0.01  # feature 0 is nearly constant on legitimate traffic
    model = _scaled_model()
    model.normalize.fit(legit.numpy())
    model.calibrate(legit, target_fpr=0.01)
    assert torch.all(model.residual_scale > 0)
    off_quiet = legit[:200].clone()
    off_quiet[:, 0] += 0.2  # 20 legit spreads off, on the quiet feature
    assert model.anomaly_score(off_quiet).median() > model.threshold


@torch.no_grad()
def test_feature_scaled_model_round_trips_through_a_checkpoint(tmp_path):
    from fraudops.models import ModelBundle, load_checkpoint, save_checkpoint

    model = _scaled_model()
    legit = torch.randn(500, 4, generator=torch.Generator().manual_seed(5))
    model.normalize.fit(legit.numpy())
    model.calibrate(legit, target_fpr=0.05)
    save_checkpoint(ModelBundle(model, "autoencoder", {"version": "x"}, 1), tmp_path)
    loaded = load_checkpoint(tmp_path).module
    assert loaded.config.feature_scaled
    assert torch.equal(loaded.anomaly_score(legit), model.anomaly_score(legit))
