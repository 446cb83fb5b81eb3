"""Champion hot swap: the real predictor follows the MLflow alias under a stream of requests.

MLflow runs embedded on a SQLite file in tmp_path (the local platform's configuration); the
predictor is the real `fraudops serve predictor` process polling the registry.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Self

import httpx
import mlflow
import pytest
from mlflow import MlflowClient
from serving_helpers import ModelDirs, random_batch, write_tiny_models

from fraudops import protocol

# The test points MLflow at its own store in-process (tests/conftest.py resets its URIs).
pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("mlflow_globals_restored")]

SEQ, AE = "fraud-lstm-cnn", "fraud-autoencoder"


class Registry:
    """Registers model directories as versions of the two models and moves `champion`."""

    def __init__(self, tmp_path: Path) -> None:
        self.uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
        self.client = MlflowClient(self.uri, registry_uri=self.uri)
        self.experiment = self.client.create_experiment(
            "serving-test", artifact_location=(tmp_path / "artifacts").as_uri())
        for name in (SEQ, AE):
            self.client.create_registered_model(name)

    def publish(self, models: ModelDirs) -> tuple[str, str]:
        mlflow.set_tracking_uri(self.uri)
        versions = []
        for name, directory in ((SEQ, models.sequence), (AE, models.autoencoder)):
            with mlflow.start_run(experiment_id=self.experiment) as run:
                mlflow.log_artifacts(str(directory), artifact_path="model")
            version = self.client.create_model_version(
                name, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id).version
            versions.append(str(version))
        for name, version in zip((SEQ, AE), versions, strict=True):
            self.client.set_registered_model_alias(name, "champion", version)
        return versions[0], versions[1]


class Stream:
    """Client threads sending requests back to back, recording every answer."""

    def __init__(self, url: str, seq_len: int, dim: int, threads: int = 3) -> None:
        self.url = url + protocol.infer_path()
        self.body, self.headers = protocol.encode_request(*random_batch(4, seq_len, dim))
        self.stop = threading.Event()
        self.results: list[list[tuple[int, str]]] = [[] for _ in range(threads)]
        self.errors: list[str] = []
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]

    def _run(self, index: int) -> None:
        with httpx.Client(timeout=30) as client:
            while not self.stop.is_set():
                try:
                    response = client.post(self.url, content=self.body, headers=self.headers)
                except httpx.HTTPError as error:
                    self.errors.append(repr(error))
                    continue
                version = ""
                if response.status_code == 200:
                    version = protocol.decode_response(response.content,
                                                       response.headers).model_version or ""
                self.results[index].append((response.status_code, version))

    def __enter__(self) -> Self:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)

    def latest_versions(self) -> set[str]:
        return {rows[-1][1] for rows in self.results if rows}


def _label(seq: str, ae: str) -> str:
    return f"{SEQ}:{seq}+{AE}:{ae}"


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _swaps(url: str, outcome: str) -> float:
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith(f'fraud_predictor_model_swaps_total{{outcome="{outcome}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_champion_swap_under_load_drops_nothing(tmp_path: Path, predictor_factory) -> None:
    registry = Registry(tmp_path)
    first = registry.publish(write_tiny_models(tmp_path / "v1", seed=0))
    service = predictor_factory(f"models:/{SEQ}@champion", f"models:/{AE}@champion",
                                FRAUDOPS_MLFLOW__TRACKING_URI=registry.uri,
                                FRAUDOPS_PREDICTOR__POLL_INTERVAL_S="0.3")
    new_models = write_tiny_models(tmp_path / "v2", seed=1)
    with Stream(service.url, new_models.seq_len, new_models.dim) as stream:
        _wait(lambda: all(stream.results), 20, "first answers")
        second = registry.publish(new_models)
        _wait(lambda: stream.latest_versions() == {_label(*second)}, 60,
              f"every client to see {second}")
        time.sleep(0.5)
    answers = [row for rows in stream.results for row in rows]
    assert not stream.errors, stream.errors[:3]
    assert {status for status, _ in answers} == {200}, service.log()
    assert len(answers) > 20
    for rows in stream.results:  # per client: old versions, then new ones, never back
        versions = [tuple(int(v.split(":")[1]) for v in label.split("+")) for _, label in rows]
        assert versions == sorted(versions)
        assert versions[0] == tuple(map(int, first)) and versions[-1] == tuple(map(int, second))
    doc = httpx.get(service.url + protocol.metadata_path()).json()
    assert doc["parameters"][protocol.PARAM_SEQUENCE_VERSION] == second[0]
    assert _swaps(service.url, "swapped") >= 1

    # A champion for another sequence length would break every client: refused, not served.
    registry.publish(write_tiny_models(tmp_path / "v3", seed=2, seq_len=4))
    _wait(lambda: _swaps(service.url, "refused") >= 1, 30, "the refusal")
    doc = httpx.get(service.url + protocol.metadata_path()).json()
    assert doc["parameters"][protocol.PARAM_SEQUENCE_VERSION] == second[0]
