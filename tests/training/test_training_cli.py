"""`fraudops train`, `fraudops evaluate`, `fraudops features build` through the real CLI."""

from __future__ import annotations

import json

import yaml
from rich.console import Console
from typer.testing import CliRunner

from fraudops.cli import _load_unit_commands, app
from fraudops.commands.training import GAP_COLUMN, metrics_table
from fraudops.training.comparison import REPORT_FILE, verdict

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
    assert trained["gap.auprc"] == trained["sequence.auprc"] - trained["reference.auprc"]
    assert verdict(trained) in " ".join(result.output.split())  # the gap, stated
    assert (out / "report" / REPORT_FILE).is_file()

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


def test_table_puts_the_reference_and_the_gap_beside_the_lstm_cnn():
    metrics = {"sequence.auprc": 0.9, "reference.auprc": 0.95, "autoencoder.auprc": 0.2,
               "sequence.recall_at_1pct_fpr.card_testing": 0.5,
               "reference.recall_at_1pct_fpr.card_testing": 0.75}
    console = Console(width=200, record=True)
    console.print(metrics_table(metrics, "Test period"))
    lines = console.export_text().splitlines()
    header = next(line for line in lines if "LSTM-CNN" in line)
    assert header.split("┃")[2:-1] == [" LSTM-CNN ", " LightGBM reference ", " autoencoder ",
                                     f" {GAP_COLUMN} "]
    auprc = next(line for line in lines if line.startswith("│ auprc "))
    assert [c.strip() for c in auprc.split("│")[2:6]] == ["0.9000", "0.9500", "0.2000",
                                                          "-0.0500"]
    assert any("recall_at_1pct_fpr.card_testing" in line and "-0.2500" in line
               for line in lines)
    assert not any("roc_auc" in line for line in lines)  # no model has it here
    # Without a reference (e.g. `fraudops evaluate`), neither its column nor the gap shows.
    console = Console(width=200, record=True)
    console.print(metrics_table({"sequence.auprc": 0.9, "autoencoder.auprc": 0.2}, "t"))
    assert "reference" not in console.export_text()
