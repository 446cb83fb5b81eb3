"""The package graph keeps its shape: import-linter's contracts (pyproject.toml) hold.

The contracts say that the domain package `fraudops` imports no deployable unit, that the units
(consumers, serving, monitoring, pipelines, components) import each other not at all, and that
`local` (the orchestration unit) sits above them, and that no running code imports the test
helpers (`fraudops.testing`). The second test breaks the graph on purpose,
in a copy of the packages, so this test is known to fail when a contract breaks. The tests
import the shared helpers (a free port, the waits) from `fraudops.testing`, never a copy.
"""

from __future__ import annotations

import ast
import inspect
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from fraudops import testing

REPO_ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` on the packages under `root`, with the repository's contracts."""
    if not LINT_IMPORTS.exists():
        pytest.skip("lint-imports is not installed (the dev extra's import-linter)")
    env = {**os.environ, "PYTHONPATH": str(root)}  # ahead of the editable install's finder
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(REPO_ROOT / "pyproject.toml")],
        check=False, cwd=root, env=env, capture_output=True, text=True, timeout=120)


def _root_packages() -> list[str]:
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return config["tool"]["importlinter"]["root_packages"]


def test_import_contracts_are_kept() -> None:
    result = _lint_imports(REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(("module", "line", "contract"), [
    ("fraudops/schema.py", "import serving.cli", "fraudops imports no unit"),
    ("fraudops/cli.py", "from local import cli", "fraudops imports no unit"),
    ("serving/cli.py", "import consumers.cli", "units are independent"),
    ("monitoring/cli.py", "import local.cli", "units are independent"),
    ("serving/gateway/app.py", "import fraudops.testing", "test helpers stay out"),
    ("fraudops/features/spec.py", "import fraudops.testing", "test helpers stay out"),
])
def test_a_broken_contract_fails(tmp_path: Path, module: str, line: str, contract: str) -> None:
    """A copy of the packages with one forbidden import added: lint-imports must refuse it."""
    for package in _root_packages():
        shutil.copytree(REPO_ROOT / package, tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    broken = tmp_path / module
    broken.write_text(broken.read_text(encoding="utf-8") + f"\n{line}  # noqa\n",
                      encoding="utf-8")
    result = _lint_imports(tmp_path)
    assert result.returncode != 0, result.stdout
    assert f"{contract}" in result.stdout and "BROKEN" in result.stdout, result.stdout


def test_tests_reuse_the_shared_helpers() -> None:
    """The tests import a free port and the waits from `fraudops.testing`, not a copy of them."""
    shared = {name for name, value in vars(testing).items()
              if inspect.isfunction(value) and value.__module__ == testing.__name__}
    assert {"free_port", "wait_until"} <= shared
    copies = [f"{path.relative_to(REPO_ROOT)}: {node.name}"
              for path in sorted((REPO_ROOT / "tests").rglob("*.py"))
              for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
              if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name in shared]
    assert not copies, f"redefined in tests instead of imported from fraudops.testing: {copies}"
