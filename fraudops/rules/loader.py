"""Loading a rule set: YAML to `RuleSet`, every problem reported as one line that names the
rule (by id, else by position) and the path of the field at fault."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from fraudops.rules.exceptions import RuleSetError
from fraudops.rules.schema import (
    COMPARISONS,
    LIST_OPERATORS,
    MEMBERSHIP,
    NODE_TAGS,
    AllOf,
    AnyOf,
    Leaf,
    NotOf,
    RuleSet,
    known_feature,
)
from fraudops.rules.subjects import Subject, ValueType, field_subject, score_subject

#: Member names pydantic puts in an error's location for a union of plain types.
_TYPE_TAGS = frozenset({"int", "float", "str", "bool"})
#: Largest rule-set file read (a rule set is a few kilobytes; this bounds a mistake).
MAX_BYTES = 1024 * 1024


def load_rule_set(path: str | Path) -> RuleSet:
    """Read and validate the rule set at `path`; raises `RuleSetError` with every problem."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise RuleSetError([f"cannot read the file: {error.strerror or error}"], str(path)) from None
    return parse_rule_set(raw, str(path))


def parse_rule_set(text: str | bytes, source: str = "rule set") -> RuleSet:
    """Validate a rule set given as YAML text; raises `RuleSetError` with every problem."""
    if len(text) > MAX_BYTES:
        raise RuleSetError([f"larger than {MAX_BYTES} bytes"], source)
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise RuleSetError([f"not valid YAML: {error}"], source) from None
    if not isinstance(document, dict):
        raise RuleSetError(["the document must be a mapping with version, lists and rules"],
                           source)
    try:
        rule_set = RuleSet.model_validate(document)
    except ValidationError as error:
        lines = [_describe(item, document) for item in error.errors()]
        raise RuleSetError(list(dict.fromkeys(lines)), source) from None
    problems = list(semantic_errors(rule_set))
    if problems:
        raise RuleSetError(problems, source)
    return rule_set


def fingerprint(text: str | bytes) -> str:
    """A short hash of a rule set's text (tells a changed file from a touched one)."""
    data = text.encode() if isinstance(text, str) else text
    return hashlib.sha256(data).hexdigest()[:16]


def _describe(item: dict[str, Any], document: dict[str, Any]) -> str:
    """'rule <id>: when.all[1].gt: <message>' from one pydantic error."""
    loc = [part for part in item["loc"] if part not in NODE_TAGS]
    union_member = loc and loc[-1] in _TYPE_TAGS
    if union_member:  # one line per value, not one per type the union tried
        loc = loc[:-1]
    where = "rule set"
    if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
        where = _rule_name(document, loc[1])
        loc = loc[2:]
    path = _path(loc)
    message = item["msg"]
    if item["type"] == "extra_forbidden":
        message = "unknown field (not allowed here)"
    elif item["type"] == "missing":
        message = "required field missing"
    elif union_member:
        message = f"type mismatch: expected {_expected(path)}, got {item.get('input')!r}"
    elif item["type"] == "literal_error" and path == "action":
        message = f"unknown action {item.get('input')!r}; one of approve, review, block"
    message = message.removeprefix("Value error, ")
    return f"{where}: {path}: {message}" if path else f"{where}: {message}"


def _expected(path: str) -> str:
    operator = path.rsplit(".", 1)[-1].split("[", 1)[0]
    return "a number" if operator in COMPARISONS[2:] else "a number, text or true/false"


def _rule_name(document: dict[str, Any], index: int) -> str:
    rules = document.get("rules")
    rule = rules[index] if isinstance(rules, list) and index < len(rules) else None
    rule_id = rule.get("id") if isinstance(rule, dict) else None
    return f"rule {rule_id!r}" if isinstance(rule_id, str) else f"rules[{index}]"


def _path(loc: list[Any]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def semantic_errors(rule_set: RuleSet) -> Iterator[str]:
    """Problems a single field cannot show: repeated ids, subjects, operator and value types,
    lists that are not declared or of another kind."""
    seen: set[str] = set()
    for rule in rule_set.rules:
        if rule.id in seen:
            yield f"rule {rule.id!r}: id: repeated (rule ids must be unique)"
        seen.add(rule.id)
        for path, leaf in walk(rule.when, "when"):
            for problem in leaf_errors(leaf, rule_set):
                yield f"rule {rule.id!r}: {path}: {problem}"


def walk(node: Any, path: str) -> Iterator[tuple[str, Leaf]]:
    """Every test of a condition tree with its path (``when.all[0].not``)."""
    if isinstance(node, AllOf | AnyOf):
        key = "all" if isinstance(node, AllOf) else "any"
        for i, child in enumerate(node.all if key == "all" else node.any):
            yield from walk(child, f"{path}.{key}[{i}]")
    elif isinstance(node, NotOf):
        yield from walk(node.not_, f"{path}.not")
    else:
        yield path, node


def leaf_errors(leaf: Leaf, rule_set: RuleSet) -> Iterator[str]:
    """What is wrong with one test (nothing for a good one)."""
    kind, name = leaf.subject
    op, value = leaf.operator
    try:
        subject = _subject(kind, name)
    except KeyError as error:
        yield f"{kind}: {error.args[0]}"
        return
    if op in LIST_OPERATORS:
        yield from _list_errors(subject, op, value, rule_set)
        return
    values = value if op in MEMBERSHIP else [value]
    if op in COMPARISONS[2:] and subject.type is not ValueType.NUMBER:
        yield f"{op}: type mismatch: {name} is text, {op} compares numbers"
        return
    for item in values:
        problem = _value_error(subject, item)
        if problem:
            yield f"{op}: {problem}"


def _subject(kind: str, name: str) -> Subject:
    if kind == "field":
        return field_subject(name)
    if kind == "score":
        return score_subject(name)
    if not known_feature(name):
        raise KeyError(f"unknown feature {name!r} (use a name of the feature spec, e.g. "
                       "account_count_1h_log, account_new_device)")
    return Subject(name, ValueType.NUMBER)


def _value_error(subject: Subject, value: Any) -> str | None:
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if subject.type is ValueType.NUMBER and not is_number:
        return f"type mismatch: {subject.name} is a number, got {value!r}"
    if subject.type is ValueType.TEXT and not isinstance(value, str):
        return f"type mismatch: {subject.name} is text, got {value!r}"
    if subject.vocabulary and value not in subject.vocabulary:
        return (f"{value!r} is not a {subject.name}; one of "
                f"{', '.join(subject.vocabulary)}")
    if is_number and not math.isfinite(value):  # NaN never compares true: a mistake
        return f"{value} is not a usable value"
    return None


def _list_errors(subject: Subject, op: str, name: str, rule_set: RuleSet) -> Iterator[str]:
    if subject.list_kind is None:
        yield f"{op}: {subject.name} cannot be looked up in a list (lists hold accounts, " \
              "merchants, devices or countries)"
    elif name not in rule_set.lists:
        yield f"{op}: list {name!r} is not declared under lists"
    elif rule_set.lists[name] is not subject.list_kind:
        yield (f"{op}: type mismatch: list {name!r} holds {rule_set.lists[name].value} "
               f"entries, {subject.name} is a {subject.list_kind.value}")
