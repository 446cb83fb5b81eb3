"""Deploy a promoted model pair.

Cluster: patch the KServe InferenceService that serves the champion so a new revision loads the
exact promoted versions (URIs pinned to ``models:/NAME/VERSION``, or a new storage URI), with a
canary traffic percent; KServe keeps the previous revision serving the rest until the canary is
promoted. Pinning matters: if both revisions loaded ``@champion`` they would serve the same model
and the canary would compare nothing.

Local platform: the predictor watches the champion alias and swaps models by itself; the step
optionally POSTs to a reload URL and otherwise only reports what the alias now points to.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass

from fraudops.settings import ModelNames
from fraudops.training.exceptions import TrainingError
from fraudops.training.registry import ModelVersions, model_uri

log = logging.getLogger(__name__)
KSERVE_GROUP, KSERVE_VERSION, KSERVE_PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
CONTAINER = "kserve-container"
SEQUENCE_ENV = "FRAUDOPS_PREDICTOR__SEQUENCE_MODEL_URI"
AUTOENCODER_ENV = "FRAUDOPS_PREDICTOR__AUTOENCODER_MODEL_URI"
STORAGE_ENV = "STORAGE_URI"
VERSIONS_ANNOTATION = "fraudops.io/model-versions"


class DeployError(TrainingError):
    """The new model could not be rolled out."""


@dataclass(frozen=True)
class DeployTarget:
    """Which InferenceService to update and how."""

    name: str
    namespace: str
    canary_percent: int | None = 10  # None: send all traffic to the new revision at once
    storage_uri: str | None = None  # set: "storage" mode (models under /mnt/models)


def _set_env(env: list[dict], name: str, value: str) -> list[dict]:
    kept = [e for e in env if e.get("name") != name]
    return [*kept, {"name": name, "value": value}]


def build_patch(current: dict, versions: ModelVersions, names: ModelNames,
                target: DeployTarget) -> dict:
    """JSON merge patch for `current` (the InferenceService as read from the API).

    Containers are a list, which a merge patch replaces whole: the patch carries the current
    containers with only our environment variables changed.
    """
    predictor = current.get("spec", {}).get("predictor", {})
    containers = copy.deepcopy(predictor.get("containers") or [])
    container = next((c for c in containers if c.get("name") == CONTAINER), None)
    if container is None:
        raise DeployError(f"InferenceService {target.namespace}/{target.name} has no "
                          f"{CONTAINER} container to update")
    env = container.get("env") or []
    if target.storage_uri:
        env = _set_env(env, STORAGE_ENV, target.storage_uri)
    else:
        env = _set_env(env, SEQUENCE_ENV, model_uri(names.sequence, versions.sequence))
        env = _set_env(env, AUTOENCODER_ENV, model_uri(names.autoencoder, versions.autoencoder))
    container["env"] = env
    stamp = f"{names.sequence}={versions.sequence},{names.autoencoder}={versions.autoencoder}"
    predictor_patch: dict = {"containers": containers,
                             "canaryTrafficPercent": target.canary_percent}
    return {"metadata": {"annotations": {VERSIONS_ANNOTATION: stamp}},
            "spec": {"predictor": predictor_patch}}


def deploy_to_kserve(api, versions: ModelVersions, names: ModelNames,
                     target: DeployTarget) -> dict:
    """Read, patch and return the InferenceService. `api`: kubernetes CustomObjectsApi."""
    coordinates = {"group": KSERVE_GROUP, "version": KSERVE_VERSION,
                   "namespace": target.namespace, "plural": KSERVE_PLURAL, "name": target.name}
    try:
        current = api.get_namespaced_custom_object(**coordinates)
        patch = build_patch(current, versions, names, target)
        result = api.patch_namespaced_custom_object(body=patch, **coordinates)
    except DeployError:
        raise
    except Exception as error:  # the kubernetes client raises ApiException and urllib3 errors
        raise DeployError(f"patching InferenceService {target.namespace}/{target.name} "
                          f"failed: {error}") from error
    log.info("InferenceService %s/%s now rolls out %s (canary %s%%)", target.namespace,
             target.name, versions.to_dict(), target.canary_percent)
    return result


def kubernetes_api():
    """CustomObjectsApi from the in-cluster service account (or the local kubeconfig)."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.CustomObjectsApi()


def notify_local(versions: ModelVersions, reload_url: str | None, timeout_s: float = 10.0
                 ) -> str:
    """Local platform: POST the new versions to `reload_url` if set; the predictor's alias
    watcher picks the champion up either way."""
    if not reload_url:
        return "local: the predictor's champion watcher picks up the new alias"
    import httpx

    try:
        response = httpx.post(reload_url, json=versions.to_dict(), timeout=timeout_s)
        response.raise_for_status()
    except httpx.HTTPError as error:
        raise DeployError(f"reload request to {reload_url} failed: {error}") from error
    return f"local: reload requested at {reload_url} ({response.status_code})"
