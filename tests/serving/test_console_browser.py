"""The analyst console in a real headless Chromium (Debian's package, driven by Playwright).

The whole path runs for real: a transaction posted to the gateway (a uvicorn process) goes
through the Apache Kafka broker to the consumer (in process, with a rule scorer standing in for
the model server), which stores the alert; the analyst logs in, finds it in the queue, opens it
and confirms fraud; the label is then read back from the `labels` topic and the store. Then
the analyst puts an account on a deny list; the running consumer (with a one-rule rule set)
picks the entry up and blocks the account's next payment, and the case shows the rule.

Never skips for a missing browser: CI installs chromium (tools/install_chromium.sh) and this
test fails loudly where it is missing. Playwright never downloads a browser here.
"""

from __future__ import annotations

import json
import shutil
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest
from serving_helpers import start_service, stop_process

from consumers.app import ConsumerApp, ModelContract
from consumers.settings import ConsumerSection, ConsumerSettings
from fraudops.features import build_spec
from fraudops.protocol import ScoreBatch
from fraudops.settings import DatabaseSettings, KafkaSettings, TopicSettings
from fraudops.store import Store
from fraudops.testing import free_port, read_records

pytestmark = pytest.mark.integration

ANALYST_KEY = "analyst-key-0123456789"
INGEST_KEY = "ingest-key-0123456789"
PRINCIPALS = f"ana:analyst:{ANALYST_KEY},payments:ingest:{INGEST_KEY}"
#: Headless flags for Debian's chromium as root in a container (see ENVIRONMENT.md).
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
#: A reason code that would run script if the page did not escape it (no comma: codes are
#: stored comma-separated; no quote: the decisions topic carries it in JSON).
HOSTILE_REASON = "<img src=x onerror=window.pwned=1><script>window.pwned=2</script>"
#: The consumer's rule set: one deny-list rule (its list is created when the set loads).
RULES_YAML = """
version: console-test.1
lists: {deny_accounts: account}
rules:
  - id: deny-listed-account
    owner: fraud-ops
    description: Accounts on the deny list are blocked whatever the model says.
    action: block
    when: {field: account_id, in_list: deny_accounts}
"""
SPEC = build_spec()
SEQ_LEN = 4
AMOUNT = SPEC.names.index("amount_log")
T0 = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)


def amount_rule(x: np.ndarray, mask: np.ndarray) -> ScoreBatch:
    """Stands in for the model server: the larger the scored amount, the riskier."""
    probability = 1.0 / (1.0 + np.exp(-(x[:, -1, AMOUNT].astype(np.float64) - 7.0)))
    decision = ["block" if p > 0.9 else "review" if p > 0.5 else "approve" for p in probability]
    return ScoreBatch(probability.astype(np.float32), np.zeros(len(decision), np.float32),
                      decision, [("amount_log", HOSTILE_REASON)] * len(decision),
                      model_version="rule/7")


@dataclass
class Platform:
    url: str
    store: Store
    topics: TopicSettings
    bootstrap: str


def _topics(broker) -> TopicSettings:
    suffix = uuid.uuid4().hex[:8]
    names = {field: broker.create_topic(f"console-{field}-{suffix}", 1)
             for field in ("transactions", "decisions", "alerts", "labels", "dead_letter")}
    return TopicSettings(**names)


def _consumer(broker, topics: TopicSettings, db_url: str,
              rules: Path) -> tuple[ConsumerApp, threading.Thread]:
    section = ConsumerSection(group_id=f"console-{uuid.uuid4().hex[:8]}", batch_size=200,
                              batch_max_wait_ms=20, metrics_port=0, snapshot_interval_s=0.5,
                              backoff_max_s=0.5, rules_path=str(rules), rules_refresh_s=0.5)
    settings = ConsumerSettings(kafka=KafkaSettings(bootstrap_servers=broker.bootstrap,
                                                    topics=topics),
                                database=DatabaseSettings(url=db_url), consumer=section)
    app = ConsumerApp(settings, score=amount_rule, model=ModelContract(SPEC, SEQ_LEN, "rule/7"))
    thread = threading.Thread(target=app.run, daemon=True)
    thread.start()
    return app, thread


@pytest.fixture(scope="module")
def platform(kafka_broker, tmp_path_factory) -> Iterator[Platform]:
    """Gateway (uvicorn process), consumer (thread) and SQLite store on the session's broker."""
    tmp = tmp_path_factory.mktemp("console")
    db_url = f"sqlite:///{tmp / 'store.db'}"
    store = Store.from_url(db_url)
    topics = _topics(kafka_broker)
    port = free_port()
    env = {"FRAUDOPS_HOME": str(tmp / "home"), "FRAUDOPS_GATEWAY__API_KEYS": PRINCIPALS,
           "FRAUDOPS_GATEWAY__PORT": str(port), "FRAUDOPS_DATABASE__URL": db_url,
           "FRAUDOPS_GATEWAY__CONSOLE_SESSION_SECRET": uuid.uuid4().hex * 2,
           "FRAUDOPS_KAFKA__BOOTSTRAP_SERVERS": kafka_broker.bootstrap,
           "FRAUDOPS_KAFKA__TOPICS__TRANSACTIONS": topics.transactions,
           "FRAUDOPS_KAFKA__TOPICS__LABELS": topics.labels}
    process = start_service(["gateway"], env, f"http://127.0.0.1:{port}/healthz",
                            tmp / "gateway.log")
    rules = tmp / "rules.yaml"
    rules.write_text(RULES_YAML)
    consumer, thread = _consumer(kafka_broker, topics, db_url, rules)
    try:
        yield Platform(f"http://127.0.0.1:{port}", store, topics, kafka_broker.bootstrap)
    finally:
        consumer.stop.set()
        thread.join(30)
        stop_process(process)
        store.close()


@pytest.fixture
def chromium():
    """A fresh headless Debian chromium (fails, never skips, where it is not installed)."""
    from playwright.sync_api import sync_playwright

    path = shutil.which("chromium")
    if path is None:
        pytest.fail("Debian's chromium is missing: run tools/install_chromium.sh (CI does)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def _post_transactions(url: str, account: str) -> str:
    """Three ordinary payments, then a large one; the large one's id."""
    amounts = [25.0, 40.0, 31.5, 48_000.0]
    with httpx.Client(base_url=url, headers={"X-API-Key": INGEST_KEY}, timeout=30) as client:
        for i, amount in enumerate(amounts):
            answer = client.post("/v1/transactions", json={
                "transaction_id": f"{account}-tx-{i}", "account_id": account,
                "timestamp": (T0 + timedelta(minutes=i)).isoformat(), "amount": amount,
                "merchant_id": f"m-{i}", "channel": "online", "country": "FR"})
            assert answer.status_code == 202, answer.text
    return f"{account}-tx-{len(amounts) - 1}"


def _wait_for_alert(store: Store, transaction_id: str, timeout: float = 60.0) -> None:
    deadline = datetime.now(UTC) + timedelta(seconds=timeout)
    while datetime.now(UTC) < deadline:
        if any(a.transaction_id == transaction_id for a in store.list_alerts(limit=100)):
            return
        threading.Event().wait(0.2)
    raise TimeoutError(f"no alert for {transaction_id} after {timeout}s")


def _labels(bootstrap: str, topic: str, transaction_id: str) -> list[dict]:
    records = read_records(bootstrap, topic, timeout=30, idle_s=3)
    return [json.loads(r.value) for r in records
            if json.loads(r.value)["transaction_id"] == transaction_id]


def test_an_alert_from_the_stream_is_worked_in_the_browser(platform: Platform, chromium) -> None:
    transaction_id = _post_transactions(platform.url, "acc-browser")
    _wait_for_alert(platform.store, transaction_id)
    page = chromium.new_page()
    page.goto(f"{platform.url}/console/queue")
    assert page.url.endswith("/console/login")  # no session yet
    page.fill("#api_key", ANALYST_KEY)
    page.click("button:has-text('Log in')")
    page.wait_for_url("**/console/queue")
    (cookie,) = page.context.cookies()
    assert (cookie["name"], cookie["httpOnly"], cookie["sameSite"], cookie["secure"]) == (
        "fraudops_console", True, "Strict", True)
    assert ANALYST_KEY not in cookie["value"] and page.evaluate("document.cookie") == ""
    row = page.locator(f"tr[data-transaction='{transaction_id}']")
    assert row.locator("td").nth(5).inner_text() == "block"
    assert HOSTILE_REASON in row.inner_text()  # shown as text

    row.get_by_role("link", name=transaction_id).click()
    page.wait_for_url(f"**/console/alerts/{transaction_id}")
    assert page.get_by_test_id("model-version").inner_text() == "rule/7"
    assert page.get_by_test_id("reasons").inner_text().split("\n") == ["amount_log",
                                                                      HOSTILE_REASON]
    assert page.evaluate("window.pwned") is None and page.locator("main img").count() == 0
    assert "No rule fired" in page.get_by_test_id("rules").inner_text()
    history = page.get_by_test_id("account-history").inner_text()
    assert all(f"acc-browser-tx-{i}" in history for i in range(3))

    page.fill("#note", "card holder confirmed the theft")
    page.click("button:has-text('Confirm fraud')")
    page.wait_for_url("**labelled=new")
    assert page.get_by_test_id("status").inner_text() == "confirmed_fraud"
    assert "by ana" in page.get_by_test_id("verdict").inner_text()

    (label,) = _labels(platform.bootstrap, platform.topics.labels, transaction_id)
    assert {k: label[k] for k in ("label", "source", "analyst", "note", "account_id")} == {
        "label": 1, "source": "analyst", "analyst": "ana",
        "note": "card holder confirmed the theft", "account_id": "acc-browser"}
    (entry,) = platform.store.label_history(transaction_id)
    assert (entry.label, entry.analyst, entry.published_at is not None) == (1, "ana", True)

    page.goto(f"{platform.url}/console/queue")  # worked: no longer in the open queue
    assert page.locator(f"tr[data-transaction='{transaction_id}']").count() == 0
    page.click("button:has-text('Log out')")
    page.wait_for_url("**/console/login")
    page.goto(f"{platform.url}/console/queue")
    assert page.url.endswith("/console/login")


def test_a_wrong_key_is_refused_on_the_page(platform: Platform, chromium) -> None:
    page = chromium.new_page()
    page.goto(f"{platform.url}/console/login")
    page.fill("#api_key", "not-a-key")
    page.click("button:has-text('Log in')")
    assert page.get_by_test_id("error").inner_text() == "Unknown API key."
    assert "not-a-key" not in page.content()


def test_a_deny_list_entry_added_in_the_browser_blocks_the_account(platform: Platform,
                                                                   chromium) -> None:
    """List management end to end: the running consumer picks the entry up without a restart,
    and the alert it raises shows the rule that fired."""
    page = chromium.new_page()
    page.goto(f"{platform.url}/console/login")
    page.fill("#api_key", ANALYST_KEY)
    page.click("button:has-text('Log in')")
    page.click("a:has-text('Lists')")
    page.click("a:has-text('deny_accounts')")
    page.fill("#values", "acc-stolen")
    page.fill("#entry-note", "card reported stolen")
    page.click("button:has-text('Add')")
    assert page.get_by_test_id("changed").inner_text() == "Added 1."
    assert "acc-stolen" in page.get_by_test_id("entries").inner_text()

    transaction_id = _small_payments_until_an_alert(platform, "acc-stolen")
    page.goto(f"{platform.url}/console/queue?rule=deny-listed-account")
    page.get_by_role("link", name=transaction_id).click()
    assert page.get_by_test_id("rules").inner_text() == "deny-listed-account"
    assert page.get_by_test_id("rule-set-version").inner_text() == "console-test.1"


def _small_payments_until_an_alert(platform: Platform, account: str,
                                   timeout: float = 40.0) -> str:
    """Post small payments for `account` (one a second) until the consumer raises an alert on
    one (it does once it has reloaded the list); that alert's transaction id."""
    deadline = datetime.now(UTC) + timedelta(seconds=timeout)
    with httpx.Client(base_url=platform.url, headers={"X-API-Key": INGEST_KEY},
                      timeout=30) as client:
        for i in range(int(timeout)):
            answer = client.post("/v1/transactions", json={
                "transaction_id": f"{account}-{i}", "account_id": account,
                "timestamp": (T0 + timedelta(hours=1, minutes=i)).isoformat(), "amount": 20.0})
            assert answer.status_code == 202, answer.text
            threading.Event().wait(1.0)
            alerts = platform.store.list_alerts(account_id=account, limit=10)
            if alerts:
                return alerts[0].transaction_id
            if datetime.now(UTC) > deadline:
                break
    raise TimeoutError(f"no alert for {account} within {timeout}s")
