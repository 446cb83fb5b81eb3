"""Fixtures of the pipeline tests."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _mlflow_globals(mlflow_globals_restored: None) -> None:
    """A pipeline run reads and writes MLflow in-process: its URIs are reset after each test
    (tests/conftest.py)."""


@pytest.fixture(scope="module", autouse=True)
def _mlflow_globals_per_module(mlflow_globals_restored_per_module: None) -> None:
    """And after each module, what its module-scoped fixtures set."""
