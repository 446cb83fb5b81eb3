"""NOTES.txt renders for every scenario (`helm install` would need a cluster, and `helm template`
skips NOTES): a copy of the chart turns the notes into a rendered comment block."""

from __future__ import annotations

import shutil

import pytest
from chart_tools import CHART_DIR, NAMESPACE, SCENARIOS, run, values_args


@pytest.fixture(scope="module")
def notes_chart(tmp_path_factory):
    chart = tmp_path_factory.mktemp("notes") / "fraudops"
    shutil.copytree(CHART_DIR, chart)
    notes = (chart / "templates" / "NOTES.txt").read_text()
    (chart / "templates" / "NOTES.txt").unlink()
    (chart / "templates" / "_notes_body.tpl").write_text(
        '{{- define "notes-body" -}}\n' + notes + "\n{{- end }}\n")
    (chart / "templates" / "notes-check.yaml").write_text(
        '# {{ include "notes-body" . | replace "\\n" "\\n# " }}\n')
    return chart


def render_notes(helm, chart, scenario, *extra: str) -> str:
    result = run([helm, "template", "fraudops", str(chart), "--namespace", NAMESPACE,
                  "--show-only", "templates/notes-check.yaml",
                  *[a.replace(str(CHART_DIR), str(chart)) for a in values_args(scenario)], *extra])
    assert result.returncode == 0, result.stderr
    return "\n".join(line.removeprefix("#").removeprefix(" ")
                     for line in result.stdout.splitlines() if not line.startswith("---"))


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_notes_render(helm, notes_chart, scenario):
    notes = render_notes(helm, notes_chart, scenario)
    assert f'in namespace "{NAMESPACE}"' in notes
    assert "kubectl -n fraudops get pods -l app.kubernetes.io/instance=fraudops" in notes
    assert "<no value>" not in notes


def test_notes_warn_about_missing_api_keys_only_when_missing(helm, notes_chart):
    assert "does not start without API keys" in render_notes(helm, notes_chart, "default")
    assert "does not start without API keys" not in render_notes(helm, notes_chart,
                                                                 "external-kafka")


def test_notes_list_the_console_and_the_rule_set(helm, notes_chart):
    default = render_notes(helm, notes_chart, "default")
    assert "console    analyst console, /console on the gateway" in default
    assert "session key: Secret fraudops-gateway-console (generated)" in default
    assert "http://localhost:8000/console" in default
    assert "rules      " not in default  # off by default
    external = render_notes(helm, notes_chart, "external-kafka")
    assert "https://fraud.acme.example/console" in external
    console = next(line for line in external.splitlines() if line.startswith("  console "))
    assert console.endswith("session key: Secret fraudops-gateway")
    assert "rules      rule set from ConfigMap acme-fraud-rules (key fraud-rules.yaml)" in external
    off = render_notes(helm, notes_chart, "default", "--set", "gateway.console.enabled=false")
    assert "/console" not in off


def test_notes_warn_when_plain_http_ingress_meets_secure_cookies(helm, notes_chart):
    plain = render_notes(helm, notes_chart, "default", "--set", "gateway.ingress.enabled=true")
    assert "browsers will not\nsend the session cookie back over http://fraudops.example.com" in plain
    tls = render_notes(helm, notes_chart, "external-kafka")
    assert "will not" not in tls
    insecure = render_notes(helm, notes_chart, "default", "--set", "gateway.ingress.enabled=true,"
                            "gateway.console.cookieSecure=false")
    assert "will not" not in insecure
