"""The training pipeline's deploy step against the chart's InferenceService, without a cluster.

The Kubernetes API is the one thing that cannot run here, so a small in-memory stand-in serves
the rendered InferenceService and applies JSON merge patches (RFC 7386) the way the API server
does for custom resources. Checked: the patch the deploy step sends leaves a resource that still
validates strictly against the KServe CRD, changes only what a rollout should, and needs no verb
beyond what the chart's Role grants the pipeline runner on that InferenceService.
"""

from __future__ import annotations

import copy

import pytest
from crd_validation import load_documents

deploy = pytest.importorskip("fraudops.training.deploy")
registry = pytest.importorskip("fraudops.training.registry")
from fraudops.settings import ModelNames


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class FakeCustomObjectsApi:
    """In-memory stand-in for kubernetes.client.CustomObjectsApi (one object); records verbs."""

    def __init__(self, obj: dict):
        self.obj = copy.deepcopy(obj)
        self.verbs: list[tuple[str, str]] = []

    def _check(self, verb, group, version, namespace, plural, name):
        assert (group, version, plural) == ("serving.kserve.io", "v1beta1", "inferenceservices")
        assert (namespace, name) == (self.obj["metadata"]["namespace"], self.obj["metadata"]["name"])
        self.verbs.append((verb, name))

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        self._check("get", group, version, namespace, plural, name)
        return copy.deepcopy(self.obj)

    def patch_namespaced_custom_object(self, group, version, namespace, plural, name, body):
        self._check("patch", group, version, namespace, plural, name)
        self.obj = merge_patch(self.obj, body)
        return copy.deepcopy(self.obj)


def rendered(render, scenario):
    docs = load_documents(render(scenario))
    isvc = next(d for d in docs if d["kind"] == "InferenceService")
    roles = [d for d in docs if d["kind"] == "Role"]
    return isvc, roles


def granted_verbs(roles, name):
    return {verb for role in roles for rule in role["rules"]
            if "inferenceservices" in rule["resources"] and name in rule.get("resourceNames", [])
            for verb in rule["verbs"]}


def env_of(isvc):
    return {e["name"]: e.get("value") for e in isvc["spec"]["predictor"]["containers"][0]["env"]}


@pytest.mark.parametrize("scenario, storage_uri", [("default", None),
                                                   ("gpu", "s3://fraudops-models/v7")])
def test_deploy_step_patches_the_chart_inference_service(render, crd_registry, scenario,
                                                         storage_uri):
    isvc, roles = rendered(render, scenario)
    api = FakeCustomObjectsApi(isvc)
    meta = isvc["metadata"]
    target = deploy.DeployTarget(meta["name"], meta["namespace"], canary_percent=20,
                                 storage_uri=storage_uri)
    deploy.deploy_to_kserve(api, registry.ModelVersions("7", "5"), ModelNames(), target)

    assert crd_registry.errors(api.obj) == []
    assert {verb for verb, _ in api.verbs} <= granted_verbs(roles, meta["name"])
    after, before = env_of(api.obj), env_of(isvc)
    assert api.obj["spec"]["predictor"]["canaryTrafficPercent"] == 20
    if storage_uri:
        assert after["STORAGE_URI"] == storage_uri
    else:
        assert after["FRAUDOPS_PREDICTOR__SEQUENCE_MODEL_URI"] == "models:/fraud-lstm-cnn/7"
        assert after["FRAUDOPS_PREDICTOR__AUTOENCODER_MODEL_URI"] == "models:/fraud-autoencoder/5"
    changed = {k for k in before if before[k] != after.get(k)}
    assert changed <= {"STORAGE_URI", "FRAUDOPS_PREDICTOR__SEQUENCE_MODEL_URI",
                       "FRAUDOPS_PREDICTOR__AUTOENCODER_MODEL_URI"}
    untouched = {k: v for k, v in api.obj["spec"]["predictor"].items()
                 if k not in {"containers", "canaryTrafficPercent"}}
    assert untouched == {k: v for k, v in isvc["spec"]["predictor"].items()
                         if k not in {"containers", "canaryTrafficPercent"}}
