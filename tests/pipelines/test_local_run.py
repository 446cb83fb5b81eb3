"""One whole pipeline run offline with kfp.local (each component a subprocess)."""

from __future__ import annotations

import json

import pytest
from mlflow import MlflowClient

from fraudops.data.generate import GeneratorConfig, generate
from fraudops.settings import ModelNames
from pipelines.local import run_local

TINY = {"seq_len": 4, "threads": 1, "device": "cpu",
        "sequence": {"conv_channels": 4, "hidden_size": 4, "head_size": 8, "epochs": 1,
                     "negative_sampling": 1.0},
        "autoencoder": {"hidden_size": 8, "bottleneck": 2, "epochs": 1, "max_rows": 1000},
        "reference": {"rounds": 20, "num_leaves": 7, "patience": 5}}


@pytest.mark.integration
def test_pipeline_runs_locally_and_promotes_first_model(tmp_path, monkeypatch):
    data = tmp_path / "transactions.parquet"
    generate(GeneratorConfig(rows=2000, seed=5, fraud_rate=0.06, days=14)).to_parquet(data)
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # Components inherit the environment: this is how the local platform configures them.
    monkeypatch.setenv("FRAUDOPS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FRAUDOPS_MLFLOW__TRACKING_URI", tracking_uri)
    root = tmp_path / "kfp"
    outcome = run_local({"data_path": str(data), "config_json": json.dumps(TINY)}, root)

    assert outcome.promoted and outcome.versions.sequence == "1"
    assert 0.0 <= outcome.metrics["sequence.auprc"] <= 1.0
    names = ModelNames()
    champion = MlflowClient(tracking_uri, tracking_uri).get_model_version_by_alias(names.sequence, "champion")
    assert str(champion.version) == outcome.versions.sequence
    run_dir = next(root.iterdir())
    assert (run_dir / "deploy").is_dir()  # the dsl.If branch ran because the gate promoted
    evaluated = json.loads((run_dir / "evaluate" / "executor_output.json").read_text())
    curves = evaluated["artifacts"]["curves"]["artifacts"][0]["metadata"]
    assert curves["confidenceMetrics"] and curves["confusionMatrix"]  # what the UI draws
    ui_metrics = evaluated["artifacts"]["metrics"]["artifacts"][0]["metadata"]
    assert "reference.auprc" in ui_metrics and "gap.auprc" in ui_metrics  # the reference too
    assert outcome.metrics["gap.auprc"] == pytest.approx(
        outcome.metrics["sequence.auprc"] - outcome.metrics["reference.auprc"])
