"""`POST /v1/feedback`: an analyst confirms or rejects an alert, in their own name."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from fastapi import APIRouter, HTTPException, status

from fraudops.schema import LabelSource, TransactionLabel
from fraudops.store import Alert, AlertStatus, LabelEntry, LabelRecord, NotFoundError, Store
from serving.gateway.deps import V1, PrincipalDep, Services, ServicesDep, StoreDep
from serving.gateway.errors import StrictJSONRoute
from serving.gateway.schemas import FeedbackIn, FeedbackOut, Verdict

router = APIRouter(prefix=V1, tags=["feedback"], route_class=StrictJSONRoute)
#: `source` of the labels this route records and produces.
SOURCE = LabelSource.ANALYST.value
#: The judged transaction's entity keys a label carries on the `labels` topic.
ENTITY_KEYS = ("account_id", "merchant_id", "device_id")


@router.post("/feedback", response_model=FeedbackOut,
             responses={404: {"description": "No alert for this transaction."},
                        422: {"description": "Invalid body, or a label time before the "
                                             "transaction."},
                        503: {"description": "Kafka did not acknowledge the label; retry."}})
def submit_feedback(feedback: FeedbackIn, store: StoreDep, services: ServicesDep,
                    principal: PrincipalDep) -> FeedbackOut:
    """Append the label to the transaction's history in the caller's name (the authenticated
    principal, never a field of the body).

    The latest label is the current verdict (the alert's status follows it). A verdict is
    produced to `labels` once: a repeat of the current verdict is recorded and acknowledged but
    not produced again, unless no earlier request got it acknowledged by Kafka (then this one
    produces it). If Kafka fails the answer is 503 and repeating the request is safe.
    The `labels` record carries the label's time and the entity keys of the stored transaction.
    """
    try:
        alert = store.get_alert(feedback.transaction_id)
    except NotFoundError as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(error)) from None
    if feedback.labelled_at is not None and feedback.labelled_at < alert.event_time:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            detail="labelled_at is before the transaction")
    label = int(feedback.verdict is Verdict.CONFIRMED_FRAUD)
    entry = store.record_label(LabelRecord(feedback.transaction_id, label, source=SOURCE,
                                           analyst=principal.name, note=feedback.note,
                                           labelled_at=feedback.labelled_at))
    if entry is None:  # only a label with its own time can be a redelivery; none is given
        raise HTTPException(status.HTTP_409_CONFLICT, detail="label already recorded")
    current = store.get_label(feedback.transaction_id)
    verdict = current.label if current is not None else label
    new_status = AlertStatus.CONFIRMED_FRAUD if verdict else AlertStatus.DISMISSED
    store.set_alert_status(feedback.transaction_id, new_status)
    topic = services.settings.kafka.topics.labels
    offset = _publish_pending(services, store, alert, topic)
    services.metrics.feedback.labels(feedback.verdict.value).inc()
    services.metrics.label_outcomes.labels(entry.outcome).inc()
    services.metrics.observe_verdict(entry.outcome, feedback.verdict.value, alert.created_at,
                                     entry.labelled_at)
    return FeedbackOut(transaction_id=feedback.transaction_id, label=verdict,
                       alert_status=new_status.value, analyst=principal.name,
                       entry_id=entry.id, labelled_at=entry.labelled_at, outcome=entry.outcome,
                       previous_label=entry.previous_label, published=offset is not None,
                       topic=topic, offset=offset)


def _publish_pending(services: Services, store: Store, alert: Alert, topic: str) -> int | None:
    """Produce the current verdict unless it has reached the topic; its offset, or None."""
    pending = store.unpublished_verdict(alert.transaction_id)
    if pending is None:
        return None
    keys = entity_keys(store, alert)
    offset = services.producer.send(topic, key=alert.account_id.encode(),
                                    value=label_message(pending, keys)).offset
    store.mark_label_published(pending.id)
    return offset


def entity_keys(store: Store, alert: Alert) -> dict[str, str | None]:
    """The account, merchant and device of the judged transaction, from the stored event (the
    alert alone knows the account)."""
    decision = store.get_decision(alert.transaction_id)
    stored = json.loads(decision.transaction_json) if decision is not None else {}
    keys = {name: stored.get(name) for name in ENTITY_KEYS}
    return keys | {"account_id": keys["account_id"] or alert.account_id}


def label_message(entry: LabelEntry, keys: dict[str, str | None]) -> bytes:
    """The `labels` record (a `TransactionLabel`) of a history entry; its `labelled_at` lets
    the consumer's store recognise the label it already holds."""
    return TransactionLabel(
        transaction_id=entry.transaction_id, label=entry.label,
        labelled_at=_aware(entry.labelled_at), source=entry.source, analyst=entry.analyst,
        note=entry.note, **keys).model_dump_json().encode()


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
