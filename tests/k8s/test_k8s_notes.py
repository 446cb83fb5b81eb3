"""NOTES.txt renders for every scenario (`helm install` would need a cluster, and `helm template`
skips NOTES): a copy of the chart turns the notes into a rendered comment block."""

from __future__ import annotations

import shutil

import pytest
from conftest import CHART_DIR, NAMESPACE, SCENARIOS, run, values_args


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


def render_notes(helm, chart, scenario) -> str:
    result = run([helm, "template", "fraudops", str(chart), "--namespace", NAMESPACE,
                  "--show-only", "templates/notes-check.yaml",
                  *[a.replace(str(CHART_DIR), str(chart)) for a in values_args(scenario)]])
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
