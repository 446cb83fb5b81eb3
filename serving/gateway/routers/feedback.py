"""`POST /v1/feedback`: an analyst confirms or rejects an alert, in their own name."""

from __future__ import annotations

import json

from fastapi import APIRouter, HTTPException, status

from fraudops.store import Alert, AlertStatus, LabelEntry, LabelRecord, NotFoundError, Store
from serving.gateway.deps import V1, PrincipalDep, Services, ServicesDep, StoreDep
from serving.gateway.errors import StrictJSONRoute
from serving.gateway.schemas import FeedbackIn, FeedbackOut, Verdict

router = APIRouter(prefix=V1, tags=["feedback"], route_class=StrictJSONRoute)
#: `source` of the labels this route records and produces.
SOURCE = "gateway"


@router.post("/feedback", response_model=FeedbackOut,
             responses={404: {"description": "No alert for this transaction."},
                        503: {"description": "Kafka did not acknowledge the label; retry."}})
def submit_feedback(feedback: FeedbackIn, store: StoreDep, services: ServicesDep,
                    principal: PrincipalDep) -> FeedbackOut:
    """Append the label to the transaction's history in the caller's name (the authenticated
    principal, never a field of the body).

    The latest label is the current verdict (the alert's status follows it). A verdict is
    produced to `labels` once: a repeat of the current verdict is recorded and acknowledged but
    not produced again, unless no earlier request got it acknowledged by Kafka (then this one
    produces it). If Kafka fails the answer is 503 and repeating the request is safe.
    """
    try:
        alert = store.get_alert(feedback.transaction_id)
    except NotFoundError as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(error)) from None
    label = int(feedback.verdict is Verdict.CONFIRMED_FRAUD)
    entry = store.record_label(LabelRecord(feedback.transaction_id, label, source=SOURCE,
                                           analyst=principal.name, note=feedback.note))
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
    return FeedbackOut(transaction_id=feedback.transaction_id, label=verdict,
                       alert_status=new_status.value, analyst=principal.name,
                       entry_id=entry.id, outcome=entry.outcome,
                       previous_label=entry.previous_label, published=offset is not None,
                       topic=topic, offset=offset)


def _publish_pending(services: Services, store: Store, alert: Alert, topic: str) -> int | None:
    """Produce the current verdict unless it has reached the topic; its offset, or None."""
    pending = store.unpublished_verdict(alert.transaction_id)
    if pending is None:
        return None
    offset = services.producer.send(topic, key=alert.account_id.encode(),
                                    value=label_message(alert, pending)).offset
    store.mark_label_published(pending.id)
    return offset


def label_message(alert: Alert, entry: LabelEntry) -> bytes:
    """The `labels` record of a history entry; its `labelled_at` lets the consumer's store
    recognise the label it already holds."""
    return json.dumps({
        "transaction_id": entry.transaction_id, "account_id": alert.account_id,
        "label": entry.label, "analyst": entry.analyst, "note": entry.note,
        "source": entry.source, "labelled_at": entry.labelled_at.isoformat()}).encode()
