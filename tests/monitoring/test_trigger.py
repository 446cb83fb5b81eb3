"""Retraining launchers.

No Kubeflow Pipelines API server can run here (it needs Kubernetes), so `KfpLauncher` is tested
against a fake `kfp.Client` that records calls and answers like the real one (objects with
`pipeline_id`, `pipeline_versions`, `experiment_id`, `run_id`). The command launcher starts a real
process.
"""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace

import pytest

from fraudops.settings import KfpSettings
from monitoring.exceptions import RetrainLaunchError
from monitoring.settings import RetrainPolicySettings
from monitoring.trigger import (
    CommandLauncher,
    EntrypointLauncher,
    KfpLauncher,
    NoLauncher,
    RetrainRequest,
    build_launcher,
)

REQUEST = RetrainRequest("retrain-r1", {"trigger_reason": "drift", "drift_report_id": "r1",
                                        "window_end": "2026-03-01T00:00:00+00:00"})
SPEC = {"root": {"inputDefinitions": {"parameters": {"trigger_reason": {"parameterType": "STRING"},
                                                     "data_path": {"parameterType": "STRING"}}}}}


class FakeKfpClient:
    """Answers the four calls `KfpLauncher` makes, like kfp.Client 2.x does."""

    def __init__(self, pipelines: dict[str, str] | None = None, versions=("v2", "v1")) -> None:
        self.pipelines = {"fraudops-training": "p-1"} if pipelines is None else pipelines
        self.versions = versions
        self.calls = []

    def get_pipeline_id(self, name):
        self.calls.append(("get_pipeline_id", name))
        return self.pipelines.get(name)

    def list_pipeline_versions(self, pipeline_id, page_size=10, sort_by=""):
        self.calls.append(("list_pipeline_versions", pipeline_id, sort_by))
        found = [SimpleNamespace(pipeline_version_id=v, pipeline_spec=SPEC)
                 for v in self.versions[:page_size]]
        return SimpleNamespace(pipeline_versions=found or None)

    def create_experiment(self, name, description=None, namespace=None):
        self.calls.append(("create_experiment", name, namespace))
        return SimpleNamespace(experiment_id="e-1")

    def run_pipeline(self, experiment_id, job_name, params=None, pipeline_id=None,
                     version_id=None, **_):
        self.calls.append(("run_pipeline", experiment_id, job_name, params, pipeline_id,
                           version_id))
        return SimpleNamespace(run_id="run-42")


def test_kfp_launcher_runs_the_latest_version_with_declared_params_only():
    client = FakeKfpClient()
    launch = KfpLauncher(client, KfpSettings(namespace="team-a")).launch(REQUEST)
    assert (launch.launcher, launch.run_id) == ("kfp", "run-42")
    run = client.calls[-1]
    assert run == ("run_pipeline", "e-1", "retrain-r1", {"trigger_reason": "drift"}, "p-1", "v2")
    assert ("create_experiment", "fraudops-retraining", "team-a") in client.calls
    assert ("list_pipeline_versions", "p-1", "created_at desc") in client.calls


def test_kfp_launcher_without_uploaded_pipeline_says_so():
    with pytest.raises(RetrainLaunchError, match="upload it first"):
        KfpLauncher(FakeKfpClient(pipelines={}), KfpSettings()).launch(REQUEST)
    with pytest.raises(RetrainLaunchError, match="has no version"):
        KfpLauncher(FakeKfpClient(versions=()), KfpSettings()).launch(REQUEST)


def test_kfp_launcher_wraps_api_errors():
    client = FakeKfpClient()
    client.run_pipeline = lambda **_: (_ for _ in ()).throw(ConnectionError("refused"))
    with pytest.raises(RetrainLaunchError, match="refused"):
        KfpLauncher(client, KfpSettings()).launch(REQUEST)


def test_build_launcher_uses_the_client_factory_for_kfp():
    seen = []
    launcher = build_launcher(RetrainPolicySettings(launcher="kfp"),
                              KfpSettings(host="http://kfp:8888"),
                              client_factory=lambda s: seen.append(s.host) or FakeKfpClient())
    assert isinstance(launcher, KfpLauncher) and seen == ["http://kfp:8888"]
    assert isinstance(build_launcher(RetrainPolicySettings(launcher="none"), KfpSettings()),
                      NoLauncher)


def test_auto_picks_kfp_in_a_cluster_and_the_command_locally():
    auto = RetrainPolicySettings()
    assert auto.launcher == "auto"
    assert isinstance(build_launcher(auto, KfpSettings(host="http://kfp:8888"),
                                     client_factory=lambda s: FakeKfpClient()), KfpLauncher)
    local = build_launcher(auto, KfpSettings())
    assert isinstance(local, CommandLauncher) and local.argv[:3] == ["fraudops", "pipeline", "run"]


def test_kfp_without_host_is_refused():
    with pytest.raises(RetrainLaunchError, match="FRAUDOPS_KFP__HOST"):
        build_launcher(RetrainPolicySettings(launcher="kfp"), KfpSettings())


def test_command_launcher_passes_params_to_a_real_process(tmp_path):
    out = tmp_path / "argv.json"
    script = f"import json, sys; json.dump(sys.argv[1:], open({str(out)!r}, 'w'))"
    launch = CommandLauncher((sys.executable, "-c", script), timeout=30).launch(REQUEST)
    assert launch.launcher == "command" and launch.pid > 0 and launch.run_id is None
    argv = json.loads(out.read_text())
    assert argv[:2] == ["--param", "trigger_reason=drift"] and "drift_report_id=r1" in argv


def test_command_launcher_reports_failure(tmp_path):
    with pytest.raises(RetrainLaunchError, match="status 3"):
        CommandLauncher((sys.executable, "-c", "raise SystemExit(3)"), timeout=30).launch(REQUEST)
    with pytest.raises(RetrainLaunchError, match="cannot run"):
        CommandLauncher((str(tmp_path / "missing"),)).launch(REQUEST)


def test_entrypoint_launcher_calls_the_function():
    calls = []
    launch = EntrypointLauncher(lambda **kw: calls.append(kw) or SimpleNamespace(run_id="abc")
                                ).launch(REQUEST)
    assert calls == [REQUEST.params] and launch.run_id == "abc"
    with pytest.raises(RetrainLaunchError, match="cannot import"):
        EntrypointLauncher("no_such_module:run").launch(REQUEST)
