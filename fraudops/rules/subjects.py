"""What a rule condition can look at: transaction fields, features and model scores.

Each subject has a type (number, text, identifier of a list kind, or a closed vocabulary) that
the validator checks every operator and value against, and a Python expression that the
compiler writes into the generated evaluator (subject names come from these tables only, never
from the rule set's text).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from fraudops.features import BASE_FEATURES
from fraudops.schema import Channel, MerchantCategory

#: Model scores a rule can test (the predictor's outputs).
SCORES = ("fraud_probability", "anomaly_score")
#: Transaction fields a rule may not use: ground truth of synthetic or labelled data.
FORBIDDEN_FIELDS = {"label": "the label is ground truth, never known at decision time",
                    "fraud_scenario": "the scenario is synthetic ground truth",
                    "timestamp": "compare features (hour_sin, account_gap_log...) instead"}
EXTRA_PREFIX = "extra."


class ListKind(StrEnum):
    """What a deny/allow list holds; each kind matches one transaction field."""

    ACCOUNT = "account"
    MERCHANT = "merchant"
    DEVICE = "device"
    COUNTRY = "country"


class ValueType(StrEnum):
    NUMBER = "number"
    TEXT = "text"


@dataclass(frozen=True)
class Subject:
    """One thing a condition tests: its type, whether it may be missing, its list kind and
    closed vocabulary where it has them, and how the evaluator reads it."""

    name: str
    type: ValueType
    optional: bool = False
    list_kind: ListKind | None = None
    vocabulary: tuple[str, ...] = ()
    #: Python expression over the evaluator's arguments (tx, f, p, a).
    expression: str = ""


def _field(name: str, value_type: ValueType, **options) -> Subject:
    return Subject(name, value_type, expression=f"tx.{name}", **options)


FIELDS: dict[str, Subject] = {s.name: s for s in (
    _field("amount", ValueType.NUMBER),
    _field("currency", ValueType.TEXT),
    _field("transaction_id", ValueType.TEXT),
    _field("account_id", ValueType.TEXT, list_kind=ListKind.ACCOUNT),
    _field("merchant_id", ValueType.TEXT, optional=True, list_kind=ListKind.MERCHANT),
    _field("device_id", ValueType.TEXT, optional=True, list_kind=ListKind.DEVICE),
    _field("country", ValueType.TEXT, optional=True, list_kind=ListKind.COUNTRY),
    _field("channel", ValueType.TEXT, vocabulary=tuple(c.value for c in Channel)),
    _field("merchant_category", ValueType.TEXT,
           vocabulary=tuple(c.value for c in MerchantCategory)),
)}


def field_subject(name: str) -> Subject:
    """The subject of transaction field `name` (``extra.NAME`` for a passthrough feature of
    the event, missing when the event lacks it); KeyError with the reason if there is none."""
    if name in FIELDS:
        return FIELDS[name]
    if name.startswith(EXTRA_PREFIX) and len(name) > len(EXTRA_PREFIX):
        # The key is bound as a constant by the compiler, not written into the source.
        return Subject(name, ValueType.NUMBER, optional=True, expression="tx.extra.get")
    if name in FORBIDDEN_FIELDS:
        raise KeyError(f"field {name!r} cannot be used in a rule: {FORBIDDEN_FIELDS[name]}")
    raise KeyError(f"unknown field {name!r}; one of {', '.join(FIELDS)} or extra.<name>")


def feature_subject(name: str, names: tuple[str, ...] = BASE_FEATURES) -> Subject:
    """The subject of feature `name` of the spec whose names are `names`."""
    if name not in names:
        raise KeyError(f"unknown feature {name!r} (feature names are those of the feature "
                       "spec, e.g. account_count_1h_log, account_new_device)")
    return Subject(name, ValueType.NUMBER, expression=f"f[{names.index(name)}]")


def score_subject(name: str) -> Subject:
    """The subject of model score `name`."""
    if name not in SCORES:
        raise KeyError(f"unknown score {name!r}; one of {', '.join(SCORES)}")
    return Subject(name, ValueType.NUMBER, expression="p" if name == SCORES[0] else "a")
