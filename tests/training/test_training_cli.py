"""`fraudops train`, `fraudops evaluate`, `fraudops features build` through the real CLI."""

from __future__ import annotations

import json

import yaml
from typer.testing import CliRunner

from fraudops.cli import _load_unit_commands, app

runner = CliRunner()
_load_unit_commands(app)


def _params(tmp_path, tiny_config):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"train": tiny_config.model_dump()}))
    return path


def test_train_then_evaluate_champion(small_data_path, tiny_config, tmp_path, monkeypatch):
    monkeypatch.setenv("FRAUDOPS_HOME", str(tmp_path / "home"))
    out, metrics = tmp_path / "run", tmp_path / "train.json"
    result = runner.invoke(app, ["train", "--data", str(small_data_path), "--params",
                                 str(_params(tmp_path, tiny_config)), "--out", str(out),
                                 "--metrics-out", str(metrics)])
    assert result.exit_code == 0, result.output
    trained = json.loads(metrics.read_text())
    assert trained["_outcome"]["promoted"] is True
    assert "sequence.auprc" in trained

    evaluated = tmp_path / "eval.json"
    result = runner.invoke(app, ["evaluate", "--model", "champion", "--data",
                                 str(small_data_path), "--metrics-out", str(evaluated),
                                 "--plots-out", str(tmp_path / "plots")])
    assert result.exit_code == 0, result.output
    scored = json.loads(evaluated.read_text())
    assert scored["rows"] == 3000  # every labelled row of the data set
    assert scored["model_versions"] == {"fraud-lstm-cnn": "1", "fraud-autoencoder": "1"}
    assert (tmp_path / "plots" / "pr_curve.png").stat().st_size > 0

    # The local models directory of the run gives the same scores as the registered champion.
    result = runner.invoke(app, ["evaluate", "--model", str(out), "--data",
                                 str(small_data_path), "--metrics-out", str(tmp_path / "l.json")])
    assert result.exit_code == 0, result.output
    local = json.loads((tmp_path / "l.json").read_text())
    assert local["sequence.auprc"] == scored["sequence.auprc"]


def test_features_build_and_bad_input(small_data_path, tmp_path):
    result = runner.invoke(app, ["features", "build", "--data", str(small_data_path), "--out",
                                 str(tmp_path / "f"), "--seq-len", "4"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "f" / "features.npz").is_file()
    result = runner.invoke(app, ["train", "--data", str(tmp_path / "missing.parquet"),
                                 "--no-register"])
    assert result.exit_code == 1 and "does not exist" in result.output
