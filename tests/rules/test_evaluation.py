"""The compiled evaluator against a straightforward reference (the rule tree walked by name),
on random transactions, scores, lists and random rule trees; and the documented precedence."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudops.features import BASE_FEATURES
from fraudops.rules import RuleEngine, compile_rule_set, load_rule_set, parse_rule_set
from fraudops.rules.schema import AllOf, AnyOf, Leaf, NotOf, RuleSet
from fraudops.schema import DECISIONS, Channel, MerchantCategory, Transaction

EXAMPLE = Path(__file__).parents[2] / "examples" / "rules.yaml"
ACCOUNTS = ["a1", "a2", "a3"]
MERCHANTS = ["m1", "m2"]
DEVICES = ["d1", "d2"]
COUNTRIES = ["DE", "NG", "US"]
FEATURES = ["account_new_device", "account_count_1h_log", "amount_log", "account_new_country"]
LISTS = {"deny_accounts": ACCOUNTS, "deny_devices": DEVICES, "trusted_merchants": MERCHANTS,
         "high_risk_countries": COUNTRIES}
_OPS = {"eq": lambda x, y: x == y, "ne": lambda x, y: x != y, "gt": lambda x, y: x > y,
        "ge": lambda x, y: x >= y, "lt": lambda x, y: x < y, "le": lambda x, y: x <= y}


# -- the reference: by name, no compilation ------------------------------------------------------

def reference_value(leaf: Leaf, tx: Transaction, row: list[float], scores: dict[str, float]):
    kind, name = leaf.subject
    if kind == "score":
        return scores[name]
    if kind == "feature":
        return row[BASE_FEATURES.index(name)]
    if name.startswith("extra."):
        return tx.extra.get(name[6:])
    value = getattr(tx, name)
    return value.value if hasattr(value, "value") else value


def reference_holds(node: Any, tx, row, scores, lists: dict[str, set[str]]) -> bool:
    if isinstance(node, AllOf):
        return all(reference_holds(c, tx, row, scores, lists) for c in node.all)
    if isinstance(node, AnyOf):
        return any(reference_holds(c, tx, row, scores, lists) for c in node.any)
    if isinstance(node, NotOf):
        return not reference_holds(node.not_, tx, row, scores, lists)
    value = reference_value(node, tx, row, scores)
    if value is None:
        return False
    op, operand = node.operator
    if op in ("in", "not_in"):
        return (value in operand) == (op == "in")
    if op in ("in_list", "not_in_list"):
        return (value in lists[operand]) == (op == "in_list")
    return _OPS[op](value, operand)


def reference_decision(rule_set: RuleSet, model: str, fired: list) -> str:
    """The README's precedence, written out case by case."""
    escalations = [r.action for r in fired if not r.override_model]
    if "block" in escalations:
        return "block"
    if "review" in escalations:
        return "block" if model == "block" and not any(r.override_model for r in fired) \
            else "review"
    if any(r.override_model for r in fired):
        return "approve"
    return model


# -- strategies -----------------------------------------------------------------------------------

transactions = st.builds(
    lambda i, account, amount, merchant, device, country, channel, category, extra: Transaction(
        transaction_id=f"t{i}", account_id=account, timestamp=datetime(2026, 1, 1, tzinfo=UTC),
        amount=amount, merchant_id=merchant, device_id=device, country=country,
        channel=channel, merchant_category=category, extra=extra),
    st.integers(0, 10**6), st.sampled_from(ACCOUNTS + ["a9"]),
    st.one_of(st.sampled_from([0.0, 4.99, 5.0, 199.99, 200.0, 500.0, 1000.0, 5000.0]),
              st.floats(0, 10_000)),
    st.none() | st.sampled_from(MERCHANTS + ["m9"]), st.none() | st.sampled_from(DEVICES),
    st.none() | st.sampled_from(COUNTRIES + ["FR"]), st.sampled_from(list(Channel)),
    st.sampled_from(list(MerchantCategory)),
    st.dictionaries(st.just("v1"), st.floats(-5, 5), max_size=1))
feature_rows = st.lists(st.sampled_from([0.0, 1.0, 1.95, 2.5]) | st.floats(0, 5),
                        min_size=len(BASE_FEATURES), max_size=len(BASE_FEATURES))
scores = st.fixed_dictionaries({"fraud_probability": st.floats(0, 1),
                                "anomaly_score": st.floats(0, 5)})
list_contents = st.fixed_dictionaries(
    {name: st.sets(st.sampled_from(values)) for name, values in LISTS.items()})

numbers = st.sampled_from([0, 1, 5, 200, 1000, 0.5, 1.95])
leaves = st.one_of(
    st.builds(lambda op, v: {"field": "amount", op: v}, st.sampled_from(list(_OPS)), numbers),
    st.builds(lambda op, v: {"score": "fraud_probability", op: v},
              st.sampled_from(list(_OPS)), st.sampled_from([0.05, 0.5, 0.9])),
    st.builds(lambda f, op, v: {"feature": f, op: v}, st.sampled_from(FEATURES),
              st.sampled_from(list(_OPS)), numbers),
    st.builds(lambda op, v: {"field": "channel", op: v}, st.sampled_from(["eq", "ne"]),
              st.sampled_from([c.value for c in Channel])),
    st.builds(lambda op, v: {"field": "country", op: v}, st.sampled_from(["in", "not_in"]),
              st.lists(st.sampled_from(COUNTRIES), min_size=1, max_size=2)),
    st.builds(lambda op, v: {"field": "extra.v1", op: v}, st.sampled_from(["gt", "le"]),
              st.sampled_from([-1, 0, 1])),
    st.builds(lambda pair, op: {"field": pair[0], op: pair[1]},
              st.sampled_from([("account_id", "deny_accounts"), ("device_id", "deny_devices"),
                               ("merchant_id", "trusted_merchants"),
                               ("country", "high_risk_countries")]),
              st.sampled_from(["in_list", "not_in_list"])),
)
conditions = st.recursive(leaves, lambda inner: st.one_of(
    st.lists(inner, min_size=1, max_size=3).map(lambda c: {"all": c}),
    st.lists(inner, min_size=1, max_size=3).map(lambda c: {"any": c}),
    inner.map(lambda c: {"not": c})), max_leaves=6)
rules = st.lists(st.tuples(conditions, st.sampled_from(DECISIONS), st.booleans()),
                 min_size=1, max_size=8)


def rule_set_of(drawn: list) -> RuleSet:
    return RuleSet.model_validate({
        "version": "h1", "lists": {name: kind for name, kind in zip(
            LISTS, ["account", "device", "merchant", "country"], strict=True)},
        "rules": [{"id": f"r{i}", "owner": "o", "description": "d", "action": action,
                   "override_model": override and action == "approve", "when": when}
                  for i, (when, action, override) in enumerate(drawn)]})


def check(rule_set: RuleSet, tx, row, score, lists, model) -> None:
    engine = RuleEngine(compile_rule_set(rule_set),
                        {name: frozenset(values) for name, values in lists.items()})
    outcome = engine.evaluate(tx, row, score["fraud_probability"], score["anomaly_score"], model)
    fired = [r for r in rule_set.rules
             if reference_holds(r.when, tx, row, score, lists)]
    assert outcome.fired == tuple(r.id for r in fired)
    assert outcome.decision == reference_decision(rule_set, model, fired)
    assert outcome.version == rule_set.version


@settings(max_examples=300, deadline=None)
@given(rules, transactions, feature_rows, scores, list_contents, st.sampled_from(DECISIONS))
def test_random_rule_sets_match_the_reference(drawn, tx, row, score, lists, model) -> None:
    check(rule_set_of(drawn), tx, row, score, lists, model)


@settings(max_examples=200, deadline=None)
@given(transactions, feature_rows, scores, list_contents, st.sampled_from(DECISIONS))
def test_the_example_rule_set_matches_the_reference(tx, row, score, lists, model) -> None:
    check(_EXAMPLE_SET, tx, row, score, lists, model)


_EXAMPLE_SET = load_rule_set(EXAMPLE)


# -- precedence, spelt out ------------------------------------------------------------------------

PRECEDENCE = """
version: p1
lists: {allow: account}
rules:
  - {id: allow, owner: o, description: d, action: approve, override_model: true,
     when: {field: account_id, in_list: allow}}
  - {id: plain-approve, owner: o, description: d, action: approve, when: {field: amount, lt: 1}}
  - {id: review, owner: o, description: d, action: review, when: {field: amount, ge: 100}}
  - {id: block, owner: o, description: d, action: block, when: {field: amount, ge: 1000}}
"""


@pytest.mark.parametrize(("account", "amount", "model", "decision", "fired"), [
    ("x", 50, "review", "review", ()),                      # no rule: the model's decision
    ("x", 0.5, "block", "block", ("plain-approve",)),       # a plain approve never de-escalates
    ("x", 150, "approve", "review", ("review",)),           # rules escalate
    ("x", 150, "block", "block", ("review",)),              # ...never below the model
    ("x", 1500, "approve", "block", ("review", "block")),   # block beats review
    ("ok", 50, "block", "approve", ("allow",)),             # the allow list sets the model aside
    ("ok", 150, "block", "review", ("allow", "review")),    # ...but a review rule still wins
    ("ok", 1500, "approve", "block", ("allow", "review", "block")),
])
def test_precedence(account: str, amount: float, model: str, decision: str,
                    fired: tuple[str, ...]) -> None:
    engine = RuleEngine(compile_rule_set(parse_rule_set(PRECEDENCE)),
                        {"allow": frozenset({"ok"})})
    tx = Transaction(transaction_id="t", account_id=account, amount=amount,
                     timestamp=datetime(2026, 1, 1, tzinfo=UTC))
    outcome = engine.evaluate(tx, [0.0] * len(BASE_FEATURES), 0.1, 0.1, model)
    assert (outcome.decision, outcome.fired) == (decision, fired)


def test_disabled_rules_never_fire_and_lists_swap_whole() -> None:
    text = PRECEDENCE.replace("action: block, when", "action: block, enabled: false, when")
    engine = RuleEngine(compile_rule_set(parse_rule_set(text)))
    tx = Transaction(transaction_id="t", account_id="ok", amount=5000,
                     timestamp=datetime(2026, 1, 1, tzinfo=UTC))
    row = [0.0] * len(BASE_FEATURES)
    assert engine.evaluate(tx, row, 0.1, 0.1, "approve").fired == ("review",)
    engine.set_entries("allow", frozenset({"ok"}))
    assert engine.evaluate(tx, row, 0.1, 0.1, "approve").fired == ("allow", "review")
