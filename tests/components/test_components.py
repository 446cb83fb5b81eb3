"""Component interfaces (what the Kubeflow UI sees) and a direct call of a component body."""

from __future__ import annotations

import json

from kfp import dsl

from components.training import build_components


def _types(spec_io) -> dict[str, str]:
    return {name: getattr(io, "type", None) for name, io in spec_io.items()}


def test_components_are_typed_for_the_ui():
    c = build_components("registry.example/fraudops-pipeline:9.9")
    evaluate_outputs = _types(c.evaluate.component_spec.outputs)
    assert evaluate_outputs["metrics"] == "system.Metrics@0.0.1"
    assert evaluate_outputs["curves"] == "system.ClassificationMetrics@0.0.1"
    assert evaluate_outputs["models"] == "system.Model@0.0.1"
    assert _types(c.featurize.component_spec.outputs)["features"] == "system.Dataset@0.0.1"
    assert _types(c.train_sequence.component_spec.inputs)["features"] == "system.Dataset@0.0.1"
    assert c.gate.component_spec.outputs["Output"].type == "Boolean"


def test_image_is_configurable():
    c = build_components("registry.example/fraudops-pipeline:9.9")
    container = c.train_autoencoder.component_spec.implementation.container
    assert container.image == "registry.example/fraudops-pipeline:9.9"
    assert "pip install" not in " ".join(container.command)  # nothing installed at run time


def test_validate_body_logs_metrics_and_returns_version(small_data_path, tmp_path):
    c = build_components("img:1")
    metrics = dsl.Metrics(uri=str(tmp_path / "metrics.json"))
    version = c.validate_data.python_func(data_path=str(small_data_path), metrics=metrics)
    assert version.startswith(("md5:", "dvc:"))
    assert metrics.metadata["rows"] == 3000 and 0 < metrics.metadata["fraud_rate"] < 1


def test_featurize_body_writes_features(small_data_path, tmp_path):
    c = build_components("img:1")
    features = dsl.Dataset(uri=str(tmp_path / "features"))
    dim = c.featurize.python_func(data_path=str(small_data_path), window_start="",
                                  window_end="2026-01-15T00:00:00+00:00",
                                  config_json=json.dumps({"seq_len": 4}), features=features)
    assert dim == features.metadata["feature_dim"] > 0
    assert 0 < features.metadata["rows"] < 3000  # the window cut the later rows
