"""The chart's entity stages (consumer.entityStages): a Deployment per stage running
`fraudops consume --stage ...` beside the consumer, both in stage mode; the internal topics as
KafkaTopics (or in the topic Job's list) partitioned like transactions; off by default."""

from __future__ import annotations

import json

import pytest
from crd_validation import load_documents

ON = ("--set", "consumer.entityStages.enabled=true")
STAGES = ("router", "merchant", "device")
INTERNAL = {"transactions-by-merchant", "transactions-by-device", "transactions-enriched"}


def deployments(docs: list[dict]) -> dict[str, dict]:
    return {d["metadata"]["name"].removeprefix("fraudops-"): d for d in docs
            if d["kind"] == "Deployment"}


def env_of(deployment: dict) -> dict[str, str]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value") for e in container["env"]}


def test_off_by_default(render):
    docs = load_documents(render("default"))
    assert not [name for name in deployments(docs) if name.startswith("stage-")]
    assert env_of(deployments(docs)["consumer"])["FRAUDOPS_CONSUMER__ENTITY_STAGES"] == "false"


def test_a_deployment_per_stage_and_the_consumer_in_stage_mode(render):
    docs = load_documents(render("default", *ON))
    units = deployments(docs)
    for stage in STAGES:
        deployment = units[f"stage-{stage}"]
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["command"] == ["fraudops", "consume", "--stage", stage]
        assert deployment["spec"]["replicas"] == 2
        assert env_of(deployment)["FRAUDOPS_CONSUMER__ENTITY_STAGES"] == "true"
        assert env_of(deployment)["FRAUDOPS_KAFKA__TOPICS__ENRICHED"] == "transactions-enriched"
    assert env_of(units["consumer"])["FRAUDOPS_CONSUMER__ENTITY_STAGES"] == "true"
    policies = {d["metadata"]["name"] for d in docs if d["kind"] == "NetworkPolicy"}
    assert {f"fraudops-stage-{s}" for s in STAGES} <= policies


@pytest.mark.parametrize("scenario", ["default", "strimzi"])
def test_internal_topics_are_partitioned_like_transactions(render, scenario):
    docs = load_documents(render(scenario, *ON, "--set",
                                 "kafka.topics.transactions.partitions=9"))
    if scenario == "strimzi":
        topics = {t["spec"]["topicName"]: t["spec"] for t in docs if t["kind"] == "KafkaTopic"}
    else:
        job = next(d for d in docs if d["kind"] == "Job" and "kafka-topics" in d["metadata"]["name"])
        spec = json.loads(env_of(job)["FRAUDOPS_TOPICS_SPEC"])
        topics = {t["name"]: t for t in spec}
    assert INTERNAL <= set(topics)
    assert {int(topics[name]["partitions"]) for name in INTERNAL} == {
        int(topics["transactions"]["partitions"])} == {9}


def test_stage_replicas_beyond_partitions_are_refused(render):
    with pytest.raises(RuntimeError, match="entityStages.replicas .7. exceeds"):
        render("default", *ON, "--set", "consumer.entityStages.replicas=7")


# -- operations: disruption budgets, lag autoscaling, scraping ---------------------------------

SCALED = ("--set", "consumer.entityStages.autoscaling.enabled=true")
#: The stage's input topic (its lag scaler's) by the setting naming it in the stage's environment.
INPUT_ENV = {"router": "FRAUDOPS_KAFKA__TOPICS__TRANSACTIONS",
             "merchant": "FRAUDOPS_KAFKA__TOPICS__BY_MERCHANT",
             "device": "FRAUDOPS_KAFKA__TOPICS__BY_DEVICE"}


def of_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"].removeprefix("fraudops-"): d for d in docs if d["kind"] == kind}


def pod_labels_of(deployment: dict) -> dict[str, str]:
    return deployment["spec"]["template"]["metadata"]["labels"]


def selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_a_disruption_budget_per_stage_selecting_only_its_pods(render):
    docs = load_documents(render("default", *ON))
    budgets, units = of_kind(docs, "PodDisruptionBudget"), deployments(docs)
    for stage in STAGES:
        budget = budgets[f"stage-{stage}"]
        assert budget["spec"]["maxUnavailable"] == 1
        chosen = [name for name, d in units.items()
                  if selects(budget["spec"]["selector"]["matchLabels"], pod_labels_of(d))]
        assert chosen == [f"stage-{stage}"]
    off = load_documents(render("default", *ON, "--set",
                                "consumer.entityStages.pdb.enabled=false"))
    assert not [n for n in of_kind(off, "PodDisruptionBudget") if n.startswith("stage-")]
    assert "consumer" in of_kind(off, "PodDisruptionBudget")  # the consumer's own stays


def test_stage_metrics_are_scraped_like_the_consumers(render):
    docs = load_documents(render("default", *ON))
    services, monitors, units = (of_kind(docs, "Service"), of_kind(docs, "ServiceMonitor"),
                                 deployments(docs))
    for stage in STAGES:
        unit = f"stage-{stage}"
        service, monitor = services[unit], monitors[unit]
        assert service["spec"]["clusterIP"] == "None"
        assert selects(service["spec"]["selector"], pod_labels_of(units[unit]))
        assert not selects(service["spec"]["selector"], pod_labels_of(units["consumer"]))
        assert selects(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
        assert monitor["spec"]["endpoints"][0] | {"interval": None} == {
            **monitors["consumer"]["spec"]["endpoints"][0], "interval": None}
        container = units[unit]["spec"]["template"]["spec"]["containers"][0]
        assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
            "metrics": service["spec"]["ports"][0]["port"]}
        # the port the process serves /metrics on is the one scraped
        assert env_of(units[unit])["FRAUDOPS_CONSUMER__METRICS_PORT"] == str(
            container["ports"][0]["containerPort"])
    # off: no stage Service or monitor
    default = load_documents(render("default"))
    assert not [n for n in of_kind(default, "ServiceMonitor") if n.startswith("stage-")]


@pytest.mark.parametrize("scenario", ["default", "external-kafka"])
def test_each_stage_scales_on_its_own_groups_lag(render, scenario):
    docs = load_documents(render(scenario, *ON, *SCALED, "--set",
                                 "consumer.entityStages.autoscaling.maxReplicas=50",
                                 "--set", "consumer.autoscaling.enabled=true"))
    scaled, units = of_kind(docs, "ScaledObject"), deployments(docs)
    for stage in STAGES:
        unit = f"stage-{stage}"
        spec, env = scaled[unit]["spec"], env_of(units[unit])
        assert spec["scaleTargetRef"]["name"] == units[unit]["metadata"]["name"]
        assert "replicas" not in units[unit]["spec"]  # KEDA owns the count
        trigger = spec["triggers"][0]["metadata"]
        assert trigger["consumerGroup"] == f"{env['FRAUDOPS_CONSUMER__GROUP_ID']}-{stage}"
        assert trigger["topic"] == env[INPUT_ENV[stage]]
        assert spec["maxReplicaCount"] == 6  # the partitions: more would sit idle
    # the consumer, in stage mode, scales on the lag of the topic it reads
    consumer = of_kind(docs, "ScaledObject")["consumer"]["spec"]["triggers"][0]["metadata"]
    assert consumer["topic"] == env_of(units["consumer"])["FRAUDOPS_KAFKA__TOPICS__ENRICHED"]
    if scenario == "external-kafka":  # SASL: the scaler logs in as the stage does
        auths = of_kind(docs, "TriggerAuthentication")
        for stage in STAGES:
            unit = f"stage-{stage}"
            trigger = scaled[unit]["spec"]["triggers"][0]
            assert trigger["metadata"]["sasl"] == "scram_sha512"
            assert trigger["authenticationRef"]["name"] == auths[unit]["metadata"]["name"]
            login = auths[unit]["spec"]["env"][0]
            container = units[unit]["spec"]["template"]["spec"]["containers"][0]
            assert login["containerName"] == container["name"]
            assert login["name"] in {e["name"] for e in container["env"]}


def test_the_consumer_scales_on_transactions_without_stages(render):
    docs = load_documents(render("default", "--set", "consumer.autoscaling.enabled=true"))
    scaled = of_kind(docs, "ScaledObject")
    assert list(scaled) == ["consumer"]
    assert scaled["consumer"]["spec"]["triggers"][0]["metadata"]["topic"] == "transactions"


def test_the_stage_scenario_renders_valid_custom_resources(render, crd_registry):
    """The CI scenario with every stage resource (the chart tests run all their checks on it)."""
    from crd_validation import validate_custom_resources

    docs = load_documents(render("entity-stages"))
    assert validate_custom_resources(crd_registry, docs) == []
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for stage in STAGES:
        for kind in ("Deployment", "Service", "ServiceMonitor", "PodDisruptionBudget",
                     "ScaledObject", "NetworkPolicy"):
            assert (kind, f"fraudops-stage-{stage}") in kinds
