"""Fixtures for the offline Kubernetes checks: tool lookup, chart rendering, CRD schemas.

The tools come from `.tools/bin` (tools/install_k8s_tools.sh) or PATH; a test whose tool is
missing is skipped with the command that installs it. No cluster is needed or contacted.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from chart_tools import REPO_ROOT, _render, require_tool


@pytest.fixture(scope="session")
def helm() -> str:
    return require_tool("helm")


@pytest.fixture(scope="session")
def kubectl() -> str:
    return require_tool("kubectl")


@pytest.fixture(scope="session")
def render(helm):
    """render(scenario, *extra_helm_args) -> manifest text (cached per arguments)."""
    return lambda scenario, *extra: _render(helm, scenario, tuple(extra))


@pytest.fixture(scope="session")
def crds_dir() -> Path:
    """Upstream CRDs: $FRAUDOPS_CRDS_DIR, else ../shared/crds beside the repository."""
    directory = Path(os.environ.get("FRAUDOPS_CRDS_DIR", REPO_ROOT.parent / "shared" / "crds"))
    if not directory.is_dir():
        pytest.skip(f"no CRD directory at {directory}: set FRAUDOPS_CRDS_DIR to a folder holding "
                    "the InferenceService, ServiceMonitor, PrometheusRule and KafkaTopic CRDs")
    return directory


@pytest.fixture(scope="session")
def crd_registry(crds_dir):
    from crd_validation import CrdRegistry

    return CrdRegistry.from_directory(crds_dir, strict=True)
