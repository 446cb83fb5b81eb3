"""Backtesting a rule set: replay a labelled data set through the rules (and a model's scores
when given) and measure, per rule and overall, the alert volume, precision, recall and the
fraud value caught.

Features come from the shared batch implementation (`fraudops.features.compute_batch`, the
one training uses and the consumer's online state matches), so a rule on a feature sees what
it would see in the stream. Rows without a label are left out of precision and recall.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from fraudops.data import tabular
from fraudops.features import build_spec, compute_batch
from fraudops.rules.compiler import compile_rule_set
from fraudops.rules.engine import RuleEngine, decide_batch
from fraudops.rules.exceptions import RulesError
from fraudops.rules.lists import normalise_entry
from fraudops.rules.schema import RuleSet
from fraudops.schema import ALERT_DECISIONS, APPROVE


@dataclass(frozen=True)
class Scores:
    """A model's outputs for every row of the data set, in its order."""

    fraud_probability: np.ndarray
    anomaly_score: np.ndarray
    decision: np.ndarray


@dataclass(frozen=True)
class Line:
    """One line of the report: a rule (its firings) or a decision maker (its alerts)."""

    name: str
    action: str
    alerts: int
    alert_rate: float
    true_positives: int
    precision: float | None
    recall: float | None
    value_caught: float


@dataclass(frozen=True)
class BacktestReport:
    """Per rule and overall figures over `rows` transactions with `frauds` known frauds."""

    rule_set_version: str
    rows: int
    labelled: int
    frauds: int
    fraud_value: float
    rules: list[Line]
    overall: list[Line]

    def to_dict(self) -> dict:
        return asdict(self)


def _line(name: str, action: str, flagged: np.ndarray, fraud: np.ndarray,
          labelled: np.ndarray, amount: np.ndarray) -> Line:
    hits = int(flagged.sum())
    judged = flagged & labelled
    true = flagged & fraud
    frauds = int(fraud.sum())
    return Line(name=name, action=action, alerts=hits,
                alert_rate=round(hits / len(flagged), 6) if len(flagged) else 0.0,
                true_positives=int(true.sum()),
                precision=round(int(true.sum()) / int(judged.sum()), 4) if judged.any() else None,
                recall=round(int(true.sum()) / frauds, 4) if frauds else None,
                value_caught=round(float(amount[true].sum()), 2))


def backtest(rule_set: RuleSet, frame: pd.DataFrame, *,
             lists: Mapping[str, list[str]] | None = None,
             scores: Scores | None = None) -> BacktestReport:
    """Replay the normalised, labelled `frame` (any order: it is sorted by time) through
    `rule_set`; with `scores`, the model's decisions beside and under the rules (without,
    the model is taken to approve everything and its scores are 0)."""
    order = np.argsort(frame["timestamp"].to_numpy(), kind="stable")
    frame = frame.iloc[order].reset_index(drop=True)
    spec = build_spec(tabular.passthrough_names(frame))
    features = compute_batch(frame, spec)
    engine = RuleEngine(compile_rule_set(rule_set, spec.names), _entries(rule_set, lists or {}))
    n = len(frame)
    if scores is None:
        p, a, model = np.zeros(n), np.zeros(n), np.full(n, APPROVE, dtype=object)
    else:
        p, a, model = (np.asarray(v)[order] for v in (scores.fraud_probability,
                                                      scores.anomaly_score, scores.decision))
    transactions = list(tabular.to_transactions(frame))
    ruled = decide_batch(engine, transactions, features, p.tolist(), a.tolist(),
                         [str(d) for d in model])
    rules_alone = decide_batch(engine, transactions, features, p.tolist(), a.tolist(),
                               [APPROVE] * n)
    label = frame["label"].to_numpy()
    labelled, fraud = label >= 0, label == 1
    amount = frame["amount"].to_numpy()
    per_rule = []
    for rule in engine.rules.rules:
        fired = np.array([rule.id in o.fired for o in ruled], dtype=bool)
        per_rule.append(_line(rule.id, rule.action, fired, fraud, labelled, amount))
    alert = np.array([o.decision in ALERT_DECISIONS for o in rules_alone], dtype=bool)
    overall = [_line("rules alone", "review|block", alert, fraud, labelled, amount)]
    if scores is not None:
        model_alert = np.isin(model.astype(str), ALERT_DECISIONS)
        both = np.array([o.decision in ALERT_DECISIONS for o in ruled], dtype=bool)
        overall += [_line("model alone", "review|block", model_alert, fraud, labelled, amount),
                    _line("model + rules", "review|block", both, fraud, labelled, amount)]
    return BacktestReport(rule_set.version, n, int(labelled.sum()), int(fraud.sum()),
                          round(float(amount[fraud].sum()), 2), per_rule, overall)


def _entries(rule_set: RuleSet, lists: Mapping[str, list[str]]) -> dict[str, frozenset[str]]:
    unknown = sorted(set(lists) - set(rule_set.lists))
    if unknown:
        raise RulesError(f"lists not declared by the rule set: {', '.join(unknown)}")
    return {name: frozenset(normalise_entry(rule_set.lists[name], value) for value in values)
            for name, values in lists.items()}
