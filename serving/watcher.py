"""Follow the `champion` alias in the MLflow registry and hot-swap the served models.

Every `interval_s` the watcher resolves both alias URIs to registered versions. When either
differs from what is served, it downloads and builds the new pair pinned to those versions (on
its own thread, off the request path), checks that clients can keep using it (same input shape
and feature spec), and swaps it in with one reference assignment. A failed or refused load
leaves the current model serving and is retried at the next poll.

A new pair must be seen on two polls in a row before it is loaded: the registry moves the two
aliases one after the other, and a poll in between once swapped in the new sequence model with
the old autoencoder, a pair nobody trained or evaluated together.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from fraudops.models import ModelError
from serving.exceptions import ServingError
from serving.metrics import PredictorMetrics
from serving.predictor import FraudPredictor, ServedModel
from serving.settings import parse_alias_uri

log = logging.getLogger(__name__)


class ChampionWatcher:
    """Polls the registry aliases of both models and swaps the predictor's model."""

    def __init__(self, predictor: FraudPredictor, sequence_uri: str, autoencoder_uri: str,
                 loader: Callable[[str, str], ServedModel], *, tracking_uri: str,
                 interval_s: float, metrics: PredictorMetrics) -> None:
        sequence, autoencoder = parse_alias_uri(sequence_uri), parse_alias_uri(autoencoder_uri)
        if sequence is None or autoencoder is None:
            raise ValueError("only models:/NAME@ALIAS URIs can be watched")
        self._aliases = {"sequence": sequence, "autoencoder": autoencoder}
        self._predictor = predictor
        self._loader = loader
        self._client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self._interval_s = interval_s
        self._metrics = metrics
        self._refused: set[tuple[str, str]] = set()  # incompatible pairs are not retried
        self._seen: tuple[str, str] | None = None  # the new pair of the last poll
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="champion-watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float | None = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self.check_once()
            except Exception:
                log.exception("champion check failed; serving the current model")

    def _registry_versions(self) -> dict[str, tuple[str, str]]:
        return {role: (name, str(self._client.get_model_version_by_alias(name, alias).version))
                for role, (name, alias) in self._aliases.items()}

    def check_once(self) -> bool:
        """One poll; True when a new model was swapped in."""
        try:
            wanted = self._registry_versions()
        except MlflowException as error:
            log.warning("cannot resolve champion aliases: %s", error.message)
            return False
        current = self._predictor.served
        pair = (wanted["sequence"][1], wanted["autoencoder"][1])
        if pair == (current.sequence_version, current.autoencoder_version) or \
                pair in self._refused:
            self._seen = None
            return False
        if pair != self._seen:  # the aliases may be mid-move: confirm on the next poll
            self._seen = pair
            log.info("champion moving to %s/%s; loading if it stays", *pair)
            return False
        self._seen = None
        return self._swap_to(wanted, current)

    def _swap_to(self, wanted: dict[str, tuple[str, str]], current: ServedModel) -> bool:
        uris = {role: f"models:/{name}/{version}" for role, (name, version) in wanted.items()}
        log.info("champion moved to %s; loading", uris)
        try:
            new = self._loader(uris["sequence"], uris["autoencoder"])
        except (ModelError, ServingError, MlflowException, OSError) as error:
            self._metrics.model_swaps.labels("failed").inc()
            log.error("cannot load the new champion (%s); still serving %s", error, current.label)
            return False
        problem = new.compatible_with(current)
        if problem:
            self._refused.add((wanted["sequence"][1], wanted["autoencoder"][1]))
            self._metrics.model_swaps.labels("refused").inc()
            log.error("refusing the new champion %s: %s; deploy it with a new predictor",
                      new.label, problem)
            return False
        self._predictor.swap(new)
        self._metrics.model_swaps.labels("swapped").inc()
        return True
