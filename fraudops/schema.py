"""The events: one model each, shared by Kafka messages, the HTTP API and the data sets.

A `Transaction` is what flows on the `transactions` topic and what `POST /v1/transactions`
accepts. Tabular data sets (Parquet) use the same field names, one column per field, with the
passthrough features in columns named ``extra_<name>`` (see `fraudops.data.tabular`).

A `Decision` is what is done with a scored transaction, the same vocabulary for the predictor's
answers, the rules' actions, the store's alerts, the gateway's API and the quality figures.

A `TransactionLabel` is a verdict on one transaction that became known at its own time
(`labelled_at`): what flows on the `labels` topic, what the gateway's feedback and the store
record, and a row of a label stream (`fraudops.data.labels`) written by the generator and import.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: Largest amount accepted for one transaction, in the transaction's currency. Anything above is
#: almost certainly a unit error (cents sent as units) or garbage, and is rejected.
MAX_AMOUNT = 10_000_000.0
#: Event timestamps outside this range are rejected as absurd.
MIN_TIMESTAMP = datetime(2000, 1, 1, tzinfo=UTC)
MAX_TIMESTAMP = datetime(2100, 1, 1, tzinfo=UTC)
#: Most passthrough feature columns a single event may carry.
MAX_EXTRA_FEATURES = 512
#: Name prefix of a passthrough feature, as a tabular column and as a model feature.
EXTRA_PREFIX = "extra_"


class Channel(StrEnum):
    """How the payment was made."""

    CARD_PRESENT = "card_present"
    ONLINE = "online"
    TRANSFER = "transfer"
    CASH_OUT = "cash_out"
    ATM = "atm"
    OTHER = "other"


class MerchantCategory(StrEnum):
    """Coarse merchant categories (a small, fixed vocabulary so encodings stay stable)."""

    GROCERY = "grocery"
    RESTAURANT = "restaurant"
    FUEL = "fuel"
    RETAIL = "retail"
    ELECTRONICS = "electronics"
    TRAVEL = "travel"
    ENTERTAINMENT = "entertainment"
    UTILITIES = "utilities"
    HEALTH = "health"
    JEWELRY = "jewelry"
    DIGITAL_GOODS = "digital_goods"
    MONEY_TRANSFER = "money_transfer"
    OTHER = "other"


#: A decision that raises an alert for an analyst: the transaction is "flagged".
AlertDecision = Literal["review", "block"]
#: What is done with a scored transaction, in increasing severity: let it through (approve), hold
#: it for an analyst (review), refuse it (block). Of several decisions the most severe wins.
Decision = Literal["approve", AlertDecision]
#: The decisions in increasing severity, and their names.
DECISIONS: tuple[str, ...] = get_args(Decision)
APPROVE, REVIEW, BLOCK = DECISIONS
#: The decisions that flag a transaction (an alert): every one but approve.
ALERT_DECISIONS: tuple[str, ...] = get_args(AlertDecision)


Identifier = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@/+-]+$")]


def utc_in_range(value: datetime, name: str) -> datetime:
    """`value` in UTC; ValueError if it has no timezone or lies outside the accepted years."""
    if value.tzinfo is None:
        raise ValueError(f"{name} must include a timezone (e.g. 2026-01-31T12:00:00Z)")
    try:
        utc = value.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:30-05:00 is in year 10000 in UTC
        utc = None
    if utc is None or not MIN_TIMESTAMP <= utc < MAX_TIMESTAMP:
        raise ValueError(
            f"{name} {value.isoformat()} is outside {MIN_TIMESTAMP.year}-{MAX_TIMESTAMP.year}"
        )
    return utc


class Transaction(BaseModel):
    """One payment event.

    Optional identity fields (merchant, country, device) may be unknown, for instance in an
    imported data set: features then treat them as "never new" instead of guessing.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    transaction_id: Identifier
    account_id: Identifier
    timestamp: datetime = Field(description="Event time; must carry a timezone, stored as UTC.")
    amount: float = Field(ge=0.0, le=MAX_AMOUNT, allow_inf_nan=False)
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    merchant_id: Identifier | None = None
    merchant_category: MerchantCategory = MerchantCategory.OTHER
    channel: Channel = Channel.OTHER
    country: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")
    device_id: Identifier | None = None
    label: int | None = Field(default=None, ge=0, le=1, description="1 = fraud, 0 = legitimate.")
    fraud_scenario: str | None = Field(
        default=None,
        max_length=64,
        description="Ground truth of synthetic data (which fraud scenario); never a model input.",
    )
    extra: dict[str, float] = Field(
        default_factory=dict,
        max_length=MAX_EXTRA_FEATURES,
        description="Passthrough numeric features that the source data already has.",
    )

    @field_validator("timestamp")
    @classmethod
    def _utc_in_range(cls, value: datetime) -> datetime:
        return utc_in_range(value, "timestamp")

    @field_validator("extra")
    @classmethod
    def _finite_extras(cls, value: dict[str, float]) -> dict[str, float]:
        bad = sorted(name for name, number in value.items() if not math.isfinite(number))
        if bad:
            raise ValueError(f"extra features must be finite numbers; not finite: {', '.join(bad)}")
        return value

    @property
    def epoch_seconds(self) -> float:
        """Event time as seconds since the Unix epoch (what the feature code works in)."""
        return self.timestamp.timestamp()


class LabelSource(StrEnum):
    """Who or what gave a verdict."""

    ANALYST = "analyst"  # a person reviewing an alert (the gateway's feedback)
    CHARGEBACK = "chargeback"  # the card holder disputed it, days to weeks later
    RULE = "rule"  # a policy, e.g. "no dispute within the maturity period: legitimate"
    IMPORT = "import"  # a label column of an imported data set


#: Source names older producers wrote on the `labels` topic, and what they mean now.
LEGACY_LABEL_SOURCES = {"gateway": LabelSource.ANALYST, "labels-topic": LabelSource.ANALYST}


class TransactionLabel(BaseModel):
    """A verdict on one transaction (1 = fraud, 0 = legitimate), known from `labelled_at`.

    The entity keys (account, merchant, device) are those of the judged transaction, carried so
    that a consumer can update the judged entities' state without looking the transaction up;
    they are optional (a label may arrive before, or without, its transaction).
    `labelled_at` is None only in messages of older producers: the store then uses the time it
    records the label.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    transaction_id: Identifier
    label: int = Field(ge=0, le=1, description="1 = fraud, 0 = legitimate.")
    labelled_at: datetime | None = Field(
        default=None, description="When the verdict became known; must carry a timezone.")
    source: LabelSource = LabelSource.ANALYST
    analyst: str | None = Field(default=None, max_length=128)
    note: str | None = Field(default=None, max_length=2000)
    account_id: Identifier | None = None
    merchant_id: Identifier | None = None
    device_id: Identifier | None = None

    @field_validator("labelled_at")
    @classmethod
    def _utc_in_range(cls, value: datetime | None) -> datetime | None:
        return None if value is None else utc_in_range(value, "labelled_at")

    @field_validator("source", mode="before")
    @classmethod
    def _legacy_source(cls, value: object) -> object:
        return LEGACY_LABEL_SOURCES.get(value, value) if isinstance(value, str) else value
