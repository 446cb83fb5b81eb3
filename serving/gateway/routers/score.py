"""`POST /v1/score`: a synchronous decision for one transaction (see `serving.gateway.scoring`)."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.exc import SQLAlchemyError

from fraudops.rules import RuleOutcome
from fraudops.schema import Transaction, TransactionLabel
from serving.exceptions import StoreUnavailableError
from serving.gateway import queries
from serving.gateway.deps import V1, Services, ServicesDep
from serving.gateway.errors import StrictJSONRoute
from serving.gateway.schemas import ScoreResponse
from serving.gateway.scoring import label_scope, replay

router = APIRouter(prefix=V1, tags=["scoring"], route_class=StrictJSONRoute)
log = logging.getLogger(__name__)


@router.post("/score", response_model=ScoreResponse,
             responses={503: {"description": "Predictor unavailable or incompatible."}})
async def score_transaction(transaction: Transaction, services: ServicesDep) -> ScoreResponse:
    """Score one transaction against its account's stored history; nothing is produced or stored.

    With a rule set configured (`rules_path`), the rules and lists apply as in the consumer:
    `decision` is the final one, `model_decision` the model's own, `rules_fired` and
    `rule_set_version` say what decided.

    The transaction still has to go through `POST /v1/transactions` (or the topic) to become
    part of the account's history and of the alert queue.
    """
    served = await services.predictor.features()
    history, labels, source = await run_in_threadpool(_history, services, transaction)
    # Off the event loop: a busy merchant's labels take milliseconds to replay.
    replayed = await run_in_threadpool(replay, served.spec, served.info.seq_len, history,
                                       transaction, labels)
    x, mask = replayed.x, replayed.mask
    batch = await services.predictor.score(x, mask)
    probability, anomaly = float(batch.fraud_probability[0]), float(batch.anomaly_score[0])
    model_decision = batch.decision[0]
    ruled = await _apply_rules(services, served.spec.names, transaction, x[0, -1, :],
                               probability, anomaly, model_decision)
    decision = ruled.decision if ruled else model_decision
    services.metrics.decisions.labels(decision).inc()
    return ScoreResponse(
        transaction_id=transaction.transaction_id, decision=decision,
        fraud_probability=probability, anomaly_score=anomaly,
        reason_codes=list(batch.reason_codes[0]), model_version=batch.model_version,
        history_used=replayed.history_used, labels_applied=replayed.labels_applied,
        history_source=source, model_decision=model_decision,
        rules_fired=list(ruled.fired) if ruled else [],
        rule_set_version=ruled.version if ruled else None)


async def _apply_rules(services: Services, names: tuple[str, ...], transaction: Transaction,
                       features, probability: float, anomaly: float,
                       model_decision: str) -> RuleOutcome | None:
    """The rules' decision (None without a rule set), as the consumer takes it."""
    rules = services.rules
    if rules is None or not rules.enabled:
        return None
    source = await run_in_threadpool(rules.current, tuple(names))  # store I/O when due
    if source is None:
        return None
    outcome = source.engine.evaluate(transaction, features, probability, anomaly,
                                     model_decision)
    for rule in outcome.fired:
        services.metrics.rule_hits.labels(rule).inc()
    return outcome


def _history(services: Services, transaction: Transaction
             ) -> tuple[list[Transaction], list[TransactionLabel], str]:
    """The account's stored history and the labels its replay applies (two indexed queries:
    `serving.gateway.scoring`); none of either when the store cannot be read."""
    limit = services.settings.gateway.score_history_limit
    try:
        store = services.store.get()
        history = queries.account_history(store, transaction.account_id, transaction.timestamp,
                                          limit, exclude=transaction.transaction_id)
        labels = queries.scope_labels(store, label_scope(history, transaction))
        return history, labels, "store"
    except (StoreUnavailableError, SQLAlchemyError) as error:
        log.warning("scoring %s without history: %s", transaction.transaction_id, error)
        return [], [], "unavailable"
