"""The chart's environment against the units' real settings classes: every FRAUDOPS_* variable a
container gets names an existing settings field (the units ignore unknown variables, so a typo
would silently fall back to a default), and the settings parse with the rendered values."""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
import typing

import pytest
import yaml
from chart_tools import CHART_DIR, REPO_ROOT, SCENARIOS
from crd_validation import load_documents
from manifests import containers, pod_specs
from pydantic import BaseModel

from fraudops.settings import TopicSettings

# Container name -> settings class of the unit it runs ("module:Class").
UNIT_SETTINGS = {
    "gateway": "serving.settings:GatewayServiceSettings",
    "kserve-container": "serving.settings:PredictorServiceSettings",
    "consumer": "consumers.settings:ConsumerSettings",
    "drift": "monitoring.settings:MonitoringSettings",
    "compile": "pipelines.settings:PipelineSettings",
    "upload": "pipelines.settings:PipelineSettings",
    "schedule": "pipelines.settings:PipelineSettings",
    "create-topics": f"{CHART_DIR / 'files' / 'create_topics.py'}:Settings",
}
SECRET_PLACEHOLDER = "from-a-secret"


def settings_class(path: str) -> type[BaseModel]:
    module, _, name = path.rpartition(":")
    if module.endswith(".py"):  # a script shipped in the chart, loaded from its file
        spec = importlib.util.spec_from_file_location("chart_script", module)
        script = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = script  # pydantic resolves the annotations through it
        spec.loader.exec_module(script)
        return getattr(script, name)
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError as error:  # the unit's extra is not installed here
        pytest.skip(f"{module} not importable: {error}")


def field_exists(model: type[BaseModel], path: list[str]) -> bool:
    """Whether FRAUDOPS_A__B__C (path [a, b, c]) names a field of the settings model."""
    fields = model.model_fields
    head, rest = path[0], path[1:]
    if head not in fields:
        return False
    if not rest:
        return True
    annotation = fields[head].annotation
    candidates = [annotation, *typing.get_args(annotation)]
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return field_exists(candidate, rest)
        if typing.get_origin(candidate) is dict:
            return len(rest) == 1
    return False


def unit_environments(text: str):
    for doc, spec in pod_specs(load_documents(text)):
        for c in containers(spec):
            if c["name"] in UNIT_SETTINGS:
                env = {e["name"]: e.get("value", SECRET_PLACEHOLDER) for e in c.get("env", [])}
                yield f"{doc['kind']}/{doc['metadata']['name']}", c["name"], env


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_fraudops_variable_names_a_settings_field(render, scenario):
    unknown = []
    for where, container, env in unit_environments(render(scenario)):
        model = settings_class(UNIT_SETTINGS[container])
        for name in env:
            if name.startswith("FRAUDOPS_"):
                path = name.removeprefix("FRAUDOPS_").lower().split("__")
                if not field_exists(model, path):
                    unknown.append(f"{where} ({model.__name__}): {name}")
    assert unknown == []


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_rendered_environment_parses(render, scenario, monkeypatch):
    for _, container, env in unit_environments(render(scenario)):
        model = settings_class(UNIT_SETTINGS[container])
        with monkeypatch.context() as patch:
            for name in [n for n in os.environ if n.startswith("FRAUDOPS_")]:
                patch.delenv(name)
            for name, value in env.items():
                if name.startswith("FRAUDOPS_"):
                    patch.setenv(name, value)
            settings = model()
        if "FRAUDOPS_HOME" in env:
            assert str(settings.home) == env["FRAUDOPS_HOME"]


def test_field_lookup_rejects_a_typo():
    model = settings_class(UNIT_SETTINGS["kserve-container"])
    assert field_exists(model, ["predictor", "http_port"])
    assert not field_exists(model, ["predictor", "port"])


UNITS = ("consumers", "serving", "monitoring", "pipelines", "components", "local")


def test_every_topic_is_one_a_unit_reads_or_writes():
    """Each topic setting (which the local platform creates) is used as `topics.<field>` by a
    unit, and each topic the chart creates is one of them: no topic exists that nothing uses."""
    sources = "\n".join(path.read_text(encoding="utf-8") for unit in UNITS
                        for path in (REPO_ROOT / unit).rglob("*.py"))
    unused = [name for name in TopicSettings.model_fields
              if not re.search(rf"\btopics\.{name}\b", sources)]
    assert unused == []
    chart = yaml.safe_load((CHART_DIR / "values.yaml").read_text())["kafka"]["topics"]
    assert {t["name"] for t in chart.values()} <= set(TopicSettings().model_dump().values())
