"""The analyst console without a browser: sessions, CSRF, roles, escaping, the queue's pages.

The app runs in process (`gateway_fakes`): real routes, session cookies and SQLite store; only
Kafka and the predictor are stand-ins (the browser test uses the real broker). The client talks
HTTPS so that the Secure cookie is kept, as a browser would.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
from console_helpers import VIEWER_KEY, XSS, alert_record, browser, csrf_of, login, seed, walk
from gateway_fakes import ANALYST_KEY, INGEST_KEY, PRINCIPALS, T0, build

from fraudops.schema import ALERT_DECISIONS


def _gateway(tmp_path: Path, url: str | None = None):
    records = [alert_record(i, round(0.5 + (i * 37 % 50) / 100, 2),
                            "block" if i % 4 == 0 else "review", amount=10.0 * i)
               for i in range(1, 121)]
    store = seed(tmp_path, records, url)
    app, producer = build(tmp_path, url, api_keys=f"{PRINCIPALS},vic:viewer:{VIEWER_KEY}")
    return app, producer, store


@pytest.fixture
def gateway(tmp_path: Path):
    app, producer, store = _gateway(tmp_path)
    yield app, producer, store
    store.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def gateway_on(request, tmp_path: Path):
    """The gateway on SQLite and on PostgreSQL (the cluster's store; skips without a server)."""
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    app, producer, store = _gateway(tmp_path, url)
    yield app, producer, store
    store.close()


def test_login_sets_a_signed_strict_cookie_and_never_the_key(gateway) -> None:
    app, _, _ = gateway
    with browser(app) as client:
        assert client.get("/console/queue", follow_redirects=False).headers["location"] == \
            "/console/login"
        answer = login(client, ANALYST_KEY)
        cookie = answer.headers["set-cookie"]
        page = client.get("/console/queue")
    assert answer.status_code == 303 and answer.headers["location"] == "/console/queue"
    assert all(flag in cookie.lower() for flag in ("httponly", "samesite=strict", "secure"))
    assert ANALYST_KEY not in cookie and ANALYST_KEY not in page.text
    assert page.status_code == 200 and ">ana</strong>" in page.text
    assert page.headers["cache-control"] == "no-store"
    assert "script-src 'self'" in page.headers["content-security-policy"]


@pytest.mark.parametrize(("key", "status", "message"), [
    ("wrong-key-0123456789", 401, "Unknown API key."),
    (INGEST_KEY, 403, "payments may not use the console")])
def test_login_refuses_unknown_keys_and_roles_without_console_access(gateway, key, status,
                                                                     message) -> None:
    app, _, _ = gateway
    with browser(app) as client:
        answer = login(client, key)
        assert client.get("/console/queue", follow_redirects=False).status_code == 303
    assert answer.status_code == status and message in answer.text
    assert key not in answer.text


def test_failed_logins_are_rate_limited(tmp_path: Path) -> None:
    seed(tmp_path, [alert_record(1, 0.9)]).close()
    app, _ = build(tmp_path, auth_failure_limit="3/minute")
    with browser(app) as client:
        codes = [login(client, f"guess-{i}").status_code for i in range(4)]
        still = login(client, ANALYST_KEY)
    assert codes == [401, 401, 401, 429]
    assert still.status_code == 429  # even the right key waits: no oracle while blocked


def test_a_tampered_cookie_is_no_session(gateway) -> None:
    app, _, _ = gateway
    with browser(app) as client:
        login(client, ANALYST_KEY)
        value = client.cookies.get("fraudops_console")
        client.cookies.clear()
        client.cookies.set("fraudops_console", value[:-2] + ("A" if value[-2] != "A" else "B"),
                           domain="testserver", path="/console")
        assert client.get("/console/queue", follow_redirects=False).status_code == 303


def test_every_post_needs_the_sessions_csrf_token(gateway) -> None:
    app, producer, store = gateway
    with browser(app) as client, browser(app) as other:
        login(client, ANALYST_KEY)
        login(other, ANALYST_KEY)
        foreign = csrf_of(other.get("/console/alerts/al-1").text)
        answers = [client.post("/console/alerts/al-1/label", data=data)
                   for data in ({"verdict": "confirmed_fraud"},
                                {"verdict": "confirmed_fraud", "csrf_token": foreign})]
        logout = client.post("/console/logout", data={"csrf_token": "x"},
                             follow_redirects=False)
        no_login = browser(app).post("/console/login", data={"api_key": ANALYST_KEY})
    assert [a.status_code for a in answers] == [403, 403]
    assert "This form expired" in answers[0].text
    assert logout.status_code == 403 and no_login.status_code == 403
    assert store.label_history("al-1") == [] and producer.sent == []


def test_a_viewer_reads_but_cannot_label(gateway) -> None:
    app, producer, store = gateway
    with browser(app) as client:
        assert login(client, VIEWER_KEY).status_code == 303
        case = client.get("/console/alerts/al-1")
        refused = client.post("/console/alerts/al-1/label", data={
            "verdict": "legitimate", "csrf_token": csrf_of(case.text)})
    assert case.status_code == 200 and "Confirm fraud" not in case.text
    assert refused.status_code == 403 and "needs the analyst role" in refused.text
    assert store.label_history("al-1") == [] and producer.sent == []


def test_a_verdict_reaches_the_store_and_topic_once(gateway) -> None:
    app, producer, store = gateway
    with browser(app) as client:
        login(client, ANALYST_KEY)
        token = csrf_of(client.get("/console/alerts/al-7").text)
        pages = [client.post("/console/alerts/al-7/label", data={
            "verdict": "confirmed_fraud", "note": "card reported stolen", "csrf_token": token})
            for _ in range(2)]
        metrics = client.get("/metrics").text
    assert [p.status_code for p in pages] == [200, 200]
    assert "Verdict recorded (new)" in pages[0].text
    assert "Verdict recorded (unchanged)" in pages[1].text
    assert [(e.label, e.analyst, e.source) for e in store.label_history("al-7")] == \
        [(1, "ana", "analyst"), (1, "ana", "analyst")]
    assert store.get_alert("al-7").status == "confirmed_fraud"
    (sent,) = producer.sent
    assert json.loads(sent.value) | {"labelled_at": None} == {
        "transaction_id": "al-7", "label": 1, "labelled_at": None, "source": "analyst",
        "analyst": "ana", "note": "card reported stolen", "account_id": "acc-2",
        "merchant_id": "m-1", "device_id": None}
    assert 'fraud_analyst_alerts_worked_total{verdict="confirmed_fraud"} 1.0' in metrics
    assert 'fraud_analyst_alerts_worked_total{verdict="legitimate"} 0.0' in metrics
    assert "fraud_analyst_time_to_verdict_seconds_count 1.0" in metrics


@pytest.mark.parametrize(("data", "status", "message"), [
    ({"verdict": "maybe"}, 400, "The verdict must be"),
    ({"verdict": "legitimate", "note": "x" * 2001}, 400, "at most 2000"),
])
def test_bad_verdicts_are_refused_with_the_reason(gateway, data, status, message) -> None:
    app, producer, store = gateway
    with browser(app) as client:
        login(client, ANALYST_KEY)
        token = csrf_of(client.get("/console/alerts/al-3").text)
        answer = client.post("/console/alerts/al-3/label", data={**data, "csrf_token": token})
        missing = client.post("/console/alerts/nope/label", data={
            "verdict": "legitimate", "csrf_token": token})
    assert answer.status_code == status and message in answer.text
    assert missing.status_code == 404 and "no alert for transaction" in missing.text
    assert store.label_history("al-3") == [] and producer.sent == []


def test_everything_shown_is_escaped(tmp_path: Path) -> None:
    store = seed(tmp_path, [
        alert_record(1, 0.9, fraud_scenario=XSS[:64], reasons=f"amount_log,{XSS}"),
        alert_record(0, 0.1, decision="approve", account="acc-1", merchant_id=XSS[:64])])
    app, _ = build(tmp_path)
    with browser(app) as client:
        login(client, ANALYST_KEY)
        case = client.get("/console/alerts/al-1")
        client.post("/console/alerts/al-1/label", data={
            "verdict": "legitimate", "note": XSS, "csrf_token": csrf_of(case.text)})
        pages = [client.get("/console/queue?status=any").text,
                 client.get("/console/alerts/al-1").text]
    store.close()
    for page in pages:
        assert "<script>window" not in page and "<img src=x" not in page
    assert "&lt;script&gt;window.pwned=1&lt;/script&gt;" in pages[0]
    assert pages[1].count("&lt;img src=x onerror=") >= 2  # reasons, transaction, note


def test_pages_cover_the_queue_once_riskiest_first(gateway_on) -> None:
    app, _, store = gateway_on
    with browser(app) as client:
        login(client, ANALYST_KEY)
        pages = walk(client, "status=open")
    ids = [tx for page in pages for tx in page]
    assert [len(page) for page in pages] == [50, 50, 20]
    assert sorted(ids) == sorted(f"al-{i}" for i in range(1, 121))
    risks = [(store.get_alert(tx).fraud_probability, tx) for tx in ids]
    assert risks == sorted(risks, reverse=True)


def test_the_decision_filter_offers_the_alert_decisions(gateway_on) -> None:
    app, _, _ = gateway_on
    with browser(app) as client:
        login(client, ANALYST_KEY)
        page = client.get("/console/queue?decision=block").text
    select = page[page.index('<select name="decision">'):]
    select = select[:select.index("</select>")]
    assert re.findall(r'<option value="(\w*)"', select) == ["", *ALERT_DECISIONS]
    assert re.findall(r'<option value="(\w+)" selected', select) == ["block"]


def test_filters_narrow_the_queue(gateway_on) -> None:
    app, _, _ = gateway_on
    since, until = (T0 + timedelta(minutes=30)), (T0 + timedelta(minutes=60))
    query = (f"decision=block&min_amount=200&max_amount=900&since={since:%Y-%m-%dT%H:%M}"
             f"&until={until:%Y-%m-%dT%H:%M}")
    with browser(app) as client:
        login(client, ANALYST_KEY)
        (shown,) = walk(client, query)
        by_account = walk(client, "account_id=acc-3")
    expected = {f"al-{i}" for i in range(30, 60) if i % 4 == 0 and 200 <= 10 * i <= 900}
    assert set(shown) == expected and len(shown) == len(expected)
    assert {int(tx[3:]) % 5 for page in by_account for tx in page} == {3}


@pytest.mark.parametrize(("query", "message"), [
    ("decision=approve", "decision must be one of review, block"),
    ("min_amount=-1", "min_amount must be a number"),
    ("max_amount=nan", "max_amount must be a number"),
    ("since=yesterday", "since must be a date and time"),
    ("status=closed", "status must be one of"),
    ("account_id=%3Cb%3E", "account_id may hold"),
    ("rule=%3Cscript%3E", "rule must be a rule id"),
    ("after=0.5", "The page link is damaged"),
])
def test_bad_filters_get_400_with_the_field(gateway, query: str, message: str) -> None:
    app, _, _ = gateway
    with browser(app) as client:
        login(client, ANALYST_KEY)
        answer = client.get(f"/console/queue?{query}")
    assert answer.status_code == 400 and message in answer.text


def test_logout_ends_the_session(gateway) -> None:
    app, _, _ = gateway
    with browser(app) as client:
        login(client, ANALYST_KEY)
        token = csrf_of(client.get("/console/queue").text)
        out = client.post("/console/logout", data={"csrf_token": token}, follow_redirects=False)
        after = client.get("/console/queue", follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/console/login"
    assert after.status_code == 303 and after.headers["location"] == "/console/login"


def test_the_login_page_sends_a_logged_in_user_to_the_queue(gateway) -> None:
    app, _, _ = gateway
    with browser(app) as client:
        login(client, ANALYST_KEY)
        again = client.get("/console/login", follow_redirects=False)
    assert again.status_code == 303 and again.headers["location"] == "/console/queue"


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_rules_fired_are_shown_and_filter_the_queue(tmp_path: Path, request,
                                                    database: str) -> None:
    url = request.getfixturevalue("postgres_url") if database == "postgresql" else None
    fired = {1: "big_amount,deny_accounts", 2: "big_amount_night", 3: ""}
    store = seed(tmp_path, [alert_record(i, 0.9 - i / 10, rules=rules,
                                         rule_set="2026-12-06.1" if rules else "")
                            for i, rules in fired.items()], url)
    app, _ = build(tmp_path, url)
    with browser(app) as client:
        login(client, ANALYST_KEY)
        (big,) = walk(client, "rule=big_amount")
        (night,) = walk(client, "rule=big_amount_night")
        (none,) = walk(client, "rule=big")  # a prefix of an id is not the id
        case = client.get("/console/alerts/al-1").text
        plain = client.get("/console/alerts/al-3").text
    store.close()
    assert (big, night, none) == (["al-1"], ["al-2"], [])
    assert re.findall(r'data-testid="rules">\s*<li><a[^>]*>([^<]+)</a></li><li><a[^>]*>([^<]+)<',
                      case) == [("big_amount", "deny_accounts")]
    assert '<span data-testid="rule-set-version">2026-12-06.1</span>' in case
    assert "no rule set was in force" in plain
