"""Fixtures of the monitoring tests: generated data, a registered champion, a filled store.

The champion is a small untrained LSTM-CNN + autoencoder (normalisation fitted on the training
data) registered in a real MLflow registry (SQLite); its training run logs the data set's path
and the end of its training window, which is the lineage the drift job follows. The store holds
the stream scored by that champion, as the consumer would have written it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from fraudops.data import tabular
from fraudops.data.generate import GeneratorConfig, generate
from fraudops.features import build_spec, compute_batch, gather_sequences, sequence_index
from fraudops.store import BatchWrite, DecisionRecord, Store

SEQ_LEN = 16  # the training default, so the promotion gate can compare the pair
ROWS, DAYS = 60_000, 40
DRIFT_DAY = 24


@dataclass
class Platform:
    """What a drift check needs, built for one data set."""

    home: Path
    store: Store
    tracking_uri: str
    train_path: Path
    drift_start: datetime
    stream: pd.DataFrame


def make_data(drift: str, seed: int = 5) -> tuple[pd.DataFrame, datetime]:
    config = GeneratorConfig(rows=ROWS, days=DAYS, seed=seed, drift=drift,
                             drift_start=DRIFT_DAY / DAYS)
    return tabular.sort_by_time(generate(config)), config.drift_start_datetime()


def save_champion(train: pd.DataFrame, directory: Path):
    """Checkpoints of a small model pair whose normalisation is fitted on `train`."""
    from fraudops.models import DecisionPolicy
    from fraudops.models.untrained import TINY_SEQUENCE, write_untrained_pair

    spec = build_spec()
    features = compute_batch(train, spec)
    spec_dict = {**spec.to_dict(), "names": list(spec.names)}
    return write_untrained_pair(directory, spec_dict, features, SEQ_LEN,
                                policy=DecisionPolicy(0.9, 0.6, float("inf")),
                                sequence_size=TINY_SEQUENCE, autoencoder_size={"hidden_size": 8,
                                                                               "bottleneck": 4})


def register_champion(tracking_uri: str, checkpoints, lineage: dict[str, str],
                      artifact_root: Path) -> None:
    """Log both checkpoints in one run with `lineage` params; register them as champions."""
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
    experiment = client.create_experiment("train", artifact_location=artifact_root.as_uri())
    run = client.create_run(experiment, tags={"fraudops.kind": "training"})
    for key, value in lineage.items():
        client.log_param(run.info.run_id, key, value)
    for name, directory in zip(("fraud-lstm-cnn", "fraud-autoencoder"), checkpoints, strict=True):
        client.log_artifacts(run.info.run_id, str(directory), name)
        client.create_registered_model(name)
        version = client.create_model_version(name, f"{run.info.artifact_uri}/{name}",
                                              run.info.run_id)
        client.set_registered_model_alias(name, "champion", version.version)
    client.set_terminated(run.info.run_id)
    mlflow.set_tracking_uri(tracking_uri)


def score_into_store(stream: pd.DataFrame, checkpoints, store: Store) -> None:
    """Score `stream` with the champion and write decisions as the consumer does."""
    from fraudops.models import load_scorer

    scorer = load_scorer(str(checkpoints[0]), str(checkpoints[1]), device="cpu")
    spec = build_spec()
    x, mask = gather_sequences(compute_batch(stream, spec), sequence_index(stream, SEQ_LEN))
    result = scorer.score(x, mask)
    events = list(tabular.to_records(stream))
    decisions = [
        DecisionRecord(transaction_id=e["transaction_id"], account_id=e["account_id"],
                       event_time=ts.to_pydatetime(), amount=float(e["amount"]),
                       fraud_probability=float(p), anomaly_score=float(a), decision=str(d),
                       transaction_json=json.dumps(e), model_version="fraud-lstm-cnn/1")
        for e, ts, p, a, d in zip(events, stream["timestamp"], result.fraud_probability,
                                  result.anomaly_score, result.decision, strict=True)]
    store.write_batch(BatchWrite(decisions=decisions))


def build_platform(root: Path, drift: str) -> Platform:
    data, drift_start = make_data(drift)
    train = data[data["timestamp"] < pd.Timestamp(drift_start)].reset_index(drop=True)
    train_path = tabular.write(train, root / "data" / "train.parquet")
    checkpoints = save_champion(train, root / "checkpoints")
    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    register_champion(tracking_uri, checkpoints,
                      {"fraudops.data_path": str(train_path),
                       "data.window_end": pd.Timestamp(drift_start).isoformat()},
                      root / "mlartifacts")
    # The stream the consumer scored: everything after the first two weeks (so windows after
    # the drift point have their full week of history in the store too).
    stream = data[data["timestamp"] >= data["timestamp"].min() + timedelta(days=14)]
    stream = stream.reset_index(drop=True)
    tabular.write(data, root / "data" / "all.parquet")  # what retraining grows into
    store = Store.from_url(f"sqlite:///{root / 'fraudops.db'}")
    score_into_store(stream, checkpoints, store)
    return Platform(root, store, tracking_uri, train_path, drift_start, stream)


@pytest.fixture(scope="module")
def drifted_platform(tmp_path_factory) -> Platform:
    """spending_shift from day 24 of 40."""
    return build_platform(tmp_path_factory.mktemp("drifted"), "spending_shift")


@pytest.fixture(scope="module")
def stable_platform(tmp_path_factory) -> Platform:
    """Same generator, no drift."""
    return build_platform(tmp_path_factory.mktemp("stable"), "none")


def _settings_for(platform: Platform, **drift_overrides):
    """Monitoring settings pointing at the platform's store, registry and home."""
    from monitoring.settings import DriftSettings, MonitoringSettings

    drift = DriftSettings(**{"log_to_mlflow": True, **drift_overrides})
    return MonitoringSettings(
        home=platform.home, drift=drift,
        mlflow={"tracking_uri": platform.tracking_uri,
                "artifact_location": (platform.home / "mlartifacts").as_uri()},
        database={"url": f"sqlite:///{platform.home / 'fraudops.db'}"})


def _day(platform: Platform, n: float) -> datetime:
    """Event time `n` days after the start of the generated span."""
    start = platform.stream["timestamp"].min().normalize() - pd.Timedelta(days=14)
    return (start + pd.Timedelta(days=n)).to_pydatetime()


@pytest.fixture
def settings_for():
    """settings_for(platform, **drift_settings) -> MonitoringSettings."""
    return _settings_for


@pytest.fixture
def day():
    """day(platform, n) -> the event time n days into the generated span."""
    return _day


@pytest.fixture(scope="session")
def champion_saver():
    """save_champion(train_frame, directory) -> (sequence_dir, autoencoder_dir)."""
    return save_champion


@pytest.fixture(autouse=True)
def _mlflow_globals(mlflow_globals_restored: None) -> None:
    """The drift job logs its checks to MLflow in-process: its URIs are reset after each
    test (tests/conftest.py)."""


@pytest.fixture(scope="module", autouse=True)
def _mlflow_globals_per_module(mlflow_globals_restored_per_module: None) -> None:
    """And after each module, what its module-scoped fixtures set."""
