"""What the offline Kubernetes checks share: paths, tool lookup, chart rendering.

A module of its own (not conftest.py) so that test files import it by a name no other test
folder uses; `conftest` is ambiguous when pytest collects several folders in one run.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "helm" / "fraudops"
KUSTOMIZE_DIR = REPO_ROOT / "k8s"
TOOLS_BIN = REPO_ROOT / ".tools" / "bin"
KUBE_VERSION = "1.30"
NAMESPACE = "fraudops"
RELEASE = "fraudops"
# CI scenarios rendered and validated; "default" is the chart's own values.yaml.
SCENARIOS = ["default"] + sorted(p.name.removesuffix("-values.yaml")
                                 for p in (CHART_DIR / "ci").glob("*-values.yaml"))
# Custom-resource API versions `helm template` is told the cluster serves.
API_VERSIONS = ["serving.kserve.io/v1beta1", "monitoring.coreos.com/v1", "kafka.strimzi.io/v1",
                "keda.sh/v1alpha1"]
INSTALL_HINT = "run `bash tools/install_k8s_tools.sh` to install helm, kubectl and checkov"

def find_tool(name: str) -> str | None:
    """A tool from .tools/bin, the venv's bin directory, or PATH."""
    for candidate in (TOOLS_BIN / name, Path(sys.executable).parent / name):
        if candidate.exists() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which(name)


def require_tool(name: str) -> str:
    path = find_tool(name)
    if path is None:
        pytest.skip(f"{name} not found in .tools/bin or PATH: {INSTALL_HINT}")
    return path


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300, **kwargs)


def values_args(scenario: str) -> list[str]:
    if scenario == "default":
        return []
    return ["-f", str(CHART_DIR / "ci" / f"{scenario}-values.yaml")]


@functools.cache
def _render(helm_bin: str, scenario: str, extra: tuple[str, ...]) -> str:
    cmd = [helm_bin, "template", RELEASE, str(CHART_DIR), "--namespace", NAMESPACE,
           "--kube-version", KUBE_VERSION, *values_args(scenario), *extra]
    for api in API_VERSIONS:
        cmd += ["--api-versions", api]
    result = run(cmd)
    if result.returncode != 0:
        raise RuntimeError(f"helm template {scenario} failed:\n{result.stderr}")
    return result.stdout
