"""Container images, statically (no Docker engine here): hadolint on every Dockerfile, and the
promises of docker/Dockerfile checked against pyproject.toml and the chart's values."""

from __future__ import annotations

import json
import re
import shutil
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml
from chart_tools import CHART_DIR, REPO_ROOT, require_tool, run
from crd_validation import load_documents
from manifests import containers, pod_specs

DOCKERFILE = REPO_ROOT / "docker" / "Dockerfile"
TARGETS = {"gateway", "predictor", "predictor-cuda", "consumer", "pipeline", "drift", "mlflow"}
# Which pyproject extra each unit image installs.
UNIT_EXTRA = {"gateway": "serving", "predictor": "serving", "predictor-cuda": "serving",
              "consumer": "streaming", "pipeline": "training", "drift": "monitoring"}


def dockerfiles() -> list[Path]:
    return sorted(p for p in REPO_ROOT.rglob("*Dockerfile*")
                  if not {".venv", ".tools", ".git", "node_modules"} & set(p.parts))


def stages(text: str) -> dict[str, dict]:
    """Stage name -> {'base': FROM argument, 'body': instructions}."""
    result, current = {}, None
    for line in text.splitlines():
        match = re.match(r"FROM\s+(\S+)\s+AS\s+(\S+)", line, re.IGNORECASE)
        if match:
            current = result[match.group(2)] = {"base": match.group(1), "body": ""}
        elif current is not None:
            current["body"] += line + "\n"
    return result


def lineage(all_stages: dict[str, dict], name: str) -> str:
    """Instructions of a stage and of the stages it is built FROM, and of those it COPYs from."""
    body = all_stages[name]["body"]
    parents = [all_stages[name]["base"]] + re.findall(r"--from=(\S+)", body)
    return body + "".join(lineage(all_stages, p) for p in parents if p in all_stages)


@pytest.fixture(scope="module")
def dockerfile_stages() -> dict[str, dict]:
    return stages(DOCKERFILE.read_text())


@pytest.mark.parametrize("path", dockerfiles(), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_hadolint_clean(path):
    hadolint = require_tool("hadolint")
    result = run([hadolint, "--no-color", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_unit_has_a_target(dockerfile_stages):
    assert TARGETS <= set(dockerfile_stages)


@pytest.mark.parametrize("target", sorted(UNIT_EXTRA))
def test_unit_image_installs_only_its_extra(dockerfile_stages, target):
    extras = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    installed = re.findall(r'"/src\[([a-z,]+)\]"', lineage(dockerfile_stages, target))
    assert installed == [UNIT_EXTRA[target]]
    assert UNIT_EXTRA[target] in extras


@pytest.mark.parametrize("target", sorted(UNIT_EXTRA))
def test_torch_is_installed_first_from_the_matching_index(dockerfile_stages, target):
    text = lineage(dockerfile_stages, target)
    index = "TORCH_CUDA_INDEX" if target.endswith("cuda") else "TORCH_CPU_INDEX"
    assert re.search(r'"torch==\$\{TORCH_VERSION\}" --index-url "\$\{' + index, text)


def test_base_images_are_pinned():
    text = DOCKERFILE.read_text()
    args = dict(re.findall(r"^ARG (\w+_IMAGE)=(\S+)$", text, re.MULTILINE))
    assert set(args) == {"PYTHON_IMAGE", "CUDA_IMAGE", "RUST_IMAGE"}
    assert re.fullmatch(r"rust:\d+\.\d+\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", args["RUST_IMAGE"])
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", args["PYTHON_IMAGE"])
    assert re.fullmatch(r"nvidia/cuda:\d+\.\d+\.\d+-(cudnn-)?runtime-ubuntu\d+\.\d+(@sha256:[0-9a-f]{64})?",
                        args["CUDA_IMAGE"])
    for base in re.findall(r"^FROM\s+(\S+)", text, re.MULTILINE):
        assert base.startswith("${") or base in stages(text), f"unpinned FROM {base}"


def test_every_python_image_gets_the_native_feature_engine(dockerfile_stages):
    """The wheel built from native/ goes into the CPU base venv (every unit derives from it)
    and the CUDA predictor's, and the build context lets the crate through."""
    for stage in ("build-base", "build-cuda"):
        body = dockerfile_stages[stage]["body"]
        assert "COPY --from=build-native /wheels /wheels" in body, stage
        assert re.search(r"pip install --no-cache-dir /wheels/\*\.whl", body), stage
    assert "--locked" in dockerfile_stages["build-native"]["body"]  # native/Cargo.lock's crates
    ignore = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    assert "!native/" in ignore and "native/target" in ignore


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_unit_images_run_as_the_chart_uid(dockerfile_stages, target):
    body = dockerfile_stages[target]["body"]
    users = re.findall(r"^USER (\S+)$", body, re.MULTILINE)
    uid = yaml.safe_load((CHART_DIR / "values.yaml").read_text())["security"][
        "containerSecurityContext"]["runAsUser"]
    assert users == [f"{uid}:{uid}"]


@pytest.mark.parametrize("target, values_key", [
    ("gateway", "gateway"), ("predictor", "predictor"), ("predictor-cuda", "predictor"),
    ("consumer", "consumer"), ("drift", "drift")])
def test_image_default_command_matches_the_chart(dockerfile_stages, target, values_key):
    cmd = re.search(r"^CMD (\[.*\])$", dockerfile_stages[target]["body"], re.MULTILINE).group(1)
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    assert json.loads(cmd) == values[values_key]["command"]


def test_dockerignore_admits_only_package_sources():
    lines = [ln.strip() for ln in (REPO_ROOT / ".dockerignore").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert lines[0] == "*", "the context must start from nothing"
    admitted = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    packages = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"]["find"]["include"]
    wanted = {p.rstrip("*") for p in packages} | {"pyproject.toml", "README.md"}
    assert wanted <= admitted
    assert not {".venv", "tests", ".tools", "data", ".git"} & admitted


# Chart container name -> image target that runs it.
CONTAINER_TARGET = {"gateway": "gateway", "consumer": "consumer", "kserve-container": "predictor",
                    "drift": "drift", "compile": "pipeline", "upload": "pipeline",
                    "schedule": "pipeline", "create-topics": "consumer", "mlflow": "mlflow",
                    "db-upgrade": "consumer"}


def test_images_carry_the_database_driver_their_chart_urls_need(render, dockerfile_stages):
    extras = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    missing = []
    for _, spec in pod_specs(load_documents(render("default"))):
        for c in containers(spec):
            urls = [e.get("value", "") for e in c.get("env", [])]
            if not any(u.startswith("postgresql+psycopg://") for u in urls):
                continue
            target = CONTAINER_TARGET[c["name"]]
            if target in UNIT_EXTRA:
                requirements = extras[UNIT_EXTRA[target]]
            else:  # installed by name in its build stage
                requirements = re.findall(r'"([^"]+)"', lineage(dockerfile_stages, target))
            if not any(r.startswith("psycopg[binary]") for r in requirements):
                missing.append(f"{c['name']} ({target})")
    assert missing == []


def docker_context(destination: Path) -> Path:
    """Copy what .dockerignore admits (its shape: '*', then '!entry' lines, then exclusions)."""
    lines = [ln.strip() for ln in (REPO_ROOT / ".dockerignore").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    excluded = [ln.removeprefix("**/") for ln in lines if ln != "*" and not ln.startswith("!")]
    for entry in (ln[1:].rstrip("/") for ln in lines if ln.startswith("!")):
        source = REPO_ROOT / entry
        if source.is_dir():
            shutil.copytree(source, destination / entry, ignore=shutil.ignore_patterns(*excluded))
        elif source.exists():
            shutil.copy2(source, destination / entry)
    return destination


@pytest.mark.integration
def test_build_context_builds_a_wheel_with_every_unit(tmp_path):
    """The `pip install "/src[extra]"` step, minus the network: the filtered context builds a
    wheel holding the shared package, every unit and the CLI entry points."""
    (tmp_path / "src").mkdir()
    context = docker_context(tmp_path / "src")
    result = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                  "--wheel-dir", str(tmp_path / "wheels"), str(context)])
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    wheel = next((tmp_path / "wheels").glob("fraudops-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(archive.read(n).decode() for n in names
                            if n.endswith("entry_points.txt"))
    for module in ("fraudops/cli.py", "serving/cli.py", "consumers/cli.py", "monitoring/cli.py",
                   "pipelines/cli.py"):
        assert module in names, module
    assert not [n for n in names if "__pycache__" in n or n.startswith("tests/")]
    assert "[fraudops.cli]" in entry_points
