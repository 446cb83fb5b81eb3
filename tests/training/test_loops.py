import numpy as np
import pytest
import torch

from fraudops.training.exceptions import TrainingDataError
from fraudops.training.loops import EarlyStopping
from fraudops.training.workflow import assemble_scorer, fit_autoencoder, fit_sequence, split_for


def _weights(trained):
    return {k: v.clone() for k, v in trained.bundle.module.state_dict().items()}


def test_training_is_deterministic_per_seed(small_features, tiny_config):
    first, again = fit_sequence(small_features, tiny_config), fit_sequence(small_features,
                                                                           tiny_config)
    other = fit_sequence(small_features, tiny_config.model_copy(update={"seed": 1}))
    a, b, c = _weights(first), _weights(again), _weights(other)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert first.summary["history"] == again.summary["history"]


def test_summary_reports_early_stopping(small_features, tiny_config):
    trained = fit_autoencoder(small_features, tiny_config)
    summary = trained.summary
    assert 1 <= summary["best_epoch"] <= summary["epochs_run"] <= tiny_config.autoencoder.epochs
    assert len(summary["history"]) == summary["epochs_run"]
    assert np.isfinite(trained.bundle.module.threshold.item())  # calibrated on validation


def test_policy_is_fitted_and_stored_with_the_sequence_model(small_features, tiny_config):
    sequence = fit_sequence(small_features, tiny_config).bundle
    autoencoder = fit_autoencoder(small_features, tiny_config).bundle
    scorer = assemble_scorer(sequence, autoencoder, small_features, tiny_config)
    assert sequence.extra["policy"]["review_probability"] == scorer.policy.review_probability
    assert scorer.policy.fitted["validation_rows"] == len(
        small_features.labelled(split_for(small_features, tiny_config).validation))


def test_early_stopping_keeps_best_and_stops_after_patience():
    module = torch.nn.Linear(1, 1)
    stopper = EarlyStopping(patience=1)
    assert not stopper.update(1, 0.5, module)
    best = {k: v.clone() for k, v in module.state_dict().items()}
    with torch.no_grad():
        module.weight.add_(1.0)
    assert not stopper.update(2, 0.4, module)  # worse, within patience
    assert stopper.update(3, 0.45, module)  # worse again: stop
    assert stopper.best_epoch == 1 and torch.equal(stopper.state["weight"], best["weight"])


def test_periods_without_fraud_are_refused(small_features, tiny_config):
    data = small_features
    no_fraud = type(data)(data.features, data.seq_index, np.zeros_like(data.labels),
                          data.amounts, data.timestamps, data.scenarios, data.spec)
    with pytest.raises(TrainingDataError, match="fraud"):
        fit_sequence(no_fraud, tiny_config)


def test_calibration_travels_with_the_checkpoint(small_features, tiny_config, tmp_path):
    from fraudops.models import Scorer
    from fraudops.training.workflow import load_models, save_models

    sequence = fit_sequence(small_features, tiny_config).bundle
    autoencoder = fit_autoencoder(small_features, tiny_config).bundle
    scorer = assemble_scorer(sequence, autoencoder, small_features, tiny_config)
    assert sequence.extra["calibration"]["method"] == "platt"
    save_models(sequence, autoencoder, tmp_path)
    served = Scorer(*load_models(tmp_path), exact=False)
    x, mask = small_features.sequences(np.arange(200))
    assert served.calibration == scorer.calibration
    np.testing.assert_allclose(served.score(x, mask).fraud_probability,
                               scorer.score(x, mask).fraud_probability, atol=1e-6)


def test_weight_average_and_schedule_train_deterministically(small_features, tiny_config):
    sequence = tiny_config.sequence.model_copy(update={"schedule": "onecycle",
                                                       "weight_average": 0.9})
    config = tiny_config.model_copy(update={"sequence": sequence})
    first, again = fit_sequence(small_features, config), fit_sequence(small_features, config)
    a, b = _weights(first), _weights(again)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(key.startswith("wide.") for key in a)  # the default wide branch is trained
