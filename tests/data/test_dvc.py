"""DVC data versioning, offline: a temporary git + DVC repository using the project's own DVC
configuration, pipeline and parameters (real `dvc` commands, a local directory remote)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fraudops.data import tabular
from fraudops.data.generate import GeneratorConfig, generate
from fraudops.data.versioning import DataVersionError, data_hash, data_version, is_up_to_date

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PROJECT_FILES = (".dvc/config", ".dvcignore", "dvc.yaml", "params.yaml", "examples/mappings")


def run(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "DVC_NO_ANALYTICS": "1",
    }
    done = subprocess.run(
        args, check=False, cwd=repo, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture
def dvc_repo(tmp_path: Path) -> Path:
    """A fresh git + DVC repository carrying the project's DVC config, pipeline and params."""
    repo = tmp_path / "repo"
    repo.mkdir()
    run(repo, "git", "init", "-q")
    run(repo, str(BIN / "dvc"), "init", "-q")
    for name in PROJECT_FILES:
        source, target = REPO_ROOT / name, repo / name
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy2(source, target)
    (repo / ".gitignore").write_text("/artifacts/\n/.fraudops/\n")
    return repo


def write_raw_data(repo: Path, rows: int = 1000, seed: int = 0) -> None:
    raw = repo / "data"
    raw.mkdir(exist_ok=True)
    tabular.write(generate(GeneratorConfig(rows=rows, seed=seed)), raw / "transactions.parquet")
    (raw / "notes.csv").write_text("a,b\n1,2\n")


def digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.integration
def test_push_then_pull_restores_identical_bytes(dvc_repo: Path) -> None:
    write_raw_data(dvc_repo)
    before = digests(dvc_repo / "data")
    run(dvc_repo, str(BIN / "dvc"), "add", "data")
    run(dvc_repo, str(BIN / "dvc"), "push", "data.dvc")
    remote = dvc_repo / ".fraudops" / "dvc-remote"  # the config's relative url, resolved
    assert any(p.is_file() for p in remote.rglob("*"))

    shutil.rmtree(dvc_repo / "data")
    shutil.rmtree(dvc_repo / ".dvc" / "cache")  # so the bytes can only come from the remote
    run(dvc_repo, str(BIN / "dvc"), "pull", "data.dvc")

    assert digests(dvc_repo / "data") == before
    assert is_up_to_date(dvc_repo / "data")


@pytest.mark.integration
def test_data_version_follows_the_tracked_bytes(dvc_repo: Path) -> None:
    write_raw_data(dvc_repo, seed=1)
    run(dvc_repo, str(BIN / "dvc"), "add", "data")
    first = data_version(dvc_repo / "data")
    assert first.md5.endswith(".dir") and first.nfiles == 2 and first.path == "data"
    assert data_hash(dvc_repo / "data.dvc") == first.md5
    assert first.as_tags()["data.md5"] == first.md5

    (dvc_repo / "data" / "notes.csv").write_text("a,b\n1,3\n")
    assert not is_up_to_date(dvc_repo / "data")  # the record no longer describes the data
    assert data_hash(dvc_repo / "data") == first.md5
    run(dvc_repo, str(BIN / "dvc"), "add", "data")
    assert data_hash(dvc_repo / "data") != first.md5
    assert is_up_to_date(dvc_repo / "data")

    (dvc_repo / "data" / "notes.csv").write_text("a,b\n1,2\n")  # back to the first bytes
    run(dvc_repo, str(BIN / "dvc"), "add", "data")
    assert data_hash(dvc_repo / "data") == first.md5


def test_untracked_data_has_no_version(tmp_path: Path) -> None:
    with pytest.raises(DataVersionError, match="not tracked by DVC"):
        data_version(tmp_path / "data")
    (tmp_path / "bad.dvc").write_text("outs: []\n")
    with pytest.raises(DataVersionError, match="no md5"):
        data_hash(tmp_path / "bad.dvc")


@pytest.mark.integration
def test_pipeline_generate_and_import_stages(dvc_repo: Path) -> None:
    params_path = dvc_repo / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    params["generate"]["rows"] = 2000
    params["dataset"]["source"] = "artifacts/generated/transactions.parquet"
    params_path.write_text(yaml.safe_dump(params))
    # the stages depend on the package sources, which live in the project, not in the copy
    for package in ("fraudops/data", "fraudops/features", "fraudops/training", "fraudops/models"):
        shutil.copytree(
            REPO_ROOT / package, dvc_repo / package, ignore=shutil.ignore_patterns("__pycache__")
        )

    run(dvc_repo, str(BIN / "dvc"), "repro", "import")

    imported = tabular.read(dvc_repo / "artifacts" / "data" / "transactions.parquet")
    metrics = json.loads((dvc_repo / "metrics" / "import.json").read_text())
    assert len(imported) == metrics["rows_written"] == metrics["rows_read"] == 2000
    assert metrics["label_rate"] == pytest.approx(tabular.label_rate(imported))
    lock = yaml.safe_load((dvc_repo / "dvc.lock").read_text())
    assert {"generate", "import"} <= set(lock["stages"])
    status = run(dvc_repo, str(BIN / "dvc"), "status", "import")
    assert "changed" not in status  # nothing left to reproduce for these stages


def test_train_parameters_match_the_training_config() -> None:
    from fraudops.training.config import TrainingConfig

    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    assert TrainingConfig.model_validate(params["train"]) == TrainingConfig()
