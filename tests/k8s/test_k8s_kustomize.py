"""Plain manifests (k8s/): the base is the chart rendered by tools/render_k8s_base.py and kept in
sync; every overlay builds with `kubectl kustomize` and validates like the chart does."""

from __future__ import annotations

import subprocess
import sys

import pytest
from chart_tools import KUSTOMIZE_DIR, REPO_ROOT, run
from crd_validation import load_documents, validate_custom_resources
from manifests import containers, pod_specs

TARGETS = ["base"] + sorted(p.name for p in (KUSTOMIZE_DIR / "overlays").glob("*") if p.is_dir())


def target_dir(name: str):
    return KUSTOMIZE_DIR / name if name == "base" else KUSTOMIZE_DIR / "overlays" / name


@pytest.fixture(scope="module")
def built(kubectl):
    outputs = {}
    for name in TARGETS:
        result = run([kubectl, "kustomize", str(target_dir(name))])
        assert result.returncode == 0, f"{name}: {result.stderr}"
        outputs[name] = result.stdout
    return outputs


def env_of(docs, kind, name_suffix):
    doc = next(d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(name_suffix))
    spec = next(s for _, s in pod_specs([doc]))
    return {e["name"]: e.get("value") for c in containers(spec) for e in c.get("env", [])}


def test_base_is_in_sync_with_the_chart(helm):
    result = subprocess.run([sys.executable, str(REPO_ROOT / "tools" / "render_k8s_base.py"),
                             "--check"], check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", TARGETS)
def test_builtin_kinds_valid(built, name, tmp_path):
    path = tmp_path / f"{name}.yaml"
    path.write_text(built[name])
    result = run([sys.executable, "-m", "kubernetes_validate", "--strict", "-k", "1.30", "--quiet",
                  str(path)])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", TARGETS)
def test_custom_resources_valid_strict(built, name, crd_registry):
    docs = load_documents(built[name])
    assert validate_custom_resources(crd_registry, docs) == []
    assert any(d["kind"] == "InferenceService" for d in docs)


@pytest.mark.parametrize("name", TARGETS)
def test_no_helm_metadata_left(built, name):
    assert "helm.sh/" not in built[name]
    assert "managed-by: Helm" not in built[name]


def test_dev_overlay_is_small_and_debug_logging_only_where_patched(built):
    docs = load_documents(built["dev"])
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    assert deployments["fraudops-gateway"]["spec"]["replicas"] == 1
    assert deployments["fraudops-consumer"]["spec"]["replicas"] == 1
    assert env_of(docs, "Deployment", "gateway")["FRAUDOPS_LOG_LEVEL"] == "DEBUG"
    mlflow_env = env_of(docs, "Deployment", "mlflow")
    assert mlflow_env["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql+psycopg://")
    isvc = next(d for d in docs if d["kind"] == "InferenceService")
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"


def test_gpu_overlay_puts_the_cuda_predictor_on_gpu_nodes(built):
    isvc = next(d for d in load_documents(built["gpu"]) if d["kind"] == "InferenceService")
    predictor = isvc["spec"]["predictor"]
    container = predictor["containers"][0]
    assert container["image"].split(":")[0].endswith("fraudops-predictor-cuda")
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert predictor["tolerations"][0]["key"] == "nvidia.com/gpu"
    base_isvc = next(d for d in load_documents(built["base"]) if d["kind"] == "InferenceService")
    assert "nvidia.com/gpu" not in str(base_isvc)


PREREQUISITES = sorted((KUSTOMIZE_DIR / "prerequisites").glob("*.yaml"))
MANIFESTS = [p for p in PREREQUISITES if not p.name.endswith(".patch.yaml")]


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_prerequisite_manifests_valid(path, crd_registry):
    result = run([sys.executable, "-m", "kubernetes_validate", "--strict", "-k", "1.30", "--quiet",
                  str(path)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert validate_custom_resources(crd_registry, load_documents(path.read_text())) == []


def test_strimzi_prerequisite_matches_the_base_bootstrap_address(built):
    docs = load_documents((KUSTOMIZE_DIR / "prerequisites" / "strimzi-kafka.yaml").read_text())
    kafka = next(d for d in docs if d["kind"] == "Kafka")
    expected = f"{kafka['metadata']['name']}-kafka-bootstrap.{kafka['metadata']['namespace']}.svc:9092"
    assert env_of(load_documents(built["base"]), "Deployment", "consumer")[
        "FRAUDOPS_KAFKA__BOOTSTRAP_SERVERS"] == expected


@pytest.mark.parametrize("path", [p for p in PREREQUISITES if p.name.endswith(".patch.yaml")],
                         ids=lambda p: p.name)
def test_configmap_patches_set_string_data_only(path):
    patch = load_documents(path.read_text())[0]
    assert set(patch) == {"data"}
    assert all(isinstance(v, str) for v in patch["data"].values())
