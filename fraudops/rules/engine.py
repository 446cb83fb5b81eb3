"""The rules in force where decisions are taken (the consumer, the gateway's /v1/score).

`RuleEngine` holds the compiled rule set and the lists' entries as one immutable pair that is
swapped whole, so a decision always sees one rule set with one version of the lists, and a
reader never takes a lock. `RuleSource` keeps it current: every `refresh_s` it re-reads the
rule-set file if the file changed (a new version is compiled and swapped in; one that does not
validate is refused with its reasons logged and counted, and the running one stays) and the
lists whose revision moved in the store (one small query: no restart, at most `refresh_s` late).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from fraudops.features import BASE_FEATURES
from fraudops.rules.compiler import CompiledRuleSet, compile_rule_set
from fraudops.rules.exceptions import RulesError, RuleSetError
from fraudops.rules.loader import fingerprint, parse_rule_set

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RuleOutcome:
    """A decision after the rules: the final decision, the rules that fired, the version."""

    decision: str
    fired: tuple[str, ...]
    version: str


class ListSource(Protocol):
    """What the engine needs of the store (`fraudops.store.Store` has it)."""

    def list_revisions(self) -> dict[str, int]: ...

    def list_entries(self, name: str) -> list[str]: ...

    def ensure_lists(self, lists: Mapping[str, str]) -> None: ...


@dataclass(frozen=True)
class _InForce:
    rules: CompiledRuleSet
    lists: tuple[frozenset[str], ...]


class RuleEngine:
    """The compiled rule set in force and its lists' entries (thread-safe, lock-free reads)."""

    def __init__(self, rules: CompiledRuleSet,
                 entries: Mapping[str, frozenset[str]] | None = None) -> None:
        self._entries: dict[str, frozenset[str]] = dict(entries or {})
        self._state = _InForce(rules, self._ordered(rules))

    @property
    def rules(self) -> CompiledRuleSet:
        return self._state.rules

    @property
    def version(self) -> str:
        return self._state.rules.version

    def _ordered(self, rules: CompiledRuleSet) -> tuple[frozenset[str], ...]:
        return tuple(self._entries.get(name, frozenset()) for name in rules.lists)

    def install(self, rules: CompiledRuleSet) -> None:
        """Put `rules` in force (with the entries already known for its lists)."""
        self._state = _InForce(rules, self._ordered(rules))

    def set_entries(self, name: str, entries: frozenset[str]) -> None:
        """Replace the entries of list `name`."""
        self._entries[name] = entries
        self._state = _InForce(self._state.rules, self._ordered(self._state.rules))

    def evaluate(self, tx: Any, features: Sequence[float], fraud_probability: float,
                 anomaly_score: float, model_decision: str) -> RuleOutcome:
        """The decision for one transaction (`features`: its row of the feature spec)."""
        state = self._state
        rules = state.rules
        row = [features[column] for column in rules.feature_columns]
        fired = rules.evaluate(tx, row, fraud_probability, anomaly_score, state.lists)
        if not fired:
            return RuleOutcome(model_decision, (), rules.version)
        return RuleOutcome(rules.decide(model_decision, fired), rules.fired_ids(fired),
                           rules.version)

    def snapshot(self) -> tuple[CompiledRuleSet, tuple[frozenset[str], ...]]:
        """The rule set and list entries in force, as one consistent pair (for a batch)."""
        state = self._state
        return state.rules, state.lists


class RuleSource:
    """Loads the rule-set file and the lists, then keeps the engine current (`refresh`)."""

    def __init__(self, path: str | Path, store: ListSource | None, *,
                 feature_names: tuple[str, ...] = BASE_FEATURES, refresh_s: float = 2.0,
                 on_reload: Callable[[str, str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(path)
        self.store = store
        self.feature_names = feature_names
        self.refresh_s = refresh_s
        self.on_reload = on_reload or (lambda outcome, version: None)
        self.clock = clock
        self.last_error: str | None = None
        self._revisions: dict[str, int] = {}
        self._file_key: tuple[int, int] | None = None
        self._fingerprint = ""
        self._due = 0.0
        self._lock = threading.Lock()
        self.engine = RuleEngine(self._load())
        self._refresh_lists()
        self._due = clock() + refresh_s

    def _load(self) -> CompiledRuleSet:
        """Read, validate and compile the file; raises `RulesError` (`RuleSetError` with the
        reasons, `ListEntryError` for a list the store holds with another kind)."""
        try:
            stat = self.path.stat()
            text = self.path.read_bytes()
        except OSError as error:
            raise RuleSetError([f"cannot read the file: {error.strerror or error}"],
                               str(self.path)) from None
        rule_set = parse_rule_set(text, str(self.path))
        compiled = compile_rule_set(rule_set, self.feature_names)
        if self.store is not None:
            self.store.ensure_lists({name: kind.value for name, kind in rule_set.lists.items()})
        self._file_key = (stat.st_mtime_ns, stat.st_size)
        self._fingerprint = fingerprint(text)
        return compiled

    def refresh_if_due(self) -> None:
        """`refresh` when `refresh_s` has passed since the last one (cheap otherwise)."""
        if self.clock() >= self._due:
            self.refresh()

    def refresh(self) -> None:
        """Reload a changed rule-set file (refused if invalid) and changed lists."""
        with self._lock:
            self._due = self.clock() + self.refresh_s
            self._reload_file()
            self._refresh_lists()

    def _reload_file(self) -> None:
        try:
            stat = self.path.stat()
        except OSError as error:
            self._refuse(f"cannot read {self.path}: {error.strerror or error}")
            return
        if (stat.st_mtime_ns, stat.st_size) == self._file_key:
            return
        previous = self._fingerprint
        try:
            compiled = self._load()
        except Exception as error:  # noqa: BLE001 - whatever it is, the running set stays
            self._file_key = (stat.st_mtime_ns, stat.st_size)  # refused once, not every tick
            self._refuse(str(error) if isinstance(error, RulesError) else repr(error))
            return
        self.last_error = None
        if self._fingerprint != previous:
            self.engine.install(compiled)
            log.info("rule set %s in force (%d rules)", compiled.version, len(compiled.rules))
            self.on_reload("loaded", compiled.version)

    def _refuse(self, reason: str) -> None:
        self.last_error = reason
        log.error("rule set refused, %s stays in force: %s", self.engine.version, reason)
        self.on_reload("refused", self.engine.version)

    def _refresh_lists(self) -> None:
        if self.store is None:
            return
        try:
            revisions = self.store.list_revisions()
            for name in self.engine.rules.lists:
                if name in revisions and revisions[name] != self._revisions.get(name):
                    self.engine.set_entries(name, frozenset(self.store.list_entries(name)))
                    self._revisions[name] = revisions[name]
        except Exception as error:  # noqa: BLE001 - the store is down: keep the lists we have
            log.warning("lists not refreshed (the previous entries stay): %s", error)



def decide_batch(engine: RuleEngine, transactions: Sequence[Any], features: Any,
                 probabilities: Sequence[float], anomalies: Sequence[float],
                 decisions: Sequence[str]) -> list[RuleOutcome]:
    """`RuleEngine.evaluate` for a scored batch under ONE rule set and list version (what the
    consumer adds to its hot path; `benchmarks/bench_rules.py` times it). `features`: the
    scored transactions' feature rows [B, F] (a numpy array; None when no rule reads one)."""
    rules, lists = engine.snapshot()
    evaluate, decide, ids, version = rules.evaluate, rules.decide, rules.fired_ids, rules.version
    rows = rules.select_features(features) if features is not None else \
        [[]] * len(transactions)
    outcomes = []
    for tx, row, p, a, model in zip(transactions, rows, probabilities, anomalies, decisions,
                                    strict=True):
        fired = evaluate(tx, row, p, a, lists)
        if fired:
            outcomes.append(RuleOutcome(decide(model, fired), ids(fired), version))
        else:
            outcomes.append(RuleOutcome(model, (), version))
    return outcomes
