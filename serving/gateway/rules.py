"""The rule set `/v1/score` applies beside the model (`fraudops.rules`), as the consumer does.

The rule set is compiled against the served model's feature names, which the gateway learns
from the predictor, so it is built on the first score request (and again when the served
spec changes); its lists come from the store. The file is validated when the app is built,
so a gateway given an invalid rule set does not start. A store that cannot be read when the
rules are built leaves them without list entries until a later request finds it again.
"""

from __future__ import annotations

import logging
import threading

from fraudops.rules import RulesError, RuleSource, load_rule_set
from serving.exceptions import ConfigurationError, RulesUnavailableError, StoreUnavailableError
from serving.gateway.deps import LazyStore
from serving.metrics import GatewayMetrics

log = logging.getLogger(__name__)


class GatewayRules:
    """The rule source of the gateway, built lazily per served feature spec."""

    def __init__(self, path: str, refresh_s: float, store: LazyStore,
                 metrics: GatewayMetrics) -> None:
        self.path, self.refresh_s = path, refresh_s
        self.store, self.metrics = store, metrics
        self._source: RuleSource | None = None
        self._names: tuple[str, ...] = ()
        self._with_store = False
        self._refused = ""  # why the last rule set was refused (none in force yet)
        self._lock = threading.Lock()
        if path:
            try:
                load_rule_set(path)
            except ValueError as error:
                raise ConfigurationError(f"FRAUDOPS_GATEWAY__RULES_PATH: {error}") from None

    @property
    def enabled(self) -> bool:
        return bool(self.path)

    def current(self, feature_names: tuple[str, ...]) -> RuleSource | None:
        """The rule source for `feature_names`, refreshed when due (blocking: store I/O).

        Fails closed: with a rule set configured and none in force (the file does not compile
        against the served features), `RulesUnavailableError`, never a model-only decision
        that would skip the deny lists."""
        if not self.path:
            return None
        with self._lock:
            if self._source is None or self._names != feature_names or not self._with_store:
                self._build(feature_names)
            else:
                self._source.refresh_if_due()
            if self._source is None:
                raise RulesUnavailableError(self._refused)
            return self._source

    def _build(self, feature_names: tuple[str, ...]) -> None:
        try:
            store = self.store.get()
        except StoreUnavailableError as error:
            log.warning("rules without lists for now: %s", error)
            store = None
        if self._source is not None and store is None and self._names == feature_names:
            return  # keep the rules and lists already held
        reloads = self.metrics.rule_set_reloads
        try:
            self._source = RuleSource(self.path, store, feature_names=feature_names,
                                      refresh_s=self.refresh_s,
                                      on_reload=lambda outcome, _: reloads.labels(outcome).inc())
        except RulesError as error:  # the running rules (if any) stay
            reloads.labels("refused").inc()
            self._refused = str(error)
            log.error("rule set refused, %s stays: %s",
                      self._source.engine.version if self._source else "none", error)
            return
        self._names, self._with_store = feature_names, store is not None
