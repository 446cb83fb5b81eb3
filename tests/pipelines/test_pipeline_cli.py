"""`fraudops pipeline` commands. KFP cannot run here: `submit` is tested with a MOCKED
kfp.Client (checking what it would send); compile and local runs use the real kfp."""

from __future__ import annotations

from unittest import mock

import pytest
import typer
from typer.testing import CliRunner

from pipelines import cli

runner = CliRunner()


def test_parse_params():
    assert cli.parse_params(["data_path=/d/x.parquet", "config_json={\"a\": 1}"]) == {
        "data_path": "/d/x.parquet", "config_json": "{\"a\": 1}"}
    with pytest.raises(typer.BadParameter):
        cli.parse_params(["nonsense"])


def test_undeclared_parameters_are_dropped():
    kept = cli.declared_only({"data_path": "x", "window_start": "2026-01-01",
                              "trigger_reason": "drift", "champion_version": "3"})
    assert kept == {"data_path": "x", "window_start": "2026-01-01"}


def test_run_requires_local_and_data_path():
    assert runner.invoke(cli.app, ["run", "--param", "data_path=x"]).exit_code != 0
    result = runner.invoke(cli.app, ["run", "--local"])
    assert result.exit_code != 0 and "data_path" in result.output


def test_compile_writes_yaml(tmp_path, monkeypatch):
    monkeypatch.setenv("FRAUDOPS_KFP__IMAGE", "registry.example/p:3")
    result = runner.invoke(cli.app, ["compile", "--out", str(tmp_path / "p.yaml")])
    assert result.exit_code == 0, result.output
    assert "registry.example/p:3" in (tmp_path / "p.yaml").read_text()


def test_submit_sends_cluster_arguments(monkeypatch):
    monkeypatch.setenv("FRAUDOPS_KFP__PREDICTOR_NAME", "isvc")
    client = mock.Mock()
    client.create_run_from_pipeline_func.return_value.run_id = "run-42"
    with mock.patch("kfp.Client", return_value=client) as factory:
        result = runner.invoke(cli.app, ["submit", "--host", "http://kfp:8888",
                                         "--param", "data_path=s3://b/t.parquet"])
    assert result.exit_code == 0, result.output
    assert factory.call_args.kwargs["host"] == "http://kfp:8888"
    arguments = client.create_run_from_pipeline_func.call_args.kwargs["arguments"]
    assert arguments["data_path"] == "s3://b/t.parquet"
    assert arguments["deploy_mode"] == "kserve" and arguments["predictor_name"] == "isvc"
    assert "run-42" in result.output


def test_schedule_replaces_the_previous_recurring_run(monkeypatch):
    """MOCKED kfp.Client: a rerun (chart upgrade) must leave one schedule, not two."""
    monkeypatch.setenv("FRAUDOPS_KFP__PIPELINE_NAME", "fraud-training")
    client = mock.Mock()
    client.get_pipeline_id.return_value = "p-1"
    client.list_pipeline_versions.return_value.pipeline_versions = [
        mock.Mock(pipeline_version_id="v-9")]
    client.create_experiment.return_value.experiment_id = "e-1"
    old, other = mock.Mock(recurring_run_id="r-old"), mock.Mock(recurring_run_id="r-keep")
    old.display_name, other.display_name = "fraud-training-scheduled", "someone-else"
    client.list_recurring_runs.return_value = mock.Mock(recurring_runs=[old, other],
                                                         next_page_token="")
    client.create_recurring_run.return_value.recurring_run_id = "r-new"
    with mock.patch("kfp.Client", return_value=client):
        result = runner.invoke(cli.app, ["schedule", "--host", "http://kfp:8888",
                                         "--param", "data_path=s3://b/t.parquet"])
    assert result.exit_code == 0, result.output
    client.delete_recurring_run.assert_called_once_with("r-old")
    assert client.create_recurring_run.call_args.args[1] == "fraud-training-scheduled"
    assert client.create_recurring_run.call_args.kwargs["version_id"] == "v-9"
    assert '"replaced": ["r-old"]' in result.output


def test_run_drops_the_drift_jobs_trigger_metadata(monkeypatch):
    """The drift job's command launcher appends descriptive parameters; `run` must not fail."""
    seen = {}

    def fake_run_local(values, root, image):  # kfp.local itself is exercised in test_local_run
        seen.update(values)
        raise RuntimeError("stop here")

    monkeypatch.setattr("pipelines.local.run_local", fake_run_local)
    result = runner.invoke(cli.app, ["run", "--local", "--param", "data_path=/d.parquet",
                                     "--param", "trigger_reason=drift",
                                     "--param", "drift_report_id=r1",
                                     "--param", "champion_version=3"])
    assert seen == {"data_path": "/d.parquet"}
    assert "pipeline failed" in result.output
