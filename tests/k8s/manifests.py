"""Helpers to walk rendered Kubernetes manifests: pod specs, containers, label selection."""

from __future__ import annotations

from collections.abc import Iterator

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}


def pod_spec(doc: dict) -> dict | None:
    """The pod spec of a workload (InferenceService predictors count as one)."""
    kind = doc.get("kind")
    if kind in WORKLOAD_KINDS:
        return doc["spec"]["template"]["spec"]
    if kind == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    if kind == "InferenceService":
        return doc["spec"]["predictor"]
    return None


def pod_labels(doc: dict) -> dict:
    kind = doc.get("kind")
    if kind in WORKLOAD_KINDS:
        return doc["spec"]["template"]["metadata"].get("labels", {})
    if kind == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["metadata"].get("labels", {})
    if kind == "InferenceService":
        return doc["spec"]["predictor"].get("labels", {})
    return {}


def pod_specs(docs: list[dict]) -> Iterator[tuple[dict, dict]]:
    for doc in docs:
        spec = pod_spec(doc)
        if spec is not None:
            yield doc, spec


def containers(spec: dict) -> list[dict]:
    return spec.get("initContainers", []) + spec.get("containers", [])


def long_running(doc: dict) -> bool:
    return doc["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "InferenceService"}


def selects(selector: dict, labels: dict) -> bool:
    """Whether a matchLabels-style selector (or a LabelSelector) selects these labels."""
    match = selector.get("matchLabels", selector) if "matchExpressions" not in selector else \
        selector.get("matchLabels", {})
    return all(labels.get(k) == v for k, v in match.items())


def ident(doc: dict) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"
