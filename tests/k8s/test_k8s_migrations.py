"""The chart's schema migration Job (`fraudops db upgrade`): a plain Job on install (the bundled
PostgreSQL and the ServiceAccount do not exist before it), a pre-upgrade hook on upgrade; the
same database settings and ServiceAccount as the consumer."""

from __future__ import annotations

import pytest
from chart_tools import SCENARIOS
from crd_validation import load_documents
from manifests import containers, pod_spec

HOOK = "helm.sh/hook"


def _job(docs: list[dict]) -> dict:
    jobs = [d for d in docs if d["kind"] == "Job" and "db-migrate" in d["metadata"]["name"]]
    assert len(jobs) == 1, [d["metadata"]["name"] for d in jobs]
    return jobs[0]


def _unit(docs: list[dict], kind: str, component: str) -> dict:
    return next(d for d in docs if d["kind"] == kind
                and d["metadata"]["labels"].get("app.kubernetes.io/component") == component)


def _database_env(spec: dict) -> list[dict]:
    env = containers(spec)[0]["env"]
    return [e for e in env if e["name"] in {"FRAUDOPS_DATABASE__URL", "PGPASSWORD"}]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_the_job_migrates_the_consumers_database(render, scenario: str) -> None:
    docs = load_documents(render(scenario))
    job, consumer = _job(docs), _unit(docs, "Deployment", "consumer")
    spec, consumer_spec = pod_spec(job), pod_spec(consumer)
    (container,) = containers(spec)
    assert container["command"] == ["fraudops", "db", "upgrade"]
    assert container["image"] == containers(consumer_spec)[0]["image"]
    database = _database_env(spec)
    assert database and database == _database_env(consumer_spec)
    assert spec["serviceAccountName"] == consumer_spec["serviceAccountName"]
    assert spec["restartPolicy"] == "Never" and job["spec"]["backoffLimit"] >= 3


def test_on_install_a_plain_job_on_upgrade_a_pre_upgrade_hook(render) -> None:
    installed = _job(load_documents(render("default")))
    assert HOOK not in installed["metadata"].get("annotations", {})
    upgraded = _job(load_documents(render("default", "--is-upgrade")))
    annotations = upgraded["metadata"]["annotations"]
    assert annotations[HOOK] == "pre-upgrade"
    assert int(annotations["helm.sh/hook-weight"]) < 0
    assert set(annotations["helm.sh/hook-delete-policy"].split(",")) == {
        "before-hook-creation", "hook-succeeded"}


def test_the_job_may_reach_the_bundled_postgresql(render) -> None:
    docs = load_documents(render("default"))
    policy = next(d for d in docs if d["kind"] == "NetworkPolicy"
                  and d["metadata"]["labels"]["app.kubernetes.io/component"] == "postgresql")
    labels = _job(docs)["spec"]["template"]["metadata"]["labels"]
    peers = [peer["podSelector"]["matchLabels"] for rule in policy["spec"]["ingress"]
             for peer in rule["from"] if "podSelector" in peer]
    assert any(all(labels.get(k) == v for k, v in peer.items()) for peer in peers)


def test_an_existing_database_secret_is_what_the_job_reads(render) -> None:
    docs = load_documents(render("external-kafka"))  # database.existingSecret, no PostgreSQL
    (url,) = _database_env(pod_spec(_job(docs)))
    assert url["valueFrom"]["secretKeyRef"] == {"name": "fraudops-database", "key": "url"}


def test_the_job_can_be_switched_off(render) -> None:
    docs = load_documents(render("default", "--set", "migrations.enabled=false"))
    assert not [d for d in docs if "db-migrate" in d["metadata"]["name"]]
