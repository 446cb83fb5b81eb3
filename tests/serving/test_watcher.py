"""The champion watcher against a real MLflow registry (SQLite), with a recording predictor.

The loader and predictor are stand-ins (loading real models is covered by test_hot_swap.py);
what is tested is when the watcher decides to load and swap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
from mlflow import MlflowClient

from serving.metrics import PredictorMetrics
from serving.watcher import ChampionWatcher

#: The watcher reads the MLflow registry in-process (tests/conftest.py resets its URIs).
pytestmark = pytest.mark.usefixtures("mlflow_globals_restored")

SEQ, AE = "fraud-lstm-cnn", "fraud-autoencoder"


@dataclass
class Served:
    sequence_version: str
    autoencoder_version: str

    @property
    def label(self) -> str:
        return f"{self.sequence_version}/{self.autoencoder_version}"

    def compatible_with(self, other) -> str | None:
        return None


@dataclass
class Predictor:
    served: Served
    swaps: list[str] = field(default_factory=list)

    def swap(self, new: Served) -> None:
        self.served = new
        self.swaps.append(new.label)


def _registry(tmp_path: Path) -> tuple[str, MlflowClient]:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri, registry_uri=uri)
    for name in (SEQ, AE):
        client.create_registered_model(name)
        for _ in range(2):
            client.create_model_version(name, source=(tmp_path / name).as_uri())
        client.set_registered_model_alias(name, "champion", "1")
    return uri, client


def test_a_pair_mid_move_is_never_loaded(tmp_path: Path) -> None:
    uri, client = _registry(tmp_path)
    loaded = []

    def loader(sequence_uri: str, autoencoder_uri: str) -> Served:
        loaded.append((sequence_uri, autoencoder_uri))
        return Served(sequence_uri.rsplit("/", 1)[1], autoencoder_uri.rsplit("/", 1)[1])

    predictor = Predictor(Served("1", "1"))
    watcher = ChampionWatcher(predictor, f"models:/{SEQ}@champion", f"models:/{AE}@champion",
                              loader, tracking_uri=uri, interval_s=60, metrics=PredictorMetrics())
    assert watcher.check_once() is False and loaded == []  # nothing moved
    client.set_registered_model_alias(SEQ, "champion", "2")  # the gate moves one alias ...
    assert watcher.check_once() is False  # ... a poll sees 2/1: wait
    client.set_registered_model_alias(AE, "champion", "2")  # ... then the other
    assert watcher.check_once() is False  # 2/2 is new: confirm on the next poll
    assert watcher.check_once() is True
    assert loaded == [(f"models:/{SEQ}/2", f"models:/{AE}/2")]
    assert predictor.swaps == ["2/2"]
    assert watcher.check_once() is False and len(loaded) == 1  # served: nothing more to do
