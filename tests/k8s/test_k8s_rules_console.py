"""The rule set and the analyst console in the chart (issue 17): the rule-set ConfigMap reaches the
consumer and the gateway as a directory (never subPath, so a ConfigMap change reaches running pods)
and holds what `fraudops.rules` loads; the console's session key comes from one Secret, existing
or generated; values.schema.json checks the new values."""

from __future__ import annotations

import base64
import time
from pathlib import PurePosixPath

import pytest
from chart_tools import REPO_ROOT, SCENARIOS
from crd_validation import load_documents
from manifests import pod_spec

from fraudops.rules import load_rule_set, parse_rule_set

EXAMPLE_RULES = REPO_ROOT / "examples" / "rules.yaml"
UNITS = {"consumer": "FRAUDOPS_CONSUMER", "gateway": "FRAUDOPS_GATEWAY"}
WITH_EXAMPLE = ("--set", "rules.enabled=true", "--set-file", f"rules.ruleSet={EXAMPLE_RULES}")


def deployment(docs: list[dict], unit: str) -> dict:
    return next(d for d in docs if d["kind"] == "Deployment"
                and d["metadata"]["name"].endswith(f"-{unit}"))


def container(docs: list[dict], unit: str) -> dict:
    return next(c for c in pod_spec(deployment(docs, unit))["containers"] if c["name"] == unit)


def env(docs: list[dict], unit: str) -> dict[str, dict]:
    return {e["name"]: e for e in container(docs, unit).get("env", [])}


def find(docs: list[dict], kind: str, name: str) -> dict | None:
    return next((d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name), None)


def project_rules_volume(docs: list[dict], unit: str, root, config_maps: dict[str, dict]) -> str:
    """Lay out the unit's rules volume under `root` as kubelet would (the ConfigMap's selected
    keys as files in the mount directory) and return where the unit's RULES_PATH points there."""
    spec = pod_spec(deployment(docs, unit))
    (mount,) = [m for m in container(docs, unit)["volumeMounts"] if m["name"] == "rules"]
    (volume,) = [v for v in spec["volumes"] if v["name"] == "rules"]
    data = config_maps[volume["configMap"]["name"]]["data"]
    directory = root / unit / mount["mountPath"].lstrip("/")
    directory.mkdir(parents=True)
    for item in volume["configMap"]["items"]:
        (directory / item["path"]).write_text(data[item["key"]])
    path = PurePosixPath(env(docs, unit)[f"{UNITS[unit]}__RULES_PATH"]["value"])
    return str(root / unit / path.relative_to("/"))


@pytest.fixture(scope="module")
def with_rules(render) -> list[dict]:
    return load_documents(render("default", *WITH_EXAMPLE))


def test_rule_set_config_map_holds_the_file_fraudops_rules_loads(with_rules):
    config_map = find(with_rules, "ConfigMap", "fraudops-rules")
    text = config_map["data"]["rules.yaml"]
    assert text == EXAMPLE_RULES.read_text()  # byte for byte: comments and all
    loaded = parse_rule_set(text, "ConfigMap fraudops-rules")
    expected = load_rule_set(EXAMPLE_RULES)
    assert loaded.version == expected.version
    assert [r.id for r in loaded.rules] == [r.id for r in expected.rules]


@pytest.mark.parametrize("unit", sorted(UNITS))
def test_each_unit_reads_the_rule_set_from_the_mounted_directory(with_rules, unit, tmp_path):
    config_maps = {d["metadata"]["name"]: d for d in with_rules if d["kind"] == "ConfigMap"}
    path = project_rules_volume(with_rules, unit, tmp_path, config_maps)
    assert load_rule_set(path).version == load_rule_set(EXAMPLE_RULES).version
    variables = env(with_rules, unit)
    assert variables[f"{UNITS[unit]}__RULES_REFRESH_S"]["value"] == "2"


@pytest.mark.parametrize("unit", sorted(UNITS))
def test_rules_are_mounted_as_a_directory_never_by_sub_path(with_rules, unit):
    """kubelet never updates a subPath mount; the units' hot reload needs the directory."""
    (mount,) = [m for m in container(with_rules, unit)["volumeMounts"] if m["name"] == "rules"]
    assert "subPath" not in mount and "subPathExpr" not in mount
    assert mount["readOnly"] is True
    rules_path = PurePosixPath(env(with_rules, unit)[f"{UNITS[unit]}__RULES_PATH"]["value"])
    assert rules_path.parent == PurePosixPath(mount["mountPath"])
    template = deployment(with_rules, unit)["spec"]["template"]["metadata"]
    # A checksum of the rule set would restart every pod on each rule change.
    assert not [k for k in template.get("annotations", {}) if "checksum" in k]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_rendered_rule_set_loads(render, scenario):
    """A rule set given inline in a scenario's values is one fraudops.rules accepts."""
    docs = load_documents(render(scenario))
    for config_map in [d for d in docs if d["kind"] == "ConfigMap"
                       and d["metadata"]["labels"].get("app.kubernetes.io/component") == "rules"]:
        for key, text in config_map["data"].items():
            assert parse_rule_set(text, f"{scenario}: {key}").rules


def test_minimal_scenario_carries_its_inline_rule_set(render):
    docs = load_documents(render("minimal-cpu"))
    rule_set = parse_rule_set(find(docs, "ConfigMap", "fraudops-rules")["data"]["rules.yaml"])
    assert rule_set.version == "minimal-1"


def _kubelet_write(directory, files: dict[str, str], generation: int) -> None:
    """Write a ConfigMap volume the way kubelet's AtomicWriter does: the files in a new hidden
    timestamped directory, `..data` swapped to it by one rename, each file a symlink through
    `..data`, the previous generation removed."""
    stamp = directory / f"..2026_12_06_00_00_0{generation}.000000001"
    stamp.mkdir()
    for name, text in files.items():
        (stamp / name).write_text(text)
    link = directory / "..data_tmp"
    link.symlink_to(stamp.name)
    old = (directory / "..data").resolve() if (directory / "..data").exists() else None
    link.rename(directory / "..data")
    for name in files:
        if not (directory / name).is_symlink():
            (directory / name).symlink_to(f"..data/{name}")
    if old is not None:
        for child in old.iterdir():
            child.unlink()
        old.rmdir()


def test_a_config_map_change_reaches_the_running_rule_source(with_rules, tmp_path):
    """What kubelet does to the mounted directory on a ConfigMap change is what the units'
    RuleSource picks up without a restart (a subPath mount would keep the old inode)."""
    from fraudops.rules import RuleSource

    config_map = find(with_rules, "ConfigMap", "fraudops-rules")
    text = config_map["data"]["rules.yaml"]
    rules_path = env(with_rules, "consumer")["FRAUDOPS_CONSUMER__RULES_PATH"]["value"]
    directory = tmp_path / PurePosixPath(rules_path).parent.relative_to("/")
    directory.mkdir(parents=True)
    _kubelet_write(directory, {"rules.yaml": text}, 1)
    source = RuleSource(tmp_path / PurePosixPath(rules_path).relative_to("/"), None)
    assert source.engine.version == "2026-12-06.1"

    time.sleep(0.05)  # kubelet's writes are a sync period apart, far beyond the mtime's tick
    _kubelet_write(directory, {"rules.yaml": text.replace("2026-12-06.1", "2026-12-06.2")}, 2)
    source.refresh()
    assert source.engine.version == "2026-12-06.2"

    time.sleep(0.05)  # a version that does not validate is refused; the running one stays
    _kubelet_write(directory, {"rules.yaml": text.replace("action: block", "action: blokc")}, 3)
    source.refresh()
    assert source.engine.version == "2026-12-06.2" and "blokc" in source.last_error


def test_rules_from_an_existing_config_map(render):
    docs = load_documents(render("external-kafka"))
    assert not [d for d in docs if d["kind"] == "ConfigMap"
                and d["metadata"]["labels"].get("app.kubernetes.io/component") == "rules"]
    for unit, prefix in UNITS.items():
        (volume,) = [v for v in pod_spec(deployment(docs, unit))["volumes"] if v["name"] == "rules"]
        assert volume["configMap"] == {"name": "acme-fraud-rules",
                                       "items": [{"key": "fraud-rules.yaml", "path": "rules.yaml"}]}
        assert env(docs, unit)[f"{prefix}__RULES_REFRESH_S"]["value"] == "5"


def test_rules_are_off_by_default(render):
    docs = load_documents(render("default"))
    assert find(docs, "ConfigMap", "fraudops-rules") is None
    for unit, prefix in UNITS.items():
        assert f"{prefix}__RULES_PATH" not in env(docs, unit)
        assert "rules" not in {v["name"] for v in pod_spec(deployment(docs, unit))["volumes"]}


def test_enabled_rules_without_a_rule_set_are_refused(render):
    with pytest.raises(RuntimeError, match="rules.ruleSet .* is required"):
        render("default", "--set", "rules.enabled=true")


def test_a_rule_set_that_is_not_a_yaml_mapping_is_refused(render, tmp_path):
    listing = tmp_path / "rules.yaml"
    listing.write_text("- id: not-a-rule-set\n- version: 1\n")
    with pytest.raises(RuntimeError, match="rules.ruleSet is not a YAML mapping"):
        render("default", "--set", "rules.enabled=true", "--set-file", f"rules.ruleSet={listing}")


def _session_secret_ref(docs: list[dict]) -> dict:
    variable = env(docs, "gateway")["FRAUDOPS_GATEWAY__CONSOLE_SESSION_SECRET"]
    return variable["valueFrom"]["secretKeyRef"]


def test_console_session_key_generated_when_no_secret_is_given(render):
    docs = load_documents(render("default"))
    ref = _session_secret_ref(docs)
    assert ref == {"name": "fraudops-gateway-console", "key": "console-session-secret"}
    secret = find(docs, "Secret", "fraudops-gateway-console")
    key = base64.b64decode(secret["data"]["console-session-secret"])
    assert len(key) >= 32  # serving.gateway.console.session.MIN_SECRET_BYTES
    variables = env(docs, "gateway")
    assert variables["FRAUDOPS_GATEWAY__CONSOLE_ENABLED"]["value"] == "true"
    assert variables["FRAUDOPS_GATEWAY__CONSOLE_COOKIE_SECURE"]["value"] == "true"


def test_console_session_key_from_an_existing_secret(render):
    docs = load_documents(render("external-kafka"))
    assert _session_secret_ref(docs) == {"name": "fraudops-gateway", "key": "console-session-secret"}
    assert find(docs, "Secret", "fraudops-gateway-console") is None


def test_console_off_needs_no_session_key(render):
    docs = load_documents(render("default", "--set", "gateway.console.enabled=false"))
    variables = env(docs, "gateway")
    assert variables["FRAUDOPS_GATEWAY__CONSOLE_ENABLED"]["value"] == "false"
    assert "FRAUDOPS_GATEWAY__CONSOLE_SESSION_SECRET" not in variables
    assert find(docs, "Secret", "fraudops-gateway-console") is None


def test_console_cookie_and_session_values_reach_the_gateway(render):
    docs = load_documents(render("default", "--set", "gateway.console.cookieSecure=false,"
                                 "gateway.console.sessionMaxAgeSeconds=3600,"
                                 "gateway.console.pageSize=100"))
    variables = {k: v.get("value") for k, v in env(docs, "gateway").items()}
    assert variables["FRAUDOPS_GATEWAY__CONSOLE_COOKIE_SECURE"] == "false"
    assert variables["FRAUDOPS_GATEWAY__CONSOLE_SESSION_MAX_AGE_S"] == "3600"
    assert variables["FRAUDOPS_GATEWAY__CONSOLE_PAGE_SIZE"] == "100"


@pytest.mark.parametrize("override, message", [
    ("rules.enable=true", "Additional property enable is not allowed"),
    ("rules.refreshSeconds=0", "refreshSeconds"),
    ("rules.refreshSeconds=7200", "refreshSeconds"),
    ("rules.key=rules/rules.yaml", "key"),
    ("rules.existingConfigMap=Fraud_Rules", "existingConfigMap"),
    ("gateway.console.secret=abc", "Additional property secret is not allowed"),
    ("gateway.console.existingSecret=Bad_Name", "existingSecret"),
    ("gateway.console.sessionMaxAgeSeconds=30", "sessionMaxAgeSeconds"),
    ("gateway.console.pageSize=0", "pageSize"),
    ("gateway.console.cookieSecure=maybe", "cookieSecure"),
])
def test_values_schema_rejects_bad_rules_and_console_values(render, override, message):
    with pytest.raises(RuntimeError, match=message):
        render("default", "--set", override)
