"""Drift -> retraining -> a new registered version -> the promotion gate decides.

The drift job runs against the real store and MLflow registry; its launcher calls the training
helper's entry point (`fraudops.training.retrain.run_training`) in-process with a small
configuration, on the grown data set (training data + the labelled stream up to the window's
end). On a Kubernetes cluster the same decision starts a Kubeflow run instead (KfpLauncher,
tested against a fake client in test_trigger.py: no KFP API server can run here).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
from mlflow import MlflowClient

from monitoring.job import DriftJob
from monitoring.trigger import EntrypointLauncher

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _small_training_config():
    from fraudops.training.config import (
        AutoencoderTrainConfig,
        ReferenceTrainConfig,
        SequenceTrainConfig,
        TrainingConfig,
    )

    return TrainingConfig(threads=2, sequence=SequenceTrainConfig(
        epochs=2, conv_channels=16, hidden_size=16, head_size=16),
        autoencoder=AutoencoderTrainConfig(epochs=2, max_rows=10_000),
        reference=ReferenceTrainConfig(rounds=40, num_leaves=15, patience=10))


def test_drift_retrains_registers_and_the_gate_decides(drifted_platform, settings_for, day,
                                                       tmp_path):
    from fraudops.training.retrain import TrainingJob, run_training
    from fraudops.training.tracking import TrackingTarget

    platform = drifted_platform
    target = TrackingTarget(platform.tracking_uri, (platform.home / "mlartifacts").as_uri(),
                            "fraudops")
    outcomes = []

    def retrain(data_path: str, window_end: str, **_):
        outcome = run_training(TrainingJob(Path(data_path), tmp_path / "retrain", target,
                                           config=_small_training_config(),
                                           end=datetime.fromisoformat(window_end)))
        outcomes.append(outcome)
        return outcome

    settings = settings_for(platform, log_to_mlflow=False)
    settings = settings.model_copy(update={"retrain": settings.retrain.model_copy(update={
        "launcher": "entrypoint",
        "extra_params": {"data_path": str(platform.home / "data" / "all.parquet")}})})
    client = MlflowClient(platform.tracking_uri, registry_uri=platform.tracking_uri)
    job = DriftJob(settings, platform.store, client, EntrypointLauncher(retrain))

    assert job.check(day(platform, 27)).decision.decision == "hold"
    triggered = job.check(day(platform, 29))
    assert triggered.decision.decision == "trigger" and triggered.launch_error is None
    [outcome] = outcomes
    assert "gap.auprc" in outcome.metrics  # retraining trains and compares the reference too
    # A new version of both models is registered from the retraining run ...
    assert outcome.versions.sequence == "2" and outcome.versions.autoencoder == "2"
    assert client.get_model_version("fraud-lstm-cnn", "2").run_id == outcome.run_id
    # ... and the gate decided; the champion alias follows its decision.
    champion = str(client.get_model_version_by_alias("fraud-lstm-cnn", "champion").version)
    assert champion == ("2" if outcome.promoted else "1")
    logged = json.loads((platform.home / "drift-reports" / "decisions.jsonl")
                        .read_text().splitlines()[-1])
    assert logged["triggered"] and logged["launch"]["run_id"] == outcome.run_id
    detail = json.loads(logged["launch"]["detail"])
    assert detail["promoted"] == outcome.promoted
    assert detail["decision"]["promote"] == outcome.promoted and detail["decision"]["reason"]
    # The next check compares against the new champion's reference when it was promoted.
    after = job.check(day(platform, 31))
    assert after.status == "checked"
    assert job.reference()[0].version == champion
