"""Compile a validated `RuleSet` once into one generated Python function.

The evaluator is Python source generated from the rule tree and compiled with `compile()`:
one ``if`` per rule, its condition an inline boolean expression over the transaction's
attributes, the feature row by index, the two scores and the lists by position. Nothing is
parsed or looked up by name per transaction. Only names from the fixed subject tables and
integer indices go into the source; every value of the rule set (thresholds, strings, sets)
is bound as a constant of the function's namespace, so no text of the rule set is ever
executed.

Precedence (documented in the README, tested in tests/rules): among the rules that fire, block
beats review beats approve; the final decision is the more severe of the model's and the
rules'. An approve rule with ``override_model: true`` (an allow list) that fires sets the
model aside: the decision is then the rules' own (approve unless a review or block rule fired
as well). Rules only escalate otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fraudops.features import BASE_FEATURES
from fraudops.rules.exceptions import RuleSetError
from fraudops.rules.loader import walk
from fraudops.rules.schema import AllOf, AnyOf, Leaf, NotOf, Rule, RuleSet
from fraudops.rules.subjects import feature_subject, field_subject, score_subject
from fraudops.schema import DECISIONS

_RANK = {action: rank for rank, action in enumerate(DECISIONS)}
_PYTHON_OPS = {"eq": "==", "ne": "!=", "gt": ">", "ge": ">=", "lt": "<", "le": "<=",
               "in": "in", "not_in": "not in", "in_list": "in", "not_in_list": "not in"}

#: The evaluator: (transaction, feature row, fraud probability, anomaly score, lists) ->
#: indices of the rules that fired, in rule-set order.
Evaluator = Callable[[Any, Sequence[float], float, float, tuple[frozenset, ...]], list[int]]


@dataclass(frozen=True)
class CompiledRule:
    """What the decision needs of one enabled rule."""

    id: str
    action: str
    override_model: bool


@dataclass(frozen=True)
class CompiledRuleSet:
    """A rule set ready for the hot path. `lists` gives the order of the lists' entry sets in
    the tuple the evaluator takes; `uses_features` says whether it reads the feature row."""

    version: str
    rules: tuple[CompiledRule, ...]
    lists: tuple[str, ...]
    feature_columns: tuple[int, ...]
    evaluate: Evaluator
    source: str = field(repr=False, default="")

    def decide(self, model_decision: str, fired: Sequence[int]) -> str:
        """The final decision given the model's and the indices of the rules that fired."""
        if not fired:
            return model_decision
        rules = self.rules
        top, override = 0, False
        for i in fired:
            rule = rules[i]
            if rule.override_model:
                override = True
            else:
                top = max(top, _RANK[rule.action])
        return DECISIONS[top if override else max(top, _RANK[model_decision])]

    def fired_ids(self, fired: Sequence[int]) -> tuple[str, ...]:
        return tuple(self.rules[i].id for i in fired)

    @property
    def uses_features(self) -> bool:
        return bool(self.feature_columns)

    def select_features(self, rows: Any) -> list[list[float]]:
        """The evaluator's rows from feature rows [B, F] of the spec (a numpy array): only the
        columns the rules read, as plain floats (cheaper to index than numpy items)."""
        if not self.feature_columns:
            return [[]] * len(rows)
        return rows[:, list(self.feature_columns)].tolist()


class _Writer:
    """Turns conditions into Python expressions, collecting their constants."""

    def __init__(self, feature_names: tuple[str, ...], lists: tuple[str, ...]) -> None:
        self.feature_names = feature_names
        self.lists = lists
        self.constants: dict[str, Any] = {}
        #: Spec columns read, in the order of the evaluator's compact feature row.
        self.columns: list[int] = []

    def constant(self, value: Any) -> str:
        name = f"_k{len(self.constants)}"
        self.constants[name] = value
        return name

    def expression(self, node: Any) -> str:
        if isinstance(node, AllOf):
            return "(" + " and ".join(self.expression(c) for c in node.all) + ")"
        if isinstance(node, AnyOf):
            return "(" + " or ".join(self.expression(c) for c in node.any) + ")"
        if isinstance(node, NotOf):
            return f"(not {self.expression(node.not_)})"
        return self.test(node)

    def test(self, leaf: Leaf) -> str:
        kind, name = leaf.subject
        op, value = leaf.operator
        if kind == "field":
            subject = field_subject(name)
        elif kind == "score":
            subject = score_subject(name)
        else:
            subject = feature_subject(name, self.feature_names)
        read = subject.expression
        if kind == "feature":
            column = self.feature_names.index(name)
            if column not in self.columns:
                self.columns.append(column)
            read = f"f[{self.columns.index(column)}]"
        if read == "tx.extra.get":  # the key is a constant, not source text
            read = f"tx.extra.get({self.constant(name.split('.', 1)[1])})"
        if op in ("in_list", "not_in_list"):
            operand = f"L[{self.lists.index(value)}]"
        elif op in ("in", "not_in"):
            operand = self.constant(frozenset(value))
        else:
            operand = self.constant(value)
        python_op = _PYTHON_OPS[op]
        if subject.optional:  # a missing value fails every test; `not` inverts that
            return f"((_v := {read}) is not None and _v {python_op} {operand})"
        return f"({read} {python_op} {operand})"


def compile_rule_set(rule_set: RuleSet,
                     feature_names: tuple[str, ...] = BASE_FEATURES) -> CompiledRuleSet:
    """Compile the enabled rules of `rule_set` for features named `feature_names` (the served
    model's spec); raises `RuleSetError` when a rule uses a feature the spec lacks."""
    missing = [f"rule {rule.id!r}: {path}: feature {leaf.feature!r} is not in the served "
               "model's feature spec"
               for rule in rule_set.enabled_rules for path, leaf in walk(rule.when, "when")
               if leaf.feature is not None and leaf.feature not in feature_names]
    if missing:
        raise RuleSetError(missing, f"rule set {rule_set.version}")
    lists = tuple(rule_set.lists)
    writer = _Writer(tuple(feature_names), lists)
    lines = ["def evaluate(tx, f, p, a, L):", "    fired = []"]
    for i, rule in enumerate(rule_set.enabled_rules):
        lines += [f"    if {writer.expression(rule.when)}:", f"        fired.append({i})"]
    lines.append("    return fired")
    source = "\n".join(lines) + "\n"
    namespace: dict[str, Any] = {"__builtins__": {}, **writer.constants}
    exec(compile(source, f"<rule set {rule_set.version}>", "exec"), namespace)  # noqa: S102
    return CompiledRuleSet(
        version=rule_set.version, rules=tuple(_compiled(rule) for rule in rule_set.enabled_rules),
        lists=lists, feature_columns=tuple(writer.columns), evaluate=namespace["evaluate"],
        source=source)


def _compiled(rule: Rule) -> CompiledRule:
    return CompiledRule(rule.id, rule.action, rule.override_model)
