"""Rule sets that do not validate: every problem reported, naming the rule id and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from fraudops.rules import RuleSetError, compile_rule_set, load_rule_set, parse_rule_set

EXAMPLE = Path(__file__).parents[2] / "examples" / "rules.yaml"

HEAD = """
version: "t-1"
lists: {deny_accounts: account, bad_merchants: merchant}
rules:
"""


def rule(when: str, action: str = "review", rule_id: str = "r1", extra: str = "") -> str:
    return (f"  - id: {rule_id}\n    owner: ops\n    description: test rule\n"
            f"    action: {action}\n{extra}    when: {when}\n")


def errors_of(text: str) -> list[str]:
    with pytest.raises(RuleSetError) as caught:
        parse_rule_set(text)
    return caught.value.errors


def test_the_example_rule_set_validates_and_compiles() -> None:
    compiled = compile_rule_set(load_rule_set(EXAMPLE))
    assert compiled.version and len(compiled.rules) >= 5


@pytest.mark.parametrize(("when", "expected"), [
    ("{field: amount, gt: '2000'}",
     "rule 'r1': when.gt: type mismatch: expected a number, got '2000'"),
    ("{field: currency, gt: 3}",
     "rule 'r1': when: gt: type mismatch: currency is text, gt compares numbers"),
    ("{field: amount, eq: EUR}",
     "rule 'r1': when: eq: type mismatch: amount is a number, got 'EUR'"),
    ("{field: channel, eq: onlin}", "rule 'r1': when: eq: 'onlin' is not a channel; one of"),
    ("{field: amount, approx: 3}", "rule 'r1': when.approx: unknown field (not allowed here)"),
    ("{field: amount, eq: 1, gt: 2}", "rule 'r1': when: a condition has exactly one operator"),
    ("{field: amount}", "rule 'r1': when: a condition has exactly one operator"),
    ("{field: amount, feature: amount_log, gt: 1}",
     "rule 'r1': when: a condition names exactly one of field, feature or score"),
    ("{field: amout, gt: 1}", "rule 'r1': when: field: unknown field 'amout'"),
    ("{field: label, eq: 1}", "rule 'r1': when: field: field 'label' cannot be used"),
    ("{feature: account_new_devic, eq: 1}", "rule 'r1': when: feature: unknown feature"),
    ("{score: fraud_prob, gt: 0.5}", "rule 'r1': when: score: unknown score 'fraud_prob'"),
    ("{field: account_id, in_list: nope}",
     "rule 'r1': when: in_list: list 'nope' is not declared under lists"),
    ("{field: merchant_id, in_list: deny_accounts}",
     ("rule 'r1': when: in_list: type mismatch: list 'deny_accounts' holds account entries, "
      "merchant_id is a merchant")),
    ("{score: fraud_probability, in_list: deny_accounts}",
     "rule 'r1': when: in_list: fraud_probability cannot be looked up in a list"),
    ("{all: []}", "rule 'r1': when.all: List should have at least 1 item"),
    ("{all: [{field: amount, gt: 1}, {not: {field: country, in: [DE, 7]}}]}",
     "rule 'r1': when.all[1].not: in: type mismatch: country is text, got 7"),
    ("{any: [{field: amount, gt: 1}], all: [{field: amount, gt: 1}]}",
     "rule 'r1': when.any: unknown field (not allowed here)"),
])
def test_a_bad_condition_is_named_by_rule_and_path(when: str, expected: str) -> None:
    problems = errors_of(HEAD + rule(when))
    assert any(problem.startswith(expected) for problem in problems), problems


def test_every_problem_of_every_rule_is_reported() -> None:
    text = HEAD + rule("{field: amount, gt: 1}", action="blok") + \
        rule("{field: amount, gt: 1}", rule_id="r2", extra="    colour: red\n") + \
        "  - id: r3\n    owner: ops\n    action: block\n    when: {field: amount, gt: 1}\n"
    problems = errors_of(text)
    assert "rule 'r1': action: unknown action 'blok'; one of approve, review, block" in problems
    assert "rule 'r2': colour: unknown field (not allowed here)" in problems
    assert "rule 'r3': description: required field missing" in problems


@pytest.mark.parametrize(("text", "expected"), [
    (HEAD + rule("{field: amount, gt: 1}") + rule("{field: amount, gt: 2}"),
     "rule 'r1': id: repeated"),
    (HEAD + rule("{field: amount, gt: 1}", action="block", extra="    override_model: true\n"),
     "rule 'r1': override_model is only allowed with action approve"),
    (HEAD + rule("{field: amount, gt: 1}", rule_id="'bad id'"), "rule 'bad id': id: String should match"),
    ('version: "has space"\nrules: []\n', "rule set: version: String should match"),
    ("version: '1'\nlists: {Deny: account}\nrules: []\n", "rule set: lists.Deny.[key]"),
    ("version: '1'\nlists: {deny: planet}\nrules: []\n", "rule set: lists.deny: Input should"),
    ("rules: []\n", "rule set: version: required field missing"),
    ("- just a list\n", "the document must be a mapping"),
    ("version: [unclosed\n", "not valid YAML"),
])
def test_rule_set_level_problems(text: str, expected: str) -> None:
    problems = errors_of(text)
    assert any(problem.startswith(expected) for problem in problems), problems


def test_a_feature_missing_from_the_served_spec_is_refused_at_compile_time() -> None:
    rule_set = parse_rule_set(HEAD + rule("{feature: extra_v1, gt: 1}"))
    with pytest.raises(RuleSetError, match="'extra_v1' is not in the served model's feature"):
        compile_rule_set(rule_set)
    assert compile_rule_set(rule_set, ("amount_log", "extra_v1")).uses_features


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(RuleSetError, match="cannot read the file"):
        load_rule_set(tmp_path / "missing.yaml")
