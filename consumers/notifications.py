"""Alert notifications: planned with the decision (outbox), delivered by a background thread.

Planning is part of the batch's database transaction: each alert gets one outbox row per channel
keyed ``<channel>:<transaction id>`` (so a replay never adds a second one), or a `rate_limited`
row when the account already had `rate_limit_count` notifications within `rate_limit_window_s`
of event time (event time keeps the decision deterministic when a batch is redone).

Delivery (`Dispatcher`) claims pending rows after each commit (`Store.claim_notifications`: for
a lease, rows no other consumer's dispatcher holds), sends them and marks them `sent` once the
receiver has acknowledged them: at-least-once, with an idempotency key. Every consumer runs a
dispatcher over the same outbox; the claim keeps two of them from sending the same row (they
did, under load, when each read every pending row), and the rows of a consumer that died are
sent by another once its lease has run out. An email is
marked after the SMTP server's 250 to the end of DATA and carries the dedupe key as its
``Message-ID``; a webhook is marked after the 2xx answer and carries it as ``Idempotency-Key``.
A crash between the acknowledgement and the mark repeats that one message (after the lease) with
the same key, so
a receiver that keys on it (mail clients and archives thread or drop repeated Message-IDs) sees
it once; nothing is ever lost. (Marking before the final dot instead, as this module once did,
trades the repeat for a loss: the window between the mark's commit and the dot's write includes
a GIL hand-over and was hit by SIGKILLs in CI; for a fraud alert a repeat is the lesser harm.)
"""

from __future__ import annotations

import json
import logging
import os
import smtplib
import socket
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from email.message import EmailMessage
from typing import Protocol

import httpx
from sqlalchemy.exc import OperationalError
from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_exponential

from consumers.exceptions import NotificationError
from consumers.metrics import ConsumerMetrics
from consumers.settings import NotifySection
from fraudops.store import (
    DecisionRecord,
    Notification,
    NotificationRecord,
    NotificationStatus,
    Store,
)

log = logging.getLogger(__name__)
EMAIL = "email"
WEBHOOK = "webhook"


def alert_payload(decision: DecisionRecord) -> str:
    """The JSON body every channel carries (with the rules that fired and the rule-set
    version when a rule set was in force)."""
    doc = {
        "transaction_id": decision.transaction_id, "account_id": decision.account_id,
        "decision": decision.decision, "amount": decision.amount,
        "event_time": decision.event_time.isoformat(),
        "fraud_probability": round(decision.fraud_probability, 6),
        "anomaly_score": round(decision.anomaly_score, 6),
        "reason_codes": decision.reason_codes, "model_version": decision.model_version,
    }
    if decision.rule_set_version:
        doc |= {"rules_fired": [r for r in decision.rules_fired.split(",") if r],
                "rule_set_version": decision.rule_set_version}
    return json.dumps(doc, separators=(",", ":"))


class NotificationPlanner:
    """Turns a batch's alerts into outbox rows, de-duplicated and rate-limited per account."""

    def __init__(self, settings: NotifySection, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.channels = tuple(c for c, on in ((EMAIL, settings.email_enabled),
                                              (WEBHOOK, settings.webhook_enabled)) if on)
        self.window = timedelta(seconds=settings.rate_limit_window_s)

    def plan(self, decisions: Sequence[DecisionRecord]) -> list[NotificationRecord]:
        """Outbox rows for the decisions that notify (in event-time order per account)."""
        wanted = [d for d in decisions if d.decision in self.settings.decisions]
        if not wanted or not self.channels:
            return []
        history = self._history(wanted)
        rows = []
        for decision in sorted(wanted, key=lambda d: d.event_time):
            for channel in self.channels:
                rows.append(self._row(decision, channel, history[(decision.account_id, channel)]))
        return rows

    def _history(self, decisions: Sequence[DecisionRecord]) -> dict[tuple[str, str], list]:
        accounts = sorted({d.account_id for d in decisions})
        since = min(d.event_time for d in decisions) - self.window
        history: dict[tuple[str, str], list] = defaultdict(list)
        for row in self.store.notifications(account_ids=accounts, since=since):
            if row.status != NotificationStatus.RATE_LIMITED.value:
                history[(row.account_id, row.channel)].append((row.event_time, row.dedupe_key))
        return history

    def _row(self, decision: DecisionRecord, channel: str, history: list) -> NotificationRecord:
        key = f"{channel}:{decision.transaction_id}"
        start = decision.event_time - self.window
        recent = [k for t, k in history if start < t <= decision.event_time and k != key]
        limited = len(recent) >= self.settings.rate_limit_count
        if not limited:
            history.append((decision.event_time, key))
        status = NotificationStatus.RATE_LIMITED if limited else NotificationStatus.PENDING
        return NotificationRecord(dedupe_key=key, transaction_id=decision.transaction_id,
                                  account_id=decision.account_id, channel=channel,
                                  event_time=decision.event_time,
                                  payload=alert_payload(decision), status=status.value)


OnCommit = Callable[[], None]
#: How long a delivered message's `sent` mark is retried while the database is busy or away.
MARK_RETRY_S = 300.0


class Sender(Protocol):
    """A channel. `send` calls `on_commit` once the receiver acknowledged the message."""

    def send(self, notification: Notification, on_commit: OnCommit) -> None: ...

    def close(self) -> None: ...


class EmailSender:
    """Sends one email per alert over SMTP (STARTTLS and login when configured).

    The connection is kept open while the dispatcher drains the outbox and closed afterwards.
    """

    def __init__(self, settings: NotifySection) -> None:
        self.settings = settings
        self._smtp: smtplib.SMTP | None = None

    def send(self, notification: Notification, on_commit: OnCommit) -> None:
        message = self._message(notification)
        try:
            self._transmit(message, on_commit)
        except smtplib.SMTPServerDisconnected:
            self.close()  # the server dropped an idle connection: one fresh attempt
            self._send_fresh(message, on_commit)
        except (OSError, smtplib.SMTPException) as error:
            self.close()
            raise NotificationError(f"SMTP {self.settings.smtp_host}:{self.settings.smtp_port}: "
                                    f"{error!r}") from error

    def _send_fresh(self, message: EmailMessage, on_commit: OnCommit) -> None:
        try:
            self._transmit(message, on_commit)
        except (OSError, smtplib.SMTPException) as error:
            self.close()
            raise NotificationError(f"SMTP {self.settings.smtp_host}:{self.settings.smtp_port}: "
                                    f"{error!r}") from error

    def _transmit(self, message: EmailMessage, on_commit: OnCommit) -> None:
        self._connection().send_message(message)
        on_commit()  # the server answered 250 to the end of DATA: the message is its now

    def _connection(self) -> smtplib.SMTP:
        if self._smtp is None:
            s = self.settings
            smtp = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.timeout_s)
            if s.smtp_starttls:
                smtp.starttls()
            if s.smtp_username and s.smtp_password is not None:
                smtp.login(s.smtp_username, s.smtp_password.get_secret_value())
            self._smtp = smtp
        return self._smtp

    def _message(self, notification: Notification) -> EmailMessage:
        s = self.settings
        doc = json.loads(notification.payload)
        message = EmailMessage()
        message["Subject"] = (f"[fraudops] {doc['decision'].upper()} transaction "
                              f"{doc['transaction_id']} (account {doc['account_id']})")
        message["From"] = s.email_from
        message["To"] = ", ".join(s.email_to)
        message["Message-ID"] = f"<{notification.dedupe_key.replace(':', '.')}@fraudops>"
        message.set_content(json.dumps(doc, indent=2))
        return message

    def close(self) -> None:
        """Close the SMTP connection (if any)."""
        if self._smtp is not None:
            try:
                self._smtp.quit()
            except (OSError, smtplib.SMTPException):
                pass
            self._smtp = None


class WebhookSender:
    """POSTs the alert JSON; ``Idempotency-Key`` lets the receiver drop a repeat."""

    def __init__(self, settings: NotifySection, transport: httpx.BaseTransport | None = None):
        headers = {"content-type": "application/json"}
        if settings.webhook_token is not None:
            headers["authorization"] = f"Bearer {settings.webhook_token.get_secret_value()}"
        self.url = settings.webhook_url
        self._http = httpx.Client(timeout=settings.timeout_s, headers=headers, transport=transport)

    def send(self, notification: Notification, on_commit: OnCommit) -> None:
        try:
            response = self._http.post(self.url, content=notification.payload,
                                       headers={"idempotency-key": notification.dedupe_key})
        except httpx.HTTPError as error:
            raise NotificationError(f"webhook {self.url}: {error!r}") from error
        if response.status_code >= 300:
            raise NotificationError(f"webhook {self.url}: HTTP {response.status_code}")
        on_commit()

    def close(self) -> None:
        self._http.close()


def senders_for(settings: NotifySection) -> dict[str, Sender]:
    """The enabled channels' senders."""
    senders: dict[str, Sender] = {}
    if settings.email_enabled:
        senders[EMAIL] = EmailSender(settings)
    if settings.webhook_enabled:
        senders[WEBHOOK] = WebhookSender(settings)
    return senders


#: How long a dispatcher holds the rows it claimed. Rows of a dispatcher that died wait this
#: long; rows a live one has not started sending by half of it are given back. (A delivered
#: row whose `sent` mark waits longer than the lease for a locked database, `MARK_RETRY_S`, may
#: be sent again by another consumer, under the same idempotency key.)
CLAIM_LEASE_S = 30.0


class Dispatcher:
    """Delivers pending outbox rows; `run_once` for tests, `start`/`stop` for the consumer.

    `owner` names this dispatcher's claims (default: host, process id and a random suffix, so
    a restarted consumer waits for the claims of the process it replaces to expire)."""

    def __init__(self, store: Store, senders: dict[str, Sender], *, max_attempts: int = 5,
                 metrics: ConsumerMetrics | None = None, idle_s: float = 1.0,
                 lease_s: float = CLAIM_LEASE_S, owner: str | None = None) -> None:
        self.store = store
        self.senders = senders
        self.max_attempts = max_attempts
        self.metrics = metrics
        self.idle_s = idle_s
        self.lease_s = lease_s
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self, limit: int = 100) -> tuple[int, int]:
        """Claim up to `limit` pending notifications of the enabled channels and try them;
        returns (tried, delivered). Rows not started by half the lease are given back, so no
        row is sent after its claim may have passed to another dispatcher."""
        if not self.senders:  # no channel enabled: nothing to claim (and no write to lock)
            return 0, 0
        claimed = self.store.claim_notifications(
            self.owner, lease=timedelta(seconds=self.lease_s), limit=limit,
            channels=list(self.senders))
        deadline = time.monotonic() + self.lease_s / 2
        delivered = 0
        for tried, row in enumerate(claimed):
            if time.monotonic() > deadline:
                self.store.release_notifications(
                    self.owner, [left.dedupe_key for left in claimed[tried:]])
                return tried, delivered
            delivered += self._deliver(row)
        return len(claimed), delivered

    def _deliver(self, row: Notification) -> bool:
        sender = self.senders.get(row.channel)
        if sender is None:  # not claimed (`channels`); a caller's own row: give it back
            self.store.release_notifications(self.owner, [row.dedupe_key])
            return False
        committed = False

        def commit() -> None:
            nonlocal committed
            self._mark_sent(row.dedupe_key)
            committed = True

        try:
            sender.send(row, commit)
        except NotificationError as error:
            final = row.attempts + 1 >= self.max_attempts
            status = NotificationStatus.FAILED if final else NotificationStatus.PENDING
            self.store.mark_notification(row.dedupe_key, status, str(error)[:1000])
            self._count(row.channel, "failed" if final else "retry")
            log.warning("notification %s not delivered: %s", row.dedupe_key, error)
            return False
        if not committed:
            commit()
        self._count(row.channel, "sent")
        return True

    # Delivered: only the mark is left. A busy database (SQLite locked while the consumer's
    # batch waits for the broker's acks) is waited out; giving up would send the message again.
    @retry(retry=retry_if_exception_type(OperationalError), reraise=True,
           wait=wait_exponential(multiplier=0.05, max=2.0), stop=stop_after_delay(MARK_RETRY_S))
    def _mark_sent(self, dedupe_key: str) -> None:
        self.store.mark_notification(dedupe_key, NotificationStatus.SENT)

    def _count(self, channel: str, status: str) -> None:
        if self.metrics is not None:
            self.metrics.notifications.labels(channel=channel, status=status).inc()

    def wake(self) -> None:
        """Ask the thread to look at the outbox now (after a commit that added rows)."""
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="notify", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Deliver what is pending, then stop the thread."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _drain(self, page: int = 100) -> None:
        # Go on while full pages get delivered; a failing channel waits for the next wake-up
        # (at least `idle_s`) instead of burning its attempts in a tight loop.
        try:
            while True:
                tried, delivered = self.run_once(limit=page)
                if tried < page or delivered == 0:
                    return
        finally:
            for sender in self.senders.values():
                sender.close()

    def _loop(self) -> None:
        while True:
            self._wake.wait(self.idle_s)
            self._wake.clear()
            try:
                self._drain()
            except Exception:  # the outbox is retried later; never kill the thread
                log.exception("notification dispatch failed")
            if self._stop.is_set():
                return


def count_by_status(rows: Iterable[NotificationRecord]) -> dict[str, int]:
    """How many rows of each status (for metrics)."""
    counts: dict[str, int] = defaultdict(int)
    for row in rows:
        counts[row.status] += 1
    return dict(counts)
