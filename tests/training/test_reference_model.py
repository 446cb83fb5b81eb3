"""The gradient-boosted reference every run trains: deterministic, saved, compared, reported."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from fraudops.training import comparison, reference, steps, workflow
from fraudops.training.metrics import auprc
from fraudops.training.splits import split_for


@pytest.fixture(scope="module")
def trained_pair(small_features, tiny_config, tmp_path_factory):
    """Featurized data and the two deep models, trained once for the tests below."""
    work = tmp_path_factory.mktemp("pair")
    features = small_features.save(work / "features")
    for kind in ("sequence", "autoencoder"):
        steps.train_step(kind, features, work / kind, tiny_config)
    return work


def _evaluate(work, out, config, reference_dir):
    return steps.evaluate_step(work / "features", work / "sequence", work / "autoencoder",
                               out / "models", out / "report", config, reference_dir)


def test_reference_is_deterministic_per_seed_and_round_trips(small_features, tiny_config,
                                                              tmp_path):
    split = split_for(small_features, tiny_config)
    first = reference.train_reference(small_features, split, tiny_config)
    again = reference.train_reference(small_features, split, tiny_config)
    other = reference.train_reference(small_features, split,
                                      tiny_config.model_copy(update={"seed": 1}))
    rows = small_features.features[split.test]
    assert np.array_equal(first.predict(rows), again.predict(rows))
    assert not np.array_equal(first.predict(rows), other.predict(rows))  # bagging is seeded
    loaded = reference.load_reference(reference.save_reference(first, tmp_path / "ref"))
    assert np.allclose(loaded.predict(rows), first.predict(rows))
    summary = first.summary
    assert 1 <= summary["best_iteration"] <= summary["rounds_run"] <= tiny_config.reference.rounds
    assert summary["rounds_run"] == min(summary["best_iteration"] + tiny_config.reference.patience,
                                        tiny_config.reference.rounds)  # early stopping


def test_evaluation_compares_with_the_reference_on_the_same_rows(trained_pair, small_features,
                                                                  tiny_config, tmp_path):
    summary = steps.train_step("reference", trained_pair / "features", tmp_path / "reference",
                               tiny_config)
    assert summary["kind"] == "lightgbm" and summary["best_validation_auprc"] > 0
    metrics = _evaluate(trained_pair, tmp_path, tiny_config, tmp_path / "reference")

    assert metrics["gap.auprc"] == metrics["sequence.auprc"] - metrics["reference.auprc"]
    holdout = small_features.labelled(workflow.holdout_rows(small_features, tiny_config))
    probability = reference.load_reference(tmp_path / "reference").predict(
        small_features.features[holdout])
    assert metrics["reference.auprc"] == pytest.approx(
        auprc(small_features.labels[holdout], probability))
    scenarios = {k.rsplit(".", 1)[1] for k in metrics
                 if k.startswith("reference.recall_at_1pct_fpr.")}
    assert scenarios and all(f"sequence.recall_at_1pct_fpr.{s}" in metrics for s in scenarios)

    report = tmp_path / "report"
    assert reference.has_reference(tmp_path / "models" / workflow.REFERENCE_DIR)
    assert json.loads((report / "reference_training_summary.json").read_text())["enabled"]
    assert (report / "reference_probability.png").stat().st_size > 0
    with np.load(report / steps.SCORES_FILE) as scores:
        assert np.array_equal(scores["reference_probability"], probability)
    stated = (report / comparison.REPORT_FILE).read_text()
    assert comparison.verdict(metrics) in stated and "| auprc |" in stated


def test_disabled_reference_leaves_only_its_summary(trained_pair, tiny_config, tmp_path):
    config = tiny_config.model_copy(update={"reference": tiny_config.reference.model_copy(
        update={"enabled": False})})
    summary = steps.train_step("reference", trained_pair / "features", tmp_path / "reference",
                               config)
    assert summary == {"enabled": False}
    assert not reference.has_reference(tmp_path / "reference")  # the kfp output still exists
    metrics = _evaluate(trained_pair, tmp_path, config, tmp_path / "reference")
    assert not any(k.startswith(("reference.", "gap.")) for k in metrics)
    assert not (tmp_path / "report" / comparison.REPORT_FILE).exists()
    assert not (tmp_path / "models" / workflow.REFERENCE_DIR).exists()


@pytest.mark.parametrize(("deep", "ref", "said"), [
    (0.90, 0.95, "The LightGBM reference beats the LSTM-CNN by 0.0500 auprc"),
    (0.97, 0.95, "The LSTM-CNN beats the LightGBM reference by 0.0200 auprc"),
    (0.95, 0.95, "are level on auprc"),
])
def test_verdict_names_the_better_model(deep, ref, said):
    assert said in comparison.verdict({"sequence.auprc": deep, "reference.auprc": ref})


def test_comparison_report_tables_every_shared_metric():
    metrics = {"rows": 1200.0, "fraud_rate": 0.05, "sequence.auprc": 0.9,
               "reference.auprc": 0.95, "sequence.recall_at_1pct_fpr.card_testing": 0.5,
               "reference.recall_at_1pct_fpr.card_testing": 0.75,
               "sequence.roc_auc": 0.99, "reference.roc_auc": math.nan}
    text = comparison.comparison_report(metrics)
    assert "| auprc | 0.9000 | 0.9500 | -0.0500 |" in text
    assert "| roc_auc | 0.9900 | n/a | n/a |" in text
    assert "| recall_at_1pct_fpr.card_testing | 0.5000 | 0.7500 | -0.2500 |" in text
    assert "1,200 labelled test rows, fraud rate 5.00%" in text
    assert "No gradient-boosted reference" in comparison.verdict({"sequence.auprc": 0.9})
