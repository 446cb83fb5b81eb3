"""The committed IR YAML must be what compiling the source produces."""

from __future__ import annotations

import yaml

from fraudops.settings import PIPELINE_IMAGE
from pipelines.cli import COMPILED, compile_pipeline


def test_committed_yaml_matches_source(tmp_path):
    fresh = compile_pipeline(tmp_path / "pipeline.yaml", PIPELINE_IMAGE, env={})
    assert COMPILED.is_file(), "run `fraudops pipeline compile` and commit the YAML"
    assert fresh.read_text() == COMPILED.read_text(), (
        "pipelines/compiled/training_pipeline.yaml is stale: run `fraudops pipeline compile` "
        "(with no FRAUDOPS_MLFLOW__* / FRAUDOPS_KFP__IMAGE set) and commit it")


def test_pipeline_shape(tmp_path):
    spec = yaml.safe_load(compile_pipeline(tmp_path / "p.yaml", "img:2").read_text())
    tasks = spec["root"]["dag"]["tasks"]
    # The trainers (the reference too) depend only on featurize: they run in parallel.
    for trainer in ("train-sequence", "train-autoencoder", "train-reference"):
        assert tasks[trainer]["dependentTasks"] == ["featurize"]
    assert {"train-sequence", "train-autoencoder", "train-reference"} <= set(
        tasks["evaluate"]["dependentTasks"])  # evaluated side by side
    condition = next(t for t in tasks.values() if "triggerPolicy" in t)
    assert "gate" in condition["triggerPolicy"]["condition"]
    assert set(spec["root"]["inputDefinitions"]["parameters"]) >= {
        "data_path", "window_start", "window_end", "config_json", "deploy_mode"}
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {"img:2"}


def test_settings_env_is_compiled_into_tasks(tmp_path):
    env = {"FRAUDOPS_MLFLOW__TRACKING_URI": "http://mlflow.fraudops:5000"}
    text = compile_pipeline(tmp_path / "p.yaml", "img:2", env=env).read_text()
    spec = yaml.safe_load(text)
    for executor in spec["deploymentSpec"]["executors"].values():
        assert {"name": "FRAUDOPS_MLFLOW__TRACKING_URI",
                "value": "http://mlflow.fraudops:5000"} in executor["container"]["env"]
