"""The Helm chart, offline: lint, render every CI scenario, validate every kind strictly, and
check the properties the chart promises (security context, probes, RBAC, selectors, GPU, topics).

No cluster: built-in kinds are validated with kubernetes-validate's Kubernetes 1.30 schemas,
custom resources with the upstream CRDs (see crd_validation.py).
"""

from __future__ import annotations

import json
import re
import sys
import tarfile

import pytest
import yaml
from chart_tools import CHART_DIR, NAMESPACE, SCENARIOS, run
from crd_validation import load_documents, validate_custom_resources
from manifests import containers, ident, long_running, pod_labels, pod_specs, selects

KUBERNETES_VALIDATE = [sys.executable, "-m", "kubernetes_validate"]
# Kinds with no CRD available offline; rendered only when the feature is switched on.
UNVALIDATED_KINDS = {"ScaledObject", "TriggerAuthentication"}
# Environment variables not in the FRAUDOPS_ namespace, each required by a third-party program
# (POD_IP: by Kubernetes' $(VAR) expansion in the gateway's allowed hosts).
FOREIGN_ENV = {"STORAGE_URI", "MLFLOW_BACKEND_STORE_URI", "MLFLOW_S3_ENDPOINT_URL",
               "MLFLOW_SERVER_ALLOWED_HOSTS", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "HOME",
               "PGPASSWORD", "POSTGRES_USER", "POSTGRES_DB", "POSTGRES_PASSWORD", "PGDATA",
               "POD_IP"}
SENSITIVE = re.compile(r"PASSWORD|API_KEYS|DATABASE__URL|WEBHOOK_URL|SECRET|BACKEND_STORE_URI")


@pytest.fixture(scope="module", params=SCENARIOS)
def scenario(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def docs(render, scenario) -> list[dict]:
    return load_documents(render(scenario))


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def test_helm_lint_strict(helm, scenario):
    args = [] if scenario == "default" else ["-f", str(CHART_DIR / "ci" / f"{scenario}-values.yaml")]
    result = run([helm, "lint", "--strict", str(CHART_DIR), "--namespace", NAMESPACE, *args])
    assert result.returncode == 0, result.stdout + result.stderr


def test_builtin_kinds_valid_for_kubernetes_1_30(render, scenario, tmp_path):
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(render(scenario))
    result = run([*KUBERNETES_VALIDATE, "--strict", "-k", "1.30", "--quiet", str(manifest)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ERROR" not in result.stdout + result.stderr


def test_custom_resources_valid_against_crds_strict(docs, crd_registry):
    assert validate_custom_resources(crd_registry, docs) == []
    custom = {d["kind"] for d in docs if "/" in d["apiVersion"] and "." in d["apiVersion"]
              and not d["apiVersion"].split("/")[0].endswith("k8s.io")}
    unknown = {k for k in custom if not any(k == kind for _, kind in crd_registry.schemas)}
    assert unknown <= UNVALIDATED_KINDS, f"custom kinds without a CRD to validate: {unknown}"
    assert {"InferenceService", "ServiceMonitor", "PrometheusRule"} <= custom


def test_every_resource_is_namespaced_explicitly(docs):
    missing = [ident(d) for d in docs if not d["metadata"].get("namespace")]
    assert missing == []


def test_pods_run_non_root_read_only_without_capabilities(docs):
    for doc, spec in pod_specs(docs):
        pod = spec.get("securityContext", {})
        assert pod.get("runAsNonRoot") is True, ident(doc)
        assert pod.get("seccompProfile", {}).get("type") == "RuntimeDefault", ident(doc)
        assert spec.get("automountServiceAccountToken") is False, ident(doc)
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for c in containers(spec):
            sc = c.get("securityContext", {})
            where = f"{ident(doc)} container {c['name']}"
            assert sc.get("readOnlyRootFilesystem") is True, where
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
            assert sc.get("runAsUser", pod.get("runAsUser", 0)) >= 10000, where
            tmp = [m for m in c.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
            assert tmp and "emptyDir" in volumes[tmp[0]["name"]], f"{where}: no emptyDir /tmp"


def test_containers_have_requests_limits_and_probes(docs):
    for doc, spec in pod_specs(docs):
        for c in containers(spec):
            where = f"{ident(doc)} container {c['name']}"
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c.get("resources", {}).get(part, {})), where
            if long_running(doc):
                assert "livenessProbe" in c and "readinessProbe" in c, where


def test_environment_is_fraudops_settings_or_required_by_third_party(docs):
    for doc, spec in pod_specs(docs):
        for c in containers(spec):
            for env in c.get("env", []):
                name = env["name"]
                assert name.startswith("FRAUDOPS_") or name in FOREIGN_ENV, f"{ident(doc)}: {name}"
                if SENSITIVE.search(name) and name not in {"FRAUDOPS_DATABASE__URL",
                                                          "MLFLOW_BACKEND_STORE_URI"}:
                    assert "secretKeyRef" in env.get("valueFrom", {}), f"{ident(doc)}: {name}"


def test_env_vars_are_defined_only_in_env_template():
    definition = re.compile(r"name:\s*\"?[A-Z][A-Z0-9_]+\"?\s*$|^\s*value(From)?:", re.MULTILINE)
    for template in (CHART_DIR / "templates").glob("*"):
        if template.name not in {"_env.tpl", "postgresql.yaml"}:  # postgres: the image's own env
            assert not definition.search(template.read_text()), template.name


def test_urls_in_plain_values_carry_no_password(docs):
    for doc, spec in pod_specs(docs):
        for c in containers(spec):
            for env in c.get("env", []):
                userinfo = re.match(r"[a-z+]+://([^/@]*)@", env.get("value", ""))
                assert not userinfo or ":" not in userinfo.group(1), f"{ident(doc)}: {env['name']}"


def test_services_and_monitors_select_existing_pods(docs):
    pods = [pod_labels(d) for d, _ in pod_specs(docs)]
    services = by_kind(docs, "Service")
    for svc in services:
        assert any(selects(svc["spec"]["selector"], p) for p in pods), ident(svc)
    for monitor in by_kind(docs, "ServiceMonitor"):
        matched = [s for s in services
                   if selects(monitor["spec"]["selector"], s["metadata"]["labels"])]
        assert matched, ident(monitor)
        ports = {p["name"] for s in matched for p in s["spec"]["ports"]}
        assert {e["port"] for e in monitor["spec"]["endpoints"]} <= ports, ident(monitor)
    for pdb in by_kind(docs, "PodDisruptionBudget"):
        assert any(selects(pdb["spec"]["selector"], p) for p in pods), ident(pdb)


def test_every_pod_is_covered_by_a_network_policy(docs):
    policies = by_kind(docs, "NetworkPolicy")
    for doc, _ in pod_specs(docs):
        labels = pod_labels(doc)
        assert any(selects(p["spec"]["podSelector"], labels) for p in policies), ident(doc)


def test_rbac_is_namespaced_and_least_privilege(docs):
    assert not by_kind(docs, "ClusterRole") and not by_kind(docs, "ClusterRoleBinding")
    for role in by_kind(docs, "Role"):
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"], ident(role)
            assert not {"delete", "deletecollection", "escalate", "bind"} & set(rule["verbs"]) \
                or rule["resources"] == ["recurringruns", "jobs"], ident(role)
    patch_rules = [r for role in by_kind(docs, "Role") for r in role["rules"]
                   if "patch" in r["verbs"]]
    for rule in patch_rules:
        assert rule["resources"] == ["inferenceservices"] and rule.get("resourceNames")


def test_pipeline_runner_may_patch_the_inference_service(render):
    docs = load_documents(render("default"))
    isvc = by_kind(docs, "InferenceService")[0]["metadata"]["name"]
    roles = {r["metadata"]["name"]: r for r in by_kind(docs, "Role")}
    bindings = [b for b in by_kind(docs, "RoleBinding")
                if any(s["name"] == "default-editor" for s in b["subjects"])]
    assert bindings
    rules = roles[bindings[0]["roleRef"]["name"]]["rules"]
    assert any(isvc in r.get("resourceNames", []) and "patch" in r["verbs"] for r in rules)


def test_drift_job_may_create_pipeline_runs(render):
    docs = load_documents(render("default"))
    drift_sa = by_kind(docs, "CronJob")[0]["spec"]["jobTemplate"]["spec"]["template"]["spec"][
        "serviceAccountName"]
    roles = {r["metadata"]["name"]: r for r in by_kind(docs, "Role")}
    granted = [r for b in by_kind(docs, "RoleBinding")
               if any(s["name"] == drift_sa for s in b["subjects"])
               for r in roles[b["roleRef"]["name"]]["rules"]]
    assert any("runs" in r["resources"] and "create" in r["verbs"] for r in granted)


def test_gpu_scenario_requests_gpus_on_gpu_nodes_with_canary(render):
    docs = load_documents(render("gpu"))
    isvcs = by_kind(docs, "InferenceService")
    assert [i["metadata"]["name"] for i in isvcs] == ["fraudops-predictor",
                                                      "fraudops-predictor-challenger"]
    predictor = isvcs[0]["spec"]["predictor"]
    container = predictor["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["image"].endswith("-predictor-cuda:0.1.0")
    assert predictor["canaryTrafficPercent"] == 10
    assert any(t["key"] == "nvidia.com/gpu" for t in predictor["tolerations"])
    assert "nvidia.com/gpu.product" in predictor["nodeSelector"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["STORAGE_URI"] == "s3://fraudops-models/champion"
    assert env["FRAUDOPS_PREDICTOR__SEQUENCE_MODEL_URI"].startswith("/mnt/models/")


def test_cpu_scenarios_request_no_gpu(render):
    for scenario in ("default", "minimal-cpu"):
        text = render(scenario)
        assert "nvidia.com/gpu" not in text
        isvc = by_kind(load_documents(text), "InferenceService")[0]
        assert isvc["spec"]["predictor"]["containers"][0]["image"].endswith("-predictor:0.1.0")


def test_predictor_tuning_values_reach_its_settings(render):
    """backend, threads and inlineRows are values of their own, and what the chart renders is
    what the model server reads (its settings, parsed from the container's environment)."""
    from serving.settings import PredictorServiceSettings

    def predictor_env(*extra: str) -> dict[str, str]:
        isvc = by_kind(load_documents(render("default", *extra)), "InferenceService")[0]
        env = isvc["spec"]["predictor"]["containers"][0]["env"]
        return {e["name"]: e["value"] for e in env if e["name"].startswith("FRAUDOPS_PREDICTOR__")}

    def settings(env: dict[str, str], monkeypatch_env: pytest.MonkeyPatch):
        for name, value in env.items():
            monkeypatch_env.setenv(name, value)
        return PredictorServiceSettings().predictor

    with pytest.MonkeyPatch.context() as mp:
        default = settings(predictor_env(), mp)
    assert (default.backend, default.torch_threads, default.inline_rows) == ("auto", 1, 16)
    with pytest.MonkeyPatch.context() as mp:
        tuned = settings(predictor_env("--set", "predictor.backend=torch", "--set",
                                       "predictor.threads=2", "--set",
                                       "predictor.inlineRows=0"), mp)
    assert (tuned.backend, tuned.torch_threads, tuned.inline_rows) == ("torch", 2, 0)


def test_topics_are_kafka_topics_with_strimzi_else_a_job(render):
    strimzi = load_documents(render("strimzi"))
    topics = by_kind(strimzi, "KafkaTopic")
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())["kafka"]["topics"]
    assert sorted(t["spec"]["topicName"] for t in topics) == sorted(
        t["name"] for t in values.values())
    assert all(t["metadata"]["labels"]["strimzi.io/cluster"] == "fraudops-kafka" for t in topics)
    assert not [j for j in by_kind(strimzi, "Job") if "kafka-topics" in j["metadata"]["name"]]
    plain = load_documents(render("default"))
    assert not by_kind(plain, "KafkaTopic")
    job = next(j for j in by_kind(plain, "Job") if "kafka-topics" in j["metadata"]["name"])
    env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    spec = json.loads(env["FRAUDOPS_TOPICS_SPEC"])
    assert {t["name"] for t in spec} == {t["name"] for t in values.values()}


def test_strimzi_bootstrap_address_derived_from_cluster_name(render):
    docs = load_documents(render("strimzi"))
    consumer = [d for d in by_kind(docs, "Deployment") if d["metadata"]["name"].endswith("consumer")]
    env = {e["name"]: e.get("value") for e in
           consumer[0]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["FRAUDOPS_KAFKA__BOOTSTRAP_SERVERS"] == \
        f"fraudops-kafka-kafka-bootstrap.{NAMESPACE}.svc:9092"


def test_consumer_replicas_beyond_partitions_are_refused(render):
    with pytest.raises(RuntimeError, match="exceeds the transactions topic's 6 partitions"):
        render("default", "--set", "consumer.replicas=7")


def test_lag_autoscaler_capped_at_partition_count(render):
    docs = load_documents(render("external-kafka", "--set", "consumer.autoscaling.maxReplicas=50"))
    scaled = by_kind(docs, "ScaledObject")[0]
    assert scaled["spec"]["maxReplicaCount"] == 6
    consumer = [d for d in by_kind(docs, "Deployment") if d["metadata"]["name"].endswith("consumer")]
    assert "replicas" not in consumer[0]["spec"]
    trigger = scaled["spec"]["triggers"][0]
    assert trigger["metadata"]["sasl"] == "scram_sha512" and trigger["metadata"]["tls"] == "enable"
    auth = by_kind(docs, "TriggerAuthentication")[0]
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    assert auth["spec"]["secretTargetRef"][0]["name"] == "fraudops-kafka"
    env = consumer[0]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert auth["spec"]["env"][0]["name"] in {e["name"] for e in env}


@pytest.mark.parametrize("override, message", [
    ("gatway.replicas=2", "Additional property gatway is not allowed"),
    ("predictor.deploymentMode=Serverles", "deploymentMode"),
    ("predictor.canaryTrafficPercent=150", "canaryTrafficPercent"),
])
def test_values_schema_rejects_typos_and_bad_values(render, override, message):
    with pytest.raises(RuntimeError, match=message):
        render("default", "--set", override)


def test_monitoring_resources_carry_the_synced_files(render):
    docs = load_documents(render("default"))
    rules = yaml.safe_load((CHART_DIR / "files" / "fraudops.rules.yaml").read_text())
    assert by_kind(docs, "PrometheusRule")[0]["spec"]["groups"] == rules["groups"]
    dashboards = [c for c in by_kind(docs, "ConfigMap")
                  if c["metadata"]["labels"].get("grafana_dashboard") == "1"]
    assert len(dashboards) == 1
    data = dashboards[0]["data"]["fraudops-dashboard.json"]
    assert json.loads(data) == json.loads((CHART_DIR / "files" / "fraudops-dashboard.json").read_text())


def _undocumented_keys(lines: list[str]) -> list[str]:
    """Keys of values.yaml lacking a comment on the line above, unless a `# --` ancestor
    documents the whole block as one value."""
    missing, stack = [], []  # stack of (indent, documented_as_block)
    previous = ""
    for number, line in enumerate(lines, 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            previous = stripped or previous
            continue
        indent = len(line) - len(line.lstrip())
        while stack and stack[-1][0] >= indent:
            stack.pop()
        covered = any(block for _, block in stack)
        key = re.match(r"\s*([\w.\-/]+):", line)
        if key and not stripped.startswith("-") and not covered:
            if not previous.startswith("#"):
                missing.append(f"line {number}: {key.group(1)}")
            stack.append((indent, previous.startswith("# --")))
        elif key:
            stack.append((indent, covered))
        previous = stripped
    return missing


def test_every_value_is_documented():
    lines = (CHART_DIR / "values.yaml").read_text().splitlines()
    assert _undocumented_keys(lines) == []


def test_undocumented_value_detector_finds_a_bare_key():
    assert _undocumented_keys(["# -- Documented.", "a: 1", "b: 2"]) == ["line 3: b"]


def test_schema_covers_every_value():
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())

    def walk(node: dict, schema_node: dict, path: str) -> list[str]:
        props = schema_node.get("properties")
        if not isinstance(node, dict) or props is None:
            return []
        gaps = [f"{path}{k}" for k in node if k not in props]
        for k, v in node.items():
            if k in props:
                gaps += walk(v, props[k], f"{path}{k}.")
        return gaps

    assert walk(values, schema, "") == []


def test_kafka_topics_live_in_the_strimzi_cluster_namespace(render):
    docs = load_documents(render("strimzi", "--set", "strimzi.namespace=kafka",
                                 "--set", "strimzi.cluster.create=false"))
    assert {t["metadata"]["namespace"] for t in by_kind(docs, "KafkaTopic")} == {"kafka"}
    consumer = next(d for d in by_kind(docs, "Deployment")
                    if d["metadata"]["name"].endswith("consumer"))
    env = {e["name"]: e.get("value") for e in
           consumer["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["FRAUDOPS_KAFKA__BOOTSTRAP_SERVERS"] == "fraudops-kafka-kafka-bootstrap.kafka.svc:9092"


def _allows(policy: dict, namespace: str, port) -> bool:
    for rule in policy["spec"].get("ingress", []):
        ports = {p["port"] for p in rule.get("ports", [])}
        if ports and port not in ports:
            continue
        for peer in rule.get("from", []):
            selector = peer.get("namespaceSelector")
            if selector is None or "podSelector" in peer:
                continue
            if selects(selector, {"kubernetes.io/metadata.name": namespace}) and all(
                    e["operator"] == "In" and namespace in e["values"]
                    for e in selector.get("matchExpressions", [])):
                return True
    return False


def test_prometheus_may_scrape_every_monitored_pod(docs):
    prometheus_ns = yaml.safe_load((CHART_DIR / "values.yaml").read_text())["monitoring"][
        "prometheusNamespace"]
    policies = by_kind(docs, "NetworkPolicy")
    pods = {ident(d): pod_labels(d) for d, _ in pod_specs(docs)}
    for monitor in by_kind(docs, "ServiceMonitor"):
        service = next(s for s in by_kind(docs, "Service")
                       if selects(monitor["spec"]["selector"], s["metadata"]["labels"]))
        port = next(p["targetPort"] for p in service["spec"]["ports"]
                    if p["name"] == monitor["spec"]["endpoints"][0]["port"])
        targets = [labels for labels in pods.values() if selects(service["spec"]["selector"], labels)]
        numeric = port if isinstance(port, int) else next(
            c["containerPort"] for d, spec in pod_specs(docs) for cont in spec["containers"]
            for c in cont.get("ports", []) if c.get("name") == port)
        for labels in targets:
            covering = [p for p in policies if selects(p["spec"]["podSelector"], labels)]
            assert any(_allows(p, prometheus_ns, numeric) for p in covering), ident(monitor)


def _peer_matches(peer: dict, src_labels: dict, src_ns: str) -> bool:
    ns_selector, pod_selector = peer.get("namespaceSelector"), peer.get("podSelector")
    if ns_selector is None and src_ns != NAMESPACE:
        return False  # a bare podSelector means pods of the policy's own namespace
    if ns_selector is not None:
        ns_labels = {"kubernetes.io/metadata.name": src_ns}
        expressions_ok = all(e["operator"] == "In" and src_ns in e["values"]
                             for e in ns_selector.get("matchExpressions", []))
        if not (selects(ns_selector, ns_labels) and expressions_ok):
            return False
    return pod_selector is None or selects(pod_selector, src_labels)


def ingress_allowed(docs, dest_unit: str, port: int, src_unit: str | None = None,
                    src_ns: str = NAMESPACE) -> bool:
    """Whether some NetworkPolicy admits src (a unit's pods, or any pod of src_ns) to dest:port."""
    dest = next(pod_labels(d) for d, _ in pod_specs(docs)
                if pod_labels(d).get("app.kubernetes.io/component") == dest_unit)
    src = next((pod_labels(d) for d, _ in pod_specs(docs)
                if pod_labels(d).get("app.kubernetes.io/component") == src_unit), {})
    for policy in by_kind(docs, "NetworkPolicy"):
        if not selects(policy["spec"]["podSelector"], dest):
            continue
        for rule in policy["spec"].get("ingress", []):
            ports = {p["port"] for p in rule.get("ports", [])}
            if (not ports or port in ports) and any(
                    _peer_matches(peer, src, src_ns) for peer in rule.get("from", [])):
                return True
    return False


def test_network_policies_admit_the_platform_flows(render):
    docs = load_documents(render("default"))
    flows = [("predictor", 8080, "consumer", NAMESPACE), ("predictor", 8080, "gateway", NAMESPACE),
             ("predictor", 8080, None, "knative-serving"), ("predictor", 8080, None, "kubeflow"),
             ("mlflow", 5000, "predictor", NAMESPACE), ("mlflow", 5000, "drift", NAMESPACE),
             ("mlflow", 5000, None, "kubeflow"),
             ("postgresql", 5432, "mlflow", NAMESPACE), ("postgresql", 5432, "consumer", NAMESPACE),
             ("postgresql", 5432, "gateway", NAMESPACE), ("postgresql", 5432, "drift", NAMESPACE),
             ("gateway", 8000, None, "ingress-nginx")]
    blocked = [f for f in flows if not ingress_allowed(docs, f[0], f[1], f[2], f[3])]
    assert blocked == []


def test_network_policies_keep_other_traffic_out(render):
    docs = load_documents(render("default"))
    denied = [("postgresql", 5432, None, "kubeflow"), ("postgresql", 5432, "predictor", NAMESPACE),
              ("consumer", 9100, "gateway", NAMESPACE), ("mlflow", 5000, None, "default"),
              ("predictor", 8080, None, "default")]
    assert [f for f in denied if ingress_allowed(docs, f[0], f[1], f[2], f[3])] == []


def test_chart_packages_offline_without_ci_scenarios(helm, tmp_path):
    result = run([helm, "package", str(CHART_DIR), "--destination", str(tmp_path)])
    assert result.returncode == 0, result.stderr
    with tarfile.open(tmp_path / "fraudops-0.1.0.tgz") as archive:
        names = archive.getnames()
    assert "fraudops/files/fraudops-dashboard.json" in names
    assert "fraudops/values.schema.json" in names
    assert not [n for n in names if n.startswith("fraudops/ci/")]


@pytest.mark.parametrize("overrides", [
    "mlflow.enabled=false,mlflow.externalTrackingUri=http://mlflow.ml.svc:5000",
    ("gateway.enabled=false,consumer.enabled=false,predictor.enabled=false,drift.enabled=false,"
    "pipeline.enabled=false,mlflow.enabled=false,mlflow.externalTrackingUri=http://m:5000,"
    "postgresql.enabled=false"),
    ("networkPolicy.enabled=false,rbac.create=false,monitoring.serviceMonitor.enabled=false,"
    "monitoring.prometheusRule.enabled=false,monitoring.grafanaDashboard.enabled=false"),
    ("predictor.deploymentMode=Standard,predictor.challenger.enabled=true,"
    "gateway.ingress.enabled=true,consumer.autoscaling.enabled=true"),
    ("kafka.createTopicsJob.enabled=false,drift.triggerRetraining=false,"
    "pipeline.runner.bindRole=false"),
])
def test_feature_toggles_render_valid_resources(render, crd_registry, overrides):
    docs = load_documents(render("default", "--set", overrides))
    assert docs and all(d["metadata"].get("namespace") for d in docs)
    assert validate_custom_resources(crd_registry, docs) == []
    names = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert len(names) == len(set(names)), "duplicate resources"


def test_disabled_mlflow_needs_an_external_tracking_uri(render):
    with pytest.raises(RuntimeError, match="mlflow.externalTrackingUri is required"):
        render("default", "--set", "mlflow.enabled=false")


def _gateway_env(docs: list[dict]) -> dict[str, str | None]:
    doc = next(d for d in docs if d["kind"] == "Deployment"
               and d["metadata"]["name"].endswith("-gateway"))
    spec = next(s for _, s in pod_specs([doc]))
    return {e["name"]: e.get("value") for c in containers(spec) for e in c.get("env", [])}


def test_gateway_limits_reach_the_gateway_and_the_ingress(render):
    """Issue 20: the chart's defaults set the gateway's limits at the ingress too."""
    docs = load_documents(render("default", "--set", "gateway.ingress.enabled=true"))
    env = _gateway_env(docs)
    (ingress,) = by_kind(docs, "Ingress")
    nginx = {k.removeprefix("nginx.ingress.kubernetes.io/"): v
             for k, v in ingress["metadata"]["annotations"].items()}
    assert nginx["proxy-body-size"] == env["FRAUDOPS_GATEWAY__MAX_BODY_BYTES"] == "65536"
    assert nginx["client-body-timeout"] == env["FRAUDOPS_GATEWAY__BODY_TIMEOUT_S"] == "10"
    assert nginx["proxy-read-timeout"] == env["FRAUDOPS_GATEWAY__REQUEST_TIMEOUT_S"] == "30"
    assert env["FRAUDOPS_GATEWAY__AUTH_FAILURE_LIMIT"] == "20/minute"
    assert env["FRAUDOPS_GATEWAY__DOCS_ENABLED"] == "false"
    assert "FRAUDOPS_GATEWAY__TRUSTED_IDENTITY_HEADER" not in env  # trusts no header


def test_gateway_ingress_annotations_win_over_the_limits(render):
    docs = load_documents(render("default", "--set", "gateway.ingress.enabled=true", "--set",
                                 "gateway.ingress.annotations.nginx\\.ingress\\.kubernetes"
                                 "\\.io/proxy-body-size=1m"))
    (ingress,) = by_kind(docs, "Ingress")
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"] == "1m"
    plain = load_documents(render("default", "--set", "gateway.ingress.enabled=true,"
                                                      "gateway.ingress.nginxLimits=false"))
    assert "annotations" not in by_kind(plain, "Ingress")[0]["metadata"]


def test_gateway_identity_proxy_and_allowed_hosts(render):
    docs = load_documents(render(
        "default", "--set", "gateway.trustedProxy.identityHeader=X-Auth-Request-User,"
        "gateway.trustedProxy.principals={oauth2-proxy},gateway.allowedHosts={api.example}"))
    env = _gateway_env(docs)
    assert env["FRAUDOPS_GATEWAY__TRUSTED_IDENTITY_HEADER"] == "X-Auth-Request-User"
    assert env["FRAUDOPS_GATEWAY__TRUSTED_PROXY_PRINCIPALS"] == "oauth2-proxy"
    hosts = env["FRAUDOPS_GATEWAY__ALLOWED_HOSTS"].split(",")
    assert hosts[0] == "$(POD_IP)" and "api.example" in hosts  # kubelet probes use the pod IP
    assert list(env).index("POD_IP") < list(env).index("FRAUDOPS_GATEWAY__ALLOWED_HOSTS")
