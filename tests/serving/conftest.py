"""Fixtures for the serving tests: tiny real models on disk and the real predictor process."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from serving_helpers import (
    ModelDirs,
    RunningService,
    start_service,
    stop_process,
    write_tiny_models,
)

from fraudops.testing import free_port


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> ModelDirs:
    return write_tiny_models(tmp_path_factory.mktemp("models"))


PredictorFactory = Callable[..., RunningService]


@pytest.fixture
def predictor_factory(tmp_path: Path) -> Iterator[PredictorFactory]:
    """Start real `fraudops serve predictor` processes; all stopped at teardown."""
    started: list[subprocess.Popen] = []

    def start(sequence_uri: str, autoencoder_uri: str, **env: str) -> RunningService:
        port = free_port()
        settings = {
            "FRAUDOPS_HOME": str(tmp_path / "home"),
            "FRAUDOPS_PREDICTOR__SEQUENCE_MODEL_URI": sequence_uri,
            "FRAUDOPS_PREDICTOR__AUTOENCODER_MODEL_URI": autoencoder_uri,
            "FRAUDOPS_PREDICTOR__HTTP_PORT": str(port),
            "FRAUDOPS_PREDICTOR__POLL_INTERVAL_S": "0",
            "FRAUDOPS_PREDICTOR__TORCH_THREADS": "1",
            **env,
        }
        url = f"http://127.0.0.1:{port}"
        log_path = tmp_path / f"predictor-{port}.log"
        process = start_service(["predictor"], settings,
                                f"{url}/v2/models/fraud-scorer/ready", log_path)
        started.append(process)
        return RunningService(url, process, log_path)

    yield start
    for process in started:
        stop_process(process)


@pytest.fixture(scope="module")
def predictor(tiny_models: ModelDirs, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[RunningService]:
    """One predictor serving the tiny models from local directories (shared by a module)."""
    tmp = tmp_path_factory.mktemp("predictor")
    port = free_port()
    env = {
        "FRAUDOPS_HOME": str(tmp / "home"),
        "FRAUDOPS_PREDICTOR__SEQUENCE_MODEL_URI": str(tiny_models.sequence),
        "FRAUDOPS_PREDICTOR__AUTOENCODER_MODEL_URI": str(tiny_models.autoencoder),
        "FRAUDOPS_PREDICTOR__HTTP_PORT": str(port),
        "FRAUDOPS_PREDICTOR__POLL_INTERVAL_S": "0",
        "FRAUDOPS_PREDICTOR__TORCH_THREADS": "1",
        "FRAUDOPS_PREDICTOR__MAX_REQUEST_BATCH": "64",
    }
    url = f"http://127.0.0.1:{port}"
    log_path = tmp / "predictor.log"
    process = start_service(["predictor"], env, f"{url}/v2/models/fraud-scorer/ready",
                            log_path)
    yield RunningService(url, process, log_path)
    stop_process(process)
