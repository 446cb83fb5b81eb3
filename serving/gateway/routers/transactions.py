"""`POST /v1/transactions`: accept a transaction onto the `transactions` topic."""

from __future__ import annotations

from fastapi import APIRouter, status

from fraudops.schema import Transaction
from serving.gateway.deps import V1, ServicesDep
from serving.gateway.errors import StrictJSONRoute
from serving.gateway.schemas import Accepted

router = APIRouter(prefix=V1, tags=["transactions"], route_class=StrictJSONRoute)


@router.post("/transactions", status_code=status.HTTP_202_ACCEPTED, response_model=Accepted,
             responses={503: {"description": "Kafka did not acknowledge; nothing accepted."}})
async def submit_transaction(transaction: Transaction, services: ServicesDep) -> Accepted:
    """Validate and produce the transaction, keyed by account, once Kafka acknowledges it.

    The answer waits for the broker's acknowledgement (acks=all): a 202 means the transaction
    is on the topic; a 503 means it is not, and the client should retry.
    """
    topic = services.settings.kafka.topics.transactions
    metadata = await services.producer.asend(topic, key=transaction.account_id.encode(),
                                             value=transaction.model_dump_json().encode())
    services.metrics.produced.inc()
    return Accepted(transaction_id=transaction.transaction_id, topic=topic,
                    partition=metadata.partition, offset=metadata.offset)
