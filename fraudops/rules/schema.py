"""The rule-set document: pydantic models with ``extra="forbid"`` (an unknown or misspelt key
is an error) and the checks that need the whole tree (subjects, operator and value types, list
references). `fraudops.rules.loader` turns their errors into lines naming the rule id.

A rule set in YAML::

    version: "2026-12-06.1"
    lists: {deny_accounts: account, trusted_merchants: merchant}
    rules:
      - id: deny-listed-account
        owner: fraud-ops
        description: Accounts on the deny list are blocked.
        action: block
        when: {field: account_id, in_list: deny_accounts}
      - id: big-new-device
        owner: fraud-ops
        description: A large amount from a device the account never used.
        action: review
        when:
          all:
            - {field: amount, gt: 2000}
            - {feature: account_new_device, eq: 1}
            - not: {score: fraud_probability, lt: 0.05}
"""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    Tag,
    model_validator,
)

from fraudops.features import BASE_FEATURES
from fraudops.rules.subjects import ListKind
from fraudops.schema import APPROVE, DECISIONS, EXTRA_PREFIX, Decision

#: Rule and list ids travel in metric labels and hand-built JSON: a safe alphabet only.
RULE_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
VERSION = r"^[A-Za-z0-9][A-Za-z0-9_.:+-]{0,63}$"
LIST_NAME = r"^[a-z][a-z0-9_]{0,63}$"
COMPARISONS = ("eq", "ne", "gt", "ge", "lt", "le")
MEMBERSHIP = ("in", "not_in")
LIST_OPERATORS = ("in_list", "not_in_list")
OPERATORS = COMPARISONS + MEMBERSHIP + LIST_OPERATORS
SUBJECT_KEYS = ("field", "feature", "score")

Number = StrictInt | StrictFloat
Scalar = Number | StrictStr | StrictBool


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Leaf(_Strict):
    """One test of one subject: exactly one of field/feature/score, exactly one operator."""

    field: StrictStr | None = None
    feature: StrictStr | None = None
    score: StrictStr | None = None
    eq: Scalar | None = None
    ne: Scalar | None = None
    gt: Number | None = None
    ge: Number | None = None
    lt: Number | None = None
    le: Number | None = None
    in_: list[Scalar] | None = Field(default=None, alias="in", min_length=1, max_length=10_000)
    not_in: list[Scalar] | None = Field(default=None, min_length=1, max_length=10_000)
    in_list: StrictStr | None = None
    not_in_list: StrictStr | None = None

    @model_validator(mode="after")
    def _one_subject_one_operator(self) -> Leaf:
        subjects = [key for key in SUBJECT_KEYS if getattr(self, key) is not None]
        if len(subjects) != 1:
            raise ValueError("a condition names exactly one of field, feature or score "
                             f"(got {', '.join(subjects) or 'none'})")
        operators = self.operators()
        if len(operators) != 1:
            raise ValueError(f"a condition has exactly one operator among {', '.join(OPERATORS)}"
                             f" (got {', '.join(operators) or 'none'})")
        return self

    def operators(self) -> list[str]:
        return [op for op in OPERATORS if getattr(self, _attr(op)) is not None]

    @property
    def subject(self) -> tuple[str, str]:
        """(kind, name): kind is field, feature or score."""
        kind = next(key for key in SUBJECT_KEYS if getattr(self, key) is not None)
        return kind, getattr(self, kind)

    @property
    def operator(self) -> tuple[str, Any]:
        op = self.operators()[0]
        return op, getattr(self, _attr(op))


def _attr(operator: str) -> str:
    return "in_" if operator == "in" else operator


class AllOf(_Strict):
    all: list[Condition] = Field(min_length=1)


class AnyOf(_Strict):
    any: list[Condition] = Field(min_length=1)


class NotOf(_Strict):
    not_: Condition = Field(alias="not")


def _node_kind(value: Any) -> str:
    """Which node a mapping is, from its keys (the error then speaks of that node only)."""
    if isinstance(value, dict):
        keys = set(value)
    elif isinstance(value, BaseModel):
        return {AllOf: "all-of", AnyOf: "any-of", NotOf: "not-of"}.get(type(value), "test")
    else:
        return "test"
    for key, tag in (("all", "all-of"), ("any", "any-of"), ("not", "not-of")):
        if key in keys:
            return tag
    return "test"


#: A condition: a test, or all/any of conditions, or not a condition.
Condition = Annotated[
    Union[Annotated[AllOf, Tag("all-of")], Annotated[AnyOf, Tag("any-of")],  # noqa: UP007
          Annotated[NotOf, Tag("not-of")], Annotated[Leaf, Tag("test")]],
    Discriminator(_node_kind)]
NODE_TAGS = frozenset({"all-of", "any-of", "not-of", "test"})
AllOf.model_rebuild()
AnyOf.model_rebuild()
NotOf.model_rebuild()


class Rule(_Strict):
    """One rule: when its condition holds, it fires and asks for its action."""

    id: str = Field(pattern=RULE_ID)
    owner: str = Field(min_length=1, max_length=128)
    description: str = Field(min_length=1, max_length=2000)
    #: A rule's rank among rules is its decision's severity (`fraudops.schema.DECISIONS`).
    action: Decision
    #: Only for approve: when it fires, the model's review/block is overridden (an allow
    #: list). A review or block rule that fires as well still wins.
    override_model: StrictBool = False
    enabled: StrictBool = True
    when: Condition

    @model_validator(mode="after")
    def _override_only_approves(self) -> Rule:
        if self.override_model and self.action != APPROVE:
            raise ValueError("override_model is only allowed with action approve")
        return self

    @property
    def rank(self) -> int:
        return DECISIONS.index(self.action)


class RuleSet(_Strict):
    """A versioned rule set: the lists it uses (name: kind) and its rules, in order."""

    version: str = Field(pattern=VERSION)
    description: str = ""
    lists: dict[Annotated[str, Field(pattern=LIST_NAME)], ListKind] = Field(default_factory=dict)
    rules: list[Rule] = Field(default_factory=list, max_length=1000)

    @property
    def enabled_rules(self) -> list[Rule]:
        return [rule for rule in self.rules if rule.enabled]


def known_feature(name: str, names: tuple[str, ...] = BASE_FEATURES) -> bool:
    """A feature of the current spec, or a passthrough feature (resolved at compile time)."""
    return name in names or name.startswith(EXTRA_PREFIX)
