"""Register -> alias -> gate -> load_scorer, against a real MLflow store (SQLite, PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from fraudops.models import load_scorer
from fraudops.settings import ModelNames
from fraudops.training import registry, steps, tracking
from fraudops.training.retrain import TrainingJob, run_training
from fraudops.training.tracking import TrackingTarget

NAMES = ModelNames()


@pytest.fixture(scope="module")
def registered(small_data_path, tiny_config, tmp_path_factory):
    """One training run registered in a fresh SQLite store (shared by the tests below)."""
    tmp = tmp_path_factory.mktemp("registry")
    target = TrackingTarget(f"sqlite:///{tmp / 'mlflow.db'}", (tmp / "artifacts").as_uri(),
                            "test")
    return target, _train(small_data_path, tmp / "w1", target, tiny_config), tmp


def _train(data_path, work, target, config):
    return run_training(TrainingJob(data_path, work, target, NAMES, config))


def _check_first_run(outcome, target):
    client = MlflowClient(target.tracking_uri, target.tracking_uri)
    assert outcome.promoted and outcome.champion_score is None
    for name, version in ((NAMES.sequence, outcome.versions.sequence),
                          (NAMES.autoencoder, outcome.versions.autoencoder)):
        by_alias = client.get_model_version_by_alias(name, NAMES.champion_alias)
        assert str(by_alias.version) == version
        assert str(client.get_model_version_by_alias(name, NAMES.challenger_alias).version) == version
        assert by_alias.tags[registry.TAG_DECISION] == "promoted"
        assert float(by_alias.tags[registry.TAG_CHALLENGER_SCORE]) == pytest.approx(
            outcome.challenger_score, abs=1e-6)
    run = client.get_run(outcome.versions.run_id)
    assert run.data.tags[tracking.TAG_DATA_VERSION].startswith(("md5:", "dvc:"))
    assert run.data.tags[tracking.TAG_FEATURE_SPEC]
    assert "sequence.auprc" in run.data.metrics
    assert {"reference.auprc", "gap.auprc"} <= set(run.data.metrics)  # the reference beside
    assert "gradient-boosted reference" in run.data.tags[tracking.TAG_NOTE]  # the gap, stated
    reference = mlflow.lightgbm.load_model(f"runs:/{run.info.run_id}/{tracking.REFERENCE_ARTIFACT}")
    assert reference.num_feature() > 0  # the reference model itself is in the run ...
    from_run = client.search_model_versions(f"run_id = '{run.info.run_id}'")
    assert {v.name for v in from_run} == {NAMES.sequence, NAMES.autoencoder}  # never registered
    assert "config.sequence.epochs" in run.data.params
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert {"evaluation/pr_curve.png", "evaluation/reference_probability.png",
            "evaluation/reference_comparison.md", "evaluation/reliability.png"} <= logged
    # fraud-team figures for both models, logged as run metrics
    for name in ("value_detected_at_fp_ratio_1", "brier", "calibration_error"):
        assert f"sequence.{name}" in run.data.metrics and f"reference.{name}" in run.data.metrics


def test_first_run_is_registered_and_promoted(registered):
    target, first, _ = registered
    _check_first_run(first, target)


def test_load_scorer_from_registry_and_local_dir(registered):
    target, first, _ = registered
    tracking.connect(target)
    scorer = load_scorer(f"models:/{NAMES.sequence}@champion",
                         f"models:/{NAMES.autoencoder}@champion", device="cpu")
    assert scorer.versions == {NAMES.sequence: first.versions.sequence,
                               NAMES.autoencoder: first.versions.autoencoder}
    local = load_scorer(str(first.models_dir / "sequence"), str(first.models_dir / "autoencoder"),
                        device="cpu")
    x = np.random.default_rng(0).normal(size=(3, scorer.seq_len, scorer.feature_dim))
    mask = np.ones((3, scorer.seq_len), dtype=bool)
    from_registry, from_dir = scorer.score(x, mask), local.score(x, mask)
    np.testing.assert_allclose(from_registry.fraud_probability, from_dir.fraud_probability)
    assert list(from_registry.decision) == list(from_dir.decision)


def test_registered_models_carry_their_onnx_graphs(registered, caplog):
    """Training exported each model's scoring graph and MLflow logged it with the model: the
    onnxruntime backend serves the registered pair without exporting anything, and scores as
    torch does in float32 (within the export's 1e-5)."""
    target, _, _ = registered
    tracking.connect(target)
    uris = (f"models:/{NAMES.sequence}@champion", f"models:/{NAMES.autoencoder}@champion")
    for uri in uris:
        files = {Path(p).name for p in _artifact_files(mlflow.artifacts.download_artifacts(uri))}
        assert "model.onnx" in files, (uri, files)
    with caplog.at_level("WARNING", logger="fraudops.models.scorer"):
        onnx = load_scorer(*uris, device="cpu", exact=False, block_rows=64,
                           backend="onnxruntime")
    assert "no ONNX graph" not in caplog.text
    torch_scorer = load_scorer(*uris, device="cpu", exact=False, block_rows=64)
    x = np.random.default_rng(1).normal(size=(200, onnx.seq_len, onnx.feature_dim))
    mask = np.arange(onnx.seq_len)[None, :] >= np.arange(200)[:, None] % onnx.seq_len
    a, b = onnx.score(x, mask), torch_scorer.score(x, mask)
    np.testing.assert_allclose(a.fraud_probability, b.fraud_probability, atol=1e-5)
    np.testing.assert_allclose(a.anomaly_score, b.anomaly_score, atol=1e-4, rtol=1e-5)


def _artifact_files(root: str) -> list[str]:
    return [str(p) for p in Path(root).rglob("*") if p.is_file()]


def test_pyfunc_flavour_predicts(registered, tiny_config):
    target, outcome, _ = registered
    tracking.connect(target)
    model = mlflow.pyfunc.load_model(f"models:/{NAMES.sequence}/{outcome.versions.sequence}")
    k, f = tiny_config.seq_len, model.metadata.get_input_schema().inputs[0].shape[-1]
    x, mask = np.zeros((2, k, f), np.float32), np.ones((2, k), bool)
    out = model.predict({"sequences": x, "mask": mask})
    assert np.asarray(out).shape == (2,)
    # the same calibrated probability the scorer serves
    scorer = load_scorer(f"models:/{NAMES.sequence}/{outcome.versions.sequence}",
                         f"models:/{NAMES.autoencoder}/{outcome.versions.autoencoder}",
                         device="cpu")
    np.testing.assert_allclose(out, scorer.score(x, mask).fraud_probability, atol=1e-5)


def test_champion_with_other_features_is_not_comparable(registered, small_data_path,
                                                        tiny_config):
    target, _, tmp = registered
    tracking.connect(target)
    longer = tiny_config.model_copy(update={"seq_len": 6})
    steps.featurize_step(small_data_path, tmp / "f6", 6)
    assert steps.champion_score(tmp / "f6", longer, NAMES) is None


def test_not_better_by_margin_keeps_champion(registered, small_data_path, tiny_config):
    # The same data and seed again: an equal score is not better by the margin.
    target, first, tmp = registered
    strict = tiny_config.model_copy(update={"gate_margin": 0.05})
    second = _train(small_data_path, tmp / "w2", target, strict)
    assert not second.promoted
    assert second.champion_score == pytest.approx(first.challenger_score, abs=1e-6)
    client = MlflowClient(target.tracking_uri, target.tracking_uri)
    champion = client.get_model_version_by_alias(NAMES.sequence, NAMES.champion_alias)
    challenger = client.get_model_version_by_alias(NAMES.sequence, NAMES.challenger_alias)
    assert str(champion.version) == first.versions.sequence
    assert str(challenger.version) == second.versions.sequence
    assert challenger.tags[registry.TAG_DECISION] == "rejected"


@pytest.mark.integration
def test_postgresql_backend_store(postgres_url, small_data_path, tiny_config, tmp_path):
    # The cluster configuration: MLflow metadata in PostgreSQL (artifacts stay local here;
    # S3 in a cluster). The fixture's URL uses the psycopg 3 driver, which MLflow accepts.
    target = TrackingTarget(postgres_url, (tmp_path / "artifacts").as_uri(), "pg")
    outcome = _train(small_data_path, tmp_path / "w", target, tiny_config)
    _check_first_run(outcome, target)
    scorer = load_scorer(f"models:/{NAMES.sequence}@champion",
                         f"models:/{NAMES.autoencoder}@champion", device="cpu")
    assert scorer.versions[NAMES.sequence] == outcome.versions.sequence
