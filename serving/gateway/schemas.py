"""Request and response bodies of the gateway's API (the OpenAPI schema is built from these)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from fraudops.schema import Decision, Identifier


class Accepted(BaseModel):
    """A transaction acknowledged by Kafka."""

    transaction_id: str
    topic: str
    partition: int
    offset: int


class ScoreResponse(BaseModel):
    """Synchronous decision for one transaction."""

    transaction_id: str
    decision: Decision
    fraud_probability: float
    anomaly_score: float
    reason_codes: list[str]
    model_version: str | None
    history_used: int = Field(description="Stored transactions of the account replayed first.")
    labels_applied: int = Field(
        default=0, description="Stored labels known before the event (of the account's "
                               "transactions and of its recent merchants' and devices') "
                               "applied during the replay.")
    history_source: Literal["store", "unavailable"] = Field(
        description="'unavailable' when the store could not be read: scored without history.")
    model_decision: Decision | None = Field(
        default=None, description="The model's own decision (`decision` is after the rules).")
    rules_fired: list[str] = Field(default_factory=list,
                                   description="Ids of the rules that fired, in rule-set order.")
    rule_set_version: str | None = Field(
        default=None, description="The rule set in force (None: no rule set configured).")


class AlertOut(BaseModel):
    """One alert (a transaction decided review or block)."""

    model_config = ConfigDict(from_attributes=True)

    transaction_id: str
    account_id: str
    event_time: datetime
    amount: float
    decision: str
    fraud_probability: float
    anomaly_score: float
    reason_codes: str
    status: str
    created_at: datetime
    updated_at: datetime
    rules_fired: str = Field(default="", description="Rule ids that fired, comma-separated.")
    rule_set_version: str = Field(default="", description="The rule set in force (\"\": none).")


class AlertPage(BaseModel):
    items: list[AlertOut]
    limit: int
    offset: int
    next_offset: int | None = Field(description="Offset of the next page; null on the last.")


class LabelOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    label: int
    source: str
    analyst: str | None
    note: str | None
    labelled_at: datetime


class LabelEventOut(BaseModel):
    """One entry of a transaction's label history."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    label: int
    previous_label: int | None = Field(description="The current verdict when it was given.")
    outcome: Literal["new", "unchanged", "changed", "late"] = Field(
        description="'changed': it contradicts the verdict before it (a conflict); 'late': "
                    "known before the current verdict, which stands.")
    analyst: str | None
    source: str
    note: str | None
    labelled_at: datetime
    published_at: datetime | None


class AlertDetail(AlertOut):
    transaction: dict | None = Field(description="The transaction as the consumer received it.")
    model_version: str | None
    label: LabelOut | None = Field(description="The current verdict.")
    label_history: list[LabelEventOut] = Field(
        default_factory=list, description="Every label given, oldest first.")
    label_conflict: bool = Field(
        default=False, description="Analysts gave this transaction different verdicts.")


class Verdict(StrEnum):
    """An analyst's verdict on an alert."""

    CONFIRMED_FRAUD = "confirmed_fraud"
    LEGITIMATE = "legitimate"


class FeedbackIn(BaseModel):
    """An analyst confirms (fraud) or rejects (legitimate) an alert.

    There is no analyst field: the analyst is the authenticated principal.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    transaction_id: Identifier
    verdict: Verdict
    note: Annotated[str, Field(max_length=2000)] | None = None
    labelled_at: AwareDatetime | None = Field(
        default=None, description="When the analyst reached the verdict (default: now); not "
                                  "before the transaction, and a time in the future counts as now.")


class FeedbackOut(BaseModel):
    """The recorded label; the analyst is the authenticated principal."""

    transaction_id: str
    label: int = Field(description="The current verdict (1 = fraud) after this label.")
    alert_status: str
    analyst: str
    entry_id: int = Field(description="This label's entry in the label history.")
    labelled_at: datetime = Field(description="When this label became known.")
    outcome: Literal["new", "unchanged", "changed", "late"]
    previous_label: int | None
    published: bool = Field(description="This request produced the verdict to the labels topic "
                                        "(an unchanged repeat of a published verdict is not).")
    topic: str
    offset: int | None


class PrincipalOut(BaseModel):
    """A configured principal (never its key)."""

    name: str
    roles: list[str]


class DriftReportSummary(BaseModel):
    """One drift report (fields other than `report_id` come from its report.json if present)."""

    report_id: str
    created_at: datetime | None = None
    dataset_drift: bool | None = None
    drift_share: float | None = None
    drifted_columns: list[str] | None = None
    html: bool


class DriftReportPage(BaseModel):
    items: list[DriftReportSummary]
    limit: int
    offset: int
    total: int


class ComponentStatus(BaseModel):
    ok: bool
    detail: str = ""


class Readiness(BaseModel):
    ready: bool
    kafka: ComponentStatus
    store: ComponentStatus
    predictor: ComponentStatus
