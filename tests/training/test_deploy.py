"""The deploy step's KServe patch and the local reload notification.

The Kubernetes API cannot run here (no cluster, no kube-apiserver): `deploy_to_kserve` is tested
with a MOCKED CustomObjectsApi, checking the exact patch it sends. The local notification is
tested against a real HTTP server on loopback.
"""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from typing import ClassVar
from unittest import mock

import pytest

from fraudops.settings import ModelNames
from fraudops.testing import serve_http
from fraudops.training import deploy
from fraudops.training.registry import ModelVersions

VERSIONS = ModelVersions("7", "5", "run-1")
NAMES = ModelNames()


def _isvc() -> dict:
    return {"metadata": {"name": "fraudops-predictor", "namespace": "fraud"},
            "spec": {"predictor": {"canaryTrafficPercent": None, "containers": [
                {"name": "kserve-container", "image": "predictor:1", "env": [
                    {"name": "FRAUDOPS_PREDICTOR__HTTP_PORT", "value": "8080"},
                    {"name": deploy.SEQUENCE_ENV, "value": "models:/fraud-lstm-cnn@champion"},
                    {"name": deploy.AUTOENCODER_ENV,
                     "value": "models:/fraud-autoencoder@champion"}]},
                {"name": "sidecar", "image": "proxy:1"}]}}}


def _env(patch: dict) -> dict[str, str]:
    container = next(c for c in patch["spec"]["predictor"]["containers"]
                     if c["name"] == "kserve-container")
    return {e["name"]: e["value"] for e in container["env"]}


def test_patch_pins_versions_and_sets_canary():
    target = deploy.DeployTarget("fraudops-predictor", "fraud", canary_percent=20)
    patch = deploy.build_patch(_isvc(), VERSIONS, NAMES, target)
    env = _env(patch)
    assert env[deploy.SEQUENCE_ENV] == "models:/fraud-lstm-cnn/7"
    assert env[deploy.AUTOENCODER_ENV] == "models:/fraud-autoencoder/5"
    assert env["FRAUDOPS_PREDICTOR__HTTP_PORT"] == "8080"  # other settings kept
    assert patch["spec"]["predictor"]["canaryTrafficPercent"] == 20
    names = [c["name"] for c in patch["spec"]["predictor"]["containers"]]
    assert names == ["kserve-container", "sidecar"]  # the list is replaced whole: keep all
    assert patch["metadata"]["annotations"][deploy.VERSIONS_ANNOTATION] == \
        "fraud-lstm-cnn=7,fraud-autoencoder=5"


def test_storage_mode_sets_storage_uri_only():
    target = deploy.DeployTarget("p", "ns", canary_percent=None, storage_uri="s3://b/models/7")
    patch = deploy.build_patch(_isvc(), VERSIONS, NAMES, target)
    assert _env(patch)[deploy.STORAGE_ENV] == "s3://b/models/7"
    assert patch["spec"]["predictor"]["canaryTrafficPercent"] is None  # all traffic at once


def test_service_without_model_container_is_refused():
    isvc = _isvc()
    isvc["spec"]["predictor"]["containers"] = [{"name": "other"}]
    with pytest.raises(deploy.DeployError, match="kserve-container"):
        deploy.build_patch(isvc, VERSIONS, NAMES, deploy.DeployTarget("p", "ns"))


def test_deploy_reads_then_patches_the_inference_service():
    api = mock.Mock()  # stands in for kubernetes.client.CustomObjectsApi (no cluster here)
    api.get_namespaced_custom_object.return_value = _isvc()
    target = deploy.DeployTarget("fraudops-predictor", "fraud", canary_percent=10)
    deploy.deploy_to_kserve(api, VERSIONS, NAMES, target)
    coordinates = {"group": "serving.kserve.io", "version": "v1beta1", "namespace": "fraud",
                   "plural": "inferenceservices", "name": "fraudops-predictor"}
    api.get_namespaced_custom_object.assert_called_once_with(**coordinates)
    kwargs = api.patch_namespaced_custom_object.call_args.kwargs
    assert {k: kwargs[k] for k in coordinates} == coordinates
    assert kwargs["body"] == deploy.build_patch(_isvc(), VERSIONS, NAMES, target)


def test_api_errors_become_deploy_errors():
    api = mock.Mock()
    api.get_namespaced_custom_object.side_effect = RuntimeError("403 Forbidden")
    with pytest.raises(deploy.DeployError, match="403"):
        deploy.deploy_to_kserve(api, VERSIONS, NAMES, deploy.DeployTarget("p", "ns"))


class _Recorder(BaseHTTPRequestHandler):
    received: ClassVar[list] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Recorder.received.append((self.path, json.loads(body)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_local_reload_posts_versions_to_a_real_server():
    with serve_http(_Recorder) as server:
        url = f"http://127.0.0.1:{server.server_port}/reload"
        message = deploy.notify_local(VERSIONS, url)
    assert "204" in message
    assert _Recorder.received == [("/reload", VERSIONS.to_dict())]


def test_local_without_reload_url_relies_on_the_watcher():
    assert "watcher" in deploy.notify_local(VERSIONS, None)


def test_unreachable_reload_url_is_a_clear_error():
    with pytest.raises(deploy.DeployError, match="reload request"):
        deploy.notify_local(VERSIONS, "http://127.0.0.1:9/reload", timeout_s=1)
