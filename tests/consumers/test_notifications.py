"""Notification delivery against a real SMTP server (aiosmtpd) and a real local HTTP server."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller
from consumer_helpers import T0
from sqlalchemy.exc import OperationalError

from consumers.notifications import Dispatcher, NotificationPlanner, senders_for
from consumers.settings import NotifySection
from fraudops.store import BatchWrite, DecisionRecord, Store
from fraudops.testing import free_port, serve_http


class _Inbox:
    def __init__(self) -> None:
        self.messages: list = []
        self.reject = False

    async def handle_DATA(self, server, session, envelope):
        if self.reject:
            return "554 Transaction failed"
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[int, _Inbox]]:
    inbox = _Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller.port, inbox
    controller.stop()


class _Hook(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        server = self.server
        server.received.append((dict(self.headers), json.loads(body)))
        status = server.statuses.pop(0) if server.statuses else 200
        self.send_response(status)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[ThreadingHTTPServer]:
    with serve_http(_Hook) as server:
        server.received, server.statuses = [], []
        yield server


def alert(i: int, account: str = "acc-1", kind: str = "block") -> DecisionRecord:
    return DecisionRecord(transaction_id=f"tx-{i}", account_id=account,
                          event_time=T0 + timedelta(minutes=i), amount=999.0,
                          fraud_probability=0.97, anomaly_score=3.1, decision=kind,
                          transaction_json="{}", reason_codes="amount_log,account_gap_log")


def plan_and_store(store: Store, settings: NotifySection, decisions: list) -> None:
    rows = NotificationPlanner(settings, store).plan(decisions)
    store.write_batch(BatchWrite(decisions=decisions, notifications=rows))


@pytest.mark.integration
def test_email_and_webhook_delivered_once(store: Store, smtp, webhook) -> None:
    port, inbox = smtp
    settings = NotifySection(smtp_host="127.0.0.1", smtp_port=port, email_to=["ops@bank.test"],
                             webhook_url=f"http://127.0.0.1:{webhook.server_port}/hook",
                             rate_limit_count=5)
    decisions = [alert(1), alert(2, "acc-2", "review")]
    plan_and_store(store, settings, decisions)
    plan_and_store(store, settings, decisions)  # a replay: same outbox keys, nothing new
    dispatcher = Dispatcher(store, senders_for(settings))
    assert dispatcher.run_once() == (4, 4)
    assert dispatcher.run_once() == (0, 0)
    subjects = sorted(m["Subject"] for m in inbox.messages)
    assert subjects == ["[fraudops] BLOCK transaction tx-1 (account acc-1)",
                        "[fraudops] REVIEW transaction tx-2 (account acc-2)"]
    assert {m["Message-ID"] for m in inbox.messages} == {"<email.tx-1@fraudops>",
                                                         "<email.tx-2@fraudops>"}
    keys = sorted(headers["idempotency-key"] for headers, _ in webhook.received)
    assert keys == ["webhook:tx-1", "webhook:tx-2"]
    assert webhook.received[0][1]["fraud_probability"] == pytest.approx(0.97)
    assert {n.status for n in store.notifications()} == {"sent"}


@pytest.mark.integration
def test_rate_limit_per_account(store: Store, webhook) -> None:
    settings = NotifySection(webhook_url=f"http://127.0.0.1:{webhook.server_port}/hook",
                             rate_limit_count=2, rate_limit_window_s=600)
    plan_and_store(store, settings, [alert(i) for i in range(3)] + [alert(3, "acc-2")])
    plan_and_store(store, settings, [alert(4), alert(30)])  # tx-30 is past acc-1's window
    Dispatcher(store, senders_for(settings)).run_once()
    assert sorted(body["transaction_id"] for _, body in webhook.received) == \
        ["tx-0", "tx-1", "tx-3", "tx-30"]
    limited = sorted(n.transaction_id for n in store.notifications(status="rate_limited"))
    assert limited == ["tx-2", "tx-4"]


@pytest.mark.integration
def test_failed_delivery_is_retried_then_given_up(store: Store, webhook) -> None:
    settings = NotifySection(webhook_url=f"http://127.0.0.1:{webhook.server_port}/hook",
                             max_attempts=3)
    plan_and_store(store, settings, [alert(1), alert(2, "acc-2")])
    webhook.statuses = [500, 200]  # the first POST fails, the second succeeds
    dispatcher = Dispatcher(store, senders_for(settings), max_attempts=3)
    assert dispatcher.run_once() == (2, 1)
    failed_once, = store.notifications(status="pending")
    assert failed_once.attempts == 1 and "HTTP 500" in failed_once.last_error
    webhook.statuses = [503, 503]
    dispatcher.run_once()
    dispatcher.run_once()
    gave_up, = store.notifications(status="failed")
    assert gave_up.attempts == 3


def test_smtp_down_keeps_notification_pending(store: Store) -> None:
    settings = NotifySection(smtp_host="127.0.0.1", smtp_port=free_port(), email_to=["a@b.test"])
    plan_and_store(store, settings, [alert(1)])
    assert Dispatcher(store, senders_for(settings)).run_once() == (1, 0)
    pending, = store.notifications(status="pending")
    assert "SMTP" in pending.last_error


@pytest.mark.integration
def test_email_rejected_at_end_of_data_stays_pending(store: Store, smtp) -> None:
    port, inbox = smtp
    settings = NotifySection(smtp_host="127.0.0.1", smtp_port=port, email_to=["ops@bank.test"])
    plan_and_store(store, settings, [alert(1)])
    inbox.reject = True  # the server refuses at the end of DATA: not delivered, not marked
    dispatcher = Dispatcher(store, senders_for(settings))
    assert dispatcher.run_once() == (1, 0)
    pending, = store.notifications(status="pending")
    assert "554" in pending.last_error
    inbox.reject = False
    assert dispatcher.run_once() == (1, 1)
    body = inbox.messages[0].get_payload()
    assert json.loads(body)["transaction_id"] == "tx-1"


@pytest.mark.integration
def test_crash_after_the_server_accepted_repeats_the_email_with_its_message_id(
        store: Store, smtp, monkeypatch) -> None:
    """At-least-once: a consumer that dies between the server's 250 and the outbox's mark sends
    that email again on restart, once its claim's lease is over, under the same Message-ID (the
    receiver's idempotency key)."""
    port, inbox = smtp
    settings = NotifySection(smtp_host="127.0.0.1", smtp_port=port, email_to=["ops@bank.test"])
    plan_and_store(store, settings, [alert(1)])

    class Crash(BaseException):  # not an Exception: nothing in the dispatcher may swallow it
        pass

    def die(*args, **kwargs):
        raise Crash

    with monkeypatch.context() as patch:
        patch.setattr(store, "mark_notification", die)
        with pytest.raises(Crash):
            Dispatcher(store, senders_for(settings), lease_s=0.5).run_once()
    assert len(inbox.messages) == 1 and store.notifications(status="pending")
    restarted = Dispatcher(store, senders_for(settings))
    assert restarted.run_once() == (0, 0)  # the dead one's claim holds until its lease ends
    time.sleep(0.6)
    assert restarted.run_once() == (1, 1)
    assert [m["Message-ID"] for m in inbox.messages] == ["<email.tx-1@fraudops>"] * 2
    assert {n.status for n in store.notifications()} == {"sent"}


@pytest.mark.integration
def test_a_busy_database_after_delivery_is_waited_out_not_sent_again(
        store: Store, smtp, monkeypatch) -> None:
    """SQLite locked by the consumer's batch (it waits for the broker's acks) when the
    dispatcher marks a delivered email: the mark is retried, the email is not sent twice."""
    port, inbox = smtp
    settings = NotifySection(smtp_host="127.0.0.1", smtp_port=port, email_to=["ops@bank.test"])
    plan_and_store(store, settings, [alert(1)])
    real, calls = store.mark_notification, []

    def locked_twice(*args, **kwargs):
        calls.append(args)
        if len(calls) <= 2:
            raise OperationalError("UPDATE notifications ...", {}, Exception("database is locked"))
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "mark_notification", locked_twice)
    assert Dispatcher(store, senders_for(settings)).run_once() == (1, 1)
    assert len(calls) == 3 and len(inbox.messages) == 1
    assert {n.status for n in store.notifications()} == {"sent"}


@pytest.mark.integration
def test_two_dispatchers_racing_over_one_outbox_send_each_email_once(postgres_url, smtp) -> None:
    """Two consumers' dispatchers drain one outbox (PostgreSQL) at the same time: every email
    goes out exactly once, because each claims rows before sending them. (Reading the pending
    rows instead, both sent most of them: `test_consumers_join_and_leave` saw repeats.)"""
    port, inbox = smtp
    settings = NotifySection(smtp_host="127.0.0.1", smtp_port=port, email_to=["ops@bank.test"])
    plan_and_store(Store.from_url(postgres_url), settings,
                   [alert(i, account=f"acc-{i}") for i in range(60)])
    stores = [Store.from_url(postgres_url, create=False) for _ in range(2)]
    start, tried = threading.Barrier(2), []

    def drain(store: Store) -> None:
        dispatcher = Dispatcher(store, senders_for(settings))
        start.wait()
        while (done := dispatcher.run_once(limit=10))[0]:
            tried.append(done)

    threads = [threading.Thread(target=drain, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    ids = [message["Message-ID"] for message in inbox.messages]
    assert sorted(ids) == sorted(f"<email.tx-{i}@fraudops>" for i in range(60))
    assert sum(n for n, _ in tried) == 60
    assert {n.status for n in stores[0].notifications()} == {"sent"}
    for store in stores:
        store.close()
