"""`POST /v1/feedback`: an analyst confirms or rejects an alert."""

from __future__ import annotations

import json

from fastapi import APIRouter, HTTPException, status

from fraudops.store import AlertStatus, LabelRecord, NotFoundError
from serving.gateway.deps import V1, ServicesDep, StoreDep
from serving.gateway.schemas import FeedbackIn, FeedbackOut, Verdict

router = APIRouter(prefix=V1, tags=["feedback"])


@router.post("/feedback", response_model=FeedbackOut,
             responses={404: {"description": "No alert for this transaction."},
                        503: {"description": "Kafka did not acknowledge the label; retry."}})
def submit_feedback(feedback: FeedbackIn, store: StoreDep, services: ServicesDep) -> FeedbackOut:
    """Store the label and the alert's new status, then publish the label on `labels`.

    The store is written first (an idempotent upsert), then the label is produced and
    acknowledged; if Kafka fails the answer is 503 and repeating the request is safe.
    """
    try:
        alert = store.get_alert(feedback.transaction_id)
    except NotFoundError as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(error)) from None
    fraud = feedback.verdict is Verdict.CONFIRMED_FRAUD
    label = int(fraud)
    store.add_labels([LabelRecord(feedback.transaction_id, label, source="gateway",
                                  analyst=feedback.analyst, note=feedback.note)])
    new_status = AlertStatus.CONFIRMED_FRAUD if fraud else AlertStatus.DISMISSED
    store.set_alert_status(feedback.transaction_id, new_status)
    message = {"transaction_id": feedback.transaction_id, "account_id": alert.account_id,
               "label": label, "analyst": feedback.analyst, "note": feedback.note,
               "source": "gateway"}
    topic = services.settings.kafka.topics.labels
    metadata = services.producer.send(topic, key=alert.account_id.encode(),
                                      value=json.dumps(message).encode())
    services.metrics.feedback.labels(feedback.verdict.value).inc()
    return FeedbackOut(transaction_id=feedback.transaction_id, label=label,
                       alert_status=new_status.value, topic=topic, offset=metadata.offset)
