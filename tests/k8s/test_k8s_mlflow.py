"""The chart's MLflow server configuration, run for real on loopback: the rendered command line
and environment (served artifacts, Host-header allow-list) start a working tracking server that
answers under its in-cluster Service name and refuses foreign Host headers. Only the Kubernetes
parts are substituted: the Secret-sourced backend URI (SQLite here: MLflow's schema migrations
take over a minute on PostgreSQL on this machine; the PostgreSQL URI form is covered by the
rendering tests), the S3 destination (a local folder) and the bind address."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from chart_tools import NAMESPACE
from crd_validation import load_documents

from fraudops.testing import free_port, wait_for_http


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM the server's process group, SIGKILL it if it lingers."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    except ProcessLookupError:
        pass


def mlflow_container(render) -> dict:
    docs = load_documents(render("default"))
    deployment = next(d for d in docs if d["kind"] == "Deployment"
                      and d["metadata"]["name"].endswith("-mlflow"))
    return deployment["spec"]["template"]["spec"]["containers"][0]


def local_command(container: dict, backend: str, artifacts: Path, port: int) -> list[str]:
    """The container's argv with the cluster-only values swapped for local ones."""
    args = [a.replace("$(MLFLOW_BACKEND_STORE_URI)", backend) for a in container["args"]]
    replace = {"--artifacts-destination": str(artifacts), "--host": "127.0.0.1",
               "--port": str(port), "--workers": "1"}
    for flag, value in replace.items():
        args[args.index(flag) + 1] = value
    mlflow = Path(sys.executable).parent / container["command"][0]
    return [str(mlflow), *container["command"][1:], *args]


@pytest.mark.integration
def test_chart_mlflow_server_runs_and_guards_host_headers(render, tmp_path):
    container = mlflow_container(render)
    port = free_port()
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    env["HOME"] = str(tmp_path)
    log = tmp_path / "mlflow.log"
    with log.open("wb") as errors:
        process = subprocess.Popen(
            local_command(container, f"sqlite:///{tmp_path / 'mlflow.db'}",
                          tmp_path / "artifacts", port),
            env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=errors,
            start_new_session=True)  # its own process group: the server forks workers
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", 90, process=process, log=log)
        service_host = f"fraudops-mlflow.{NAMESPACE}.svc:5000"
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            search = client.post("/api/2.0/mlflow/experiments/search", json={"max_results": 5},
                                 headers={"Host": service_host})
            assert search.status_code == 200, search.text
            created = client.post("/api/2.0/mlflow/experiments/create",
                                  json={"name": "chart-check"}, headers={"Host": service_host})
            assert created.status_code == 200, created.text
            foreign = client.post("/api/2.0/mlflow/experiments/search", json={"max_results": 5},
                                  headers={"Host": "attacker.example.com"})
            assert foreign.status_code in (400, 403)
    finally:
        stop_group(process)
