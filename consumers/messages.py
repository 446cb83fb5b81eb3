"""Message formats in and out of the consumer: pure functions, no broker needed.

`parse_transaction` turns raw bytes into a validated `Transaction` or raises
`PoisonMessageError` with a short machine-readable reason (the dead-letter header).
`stored_decision_message` rebuilds, byte for byte, the decision record a stored decision was
published as (what a redelivered transaction gets again).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from pydantic import ValidationError

from consumers.exceptions import PoisonMessageError
from fraudops.features.online import STAGE_ENTITIES
from fraudops.features.policy import CONFLICTING_DUPLICATE, TOO_LATE
from fraudops.schema import Transaction, TransactionLabel
from fraudops.store import DecisionRecord

#: Dead-letter reasons (label values of `fraud_consumer_dead_letters_total`).
REASON_EMPTY = "empty"
REASON_OVERSIZED = "oversized"
REASON_INVALID_JSON = "invalid_json"
REASON_SCHEMA = "schema_violation"
REASON_ABSURD = "absurd_value"
#: More than the allowed lateness behind its account's latest event (the event-time policy).
REASON_TOO_LATE = TOO_LATE
#: A transaction id already decided (or in flight) with another content.
REASON_CONFLICTING = CONFLICTING_DUPLICATE
#: An unexpected exception while handling the message (a bug): its type is in `dlq.error`.
REASON_PROCESSING = "processing_error"
# Pydantic error types that mean "well-formed but impossible" (negative or huge amount, NaN,
# timestamps centuries away) rather than a malformed event.
_ABSURD_ERRORS = frozenset({"greater_than_equal", "less_than_equal", "greater_than", "less_than",
                            "finite_number"})
_DETAIL_CHARS = 500

#: Entity stages (`consumers.stages`): the header naming a label (without it: a transaction).
KIND_HEADER = "fraudops.kind"
LABEL_KIND = b"label"
FLOATS = np.dtype("<f8")


def feature_header(entity: str) -> str:
    """The header carrying an entity stage's features (float64, little-endian)."""
    return f"fraudops.{entity}"


def is_label(record: Incoming, labels_topic: str) -> bool:
    """A record of the labels topic, or a label re-keyed by the stages."""
    return record.topic == labels_topic or (KIND_HEADER, LABEL_KIND) in record.headers


def given_features(record: Incoming) -> dict[str, np.ndarray]:
    """The entity features the stages attached to `record`, by entity."""
    given = {}
    for name, value in record.headers:
        entity = name.removeprefix("fraudops.")
        if entity in STAGE_ENTITIES and name != entity:
            given[entity] = np.frombuffer(value, dtype=FLOATS)
    return given


@dataclass(frozen=True, slots=True)
class Incoming:
    """One consumed Kafka record, detached from the client library."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int = -1
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One record to produce."""

    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


def _check_size(value: bytes | None, max_bytes: int) -> bytes:
    if not value:
        raise PoisonMessageError(REASON_EMPTY, "message has no value")
    if len(value) > max_bytes:
        raise PoisonMessageError(REASON_OVERSIZED, f"{len(value)} bytes > limit of {max_bytes}")
    return value


def unexpected_error(error: Exception) -> PoisonMessageError:
    """The dead-letter error of a message whose handling raised `error` unexpectedly."""
    return PoisonMessageError(REASON_PROCESSING, str(error)[:_DETAIL_CHARS] or repr(error),
                              error_type=type(error).__name__)


def _poison_from(error: ValidationError) -> PoisonMessageError:
    kinds = {item["type"] for item in error.errors()}
    if kinds & {"json_invalid", "json_type"}:
        reason = REASON_INVALID_JSON
    elif kinds <= _ABSURD_ERRORS or _out_of_range_time(error):
        reason = REASON_ABSURD
    else:
        reason = REASON_SCHEMA
    detail = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}"
                       for e in error.errors(include_url=False))
    return PoisonMessageError(reason, detail[:_DETAIL_CHARS], error_type=type(error).__name__)


def _out_of_range_time(error: ValidationError) -> bool:
    return any(e["loc"] in (("timestamp",), ("labelled_at",)) and "outside" in e["msg"]
               for e in error.errors())


def parse_transaction(value: bytes | None, max_bytes: int) -> Transaction:
    """Validate one `transactions` message; raises `PoisonMessageError` if it cannot be used."""
    raw = _check_size(value, max_bytes)
    try:
        return Transaction.model_validate_json(raw)
    except ValidationError as error:
        raise _poison_from(error) from None


def parse_label(value: bytes | None, max_bytes: int) -> TransactionLabel:
    """Validate one `labels` message (a `TransactionLabel`); raises `PoisonMessageError`."""
    raw = _check_size(value, max_bytes)
    try:
        return TransactionLabel.model_validate_json(raw)
    except ValidationError as error:
        raise _poison_from(error) from None


def dead_letter(record: Incoming, error: PoisonMessageError, topic: str) -> Outgoing:
    """The dead-letter record: original key and bytes, the reason, the refusing exception's
    type and the origin in headers."""
    headers = [("dlq.reason", error.reason.encode()),
               ("dlq.detail", error.detail.encode("utf-8", "backslashreplace")),
               ("dlq.source", f"{record.topic}/{record.partition}/{record.offset}".encode()),
               ("dlq.time", datetime.now(UTC).isoformat().encode())]
    if error.error_type:
        headers.append(("dlq.error", error.error_type.encode("utf-8", "backslashreplace")))
    return Outgoing(topic, record.key, record.value or b"", tuple(headers))


def decision_message(decision: DecisionRecord, decided_at: str, reason_codes: Sequence[str],
                     topic: str, model_version_json: str) -> Outgoing:
    """The `fraud-decisions` / `fraud-alerts` record of one decision (keyed by account).

    Built by hand on the hot path: identifiers are restricted to JSON-safe characters by the
    schema (`Identifier`), reason codes are feature names, rule ids and rule-set versions by
    the rule-set schema (`fraudops.rules.schema`), and `decided_at` and `model_version_json`
    are formatted once per batch. With a rule set in force the record ends with
    ``"rules_fired": [ids...]`` and ``"rule_set_version"``.
    """
    codes = ",".join(f'"{code}"' for code in reason_codes)
    # The rule fields appear only when a rule set was in force: a decision taken without one
    # (or stored before rules existed) is published again with the bytes it had.
    rules = ""
    if decision.rule_set_version:
        fired = ",".join(f'"{rule}"' for rule in decision.rules_fired.split(",") if rule)
        rules = f',"rules_fired":[{fired}],"rule_set_version":"{decision.rule_set_version}"'

    # + 0.0 turns -0.0 into 0.0: SQLite stores no negative zero, and a decision published
    # again from the store must be the same bytes.
    value = (f'{{"transaction_id":"{decision.transaction_id}",'
             f'"account_id":"{decision.account_id}",'
             f'"event_time":"{decision.event_time.isoformat()}","decided_at":"{decided_at}",'
             f'"amount":{decision.amount + 0.0!r},"decision":"{decision.decision}",'
             f'"fraud_probability":{decision.fraud_probability + 0.0!r},'
             f'"anomaly_score":{decision.anomaly_score + 0.0!r},"reason_codes":[{codes}],'
             f'"model_version":{model_version_json}{rules}}}')
    return Outgoing(topic, decision.account_id.encode(), value.encode())


def stored_decision_message(decision: DecisionRecord, topic: str) -> Outgoing:
    """The `fraud-decisions` record a stored decision was published as, byte for byte: the
    store keeps its decision time (`scored_at`) and every field the record is built from."""
    codes = decision.reason_codes.split(",") if decision.reason_codes else ()
    return decision_message(decision, decision.scored_at.isoformat(), codes, topic,
                            json.dumps(decision.model_version))
