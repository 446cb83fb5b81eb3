"""Helpers of the console tests: alerts in the store, a browser-like client, logging in."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from gateway_fakes import T0

from fraudops.store import BatchWrite, DecisionRecord, Store

VIEWER_KEY = "viewer-key-0123456789"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
XSS = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2">'


def alert_record(i: int, probability: float, decision: str = "review", amount: float = 100.0,
              account: str | None = None, **fields: object) -> DecisionRecord:
    reasons = str(fields.pop("reasons", "amount_log"))
    rules = {"rules_fired": str(fields.pop("rules", "")),
             "rule_set_version": str(fields.pop("rule_set", ""))}
    doc = {"transaction_id": f"al-{i}", "account_id": account or f"acc-{i % 5}",
           "timestamp": (T0 + timedelta(minutes=i)).isoformat(), "amount": amount,
           "merchant_id": "m-1", **fields}
    return DecisionRecord(doc["transaction_id"], doc["account_id"], T0 + timedelta(minutes=i),
                          amount, probability, 0.5, decision, json.dumps(doc),
                          reason_codes=reasons,
                          model_version="seq:3+ae:3", **rules)


def seed(tmp: Path, records: list[DecisionRecord], url: str | None = None) -> Store:
    """The records in the store at `url` (default: SQLite in `tmp`, where `build` looks)."""
    store = Store.from_url(url or f"sqlite:///{tmp / 'store.db'}")
    store.write_batch(BatchWrite(decisions=records))
    return store


def browser(app) -> TestClient:
    return TestClient(app, base_url="https://testserver", raise_server_exceptions=False,
                      client=("10.2.2.2", 50000))


def csrf_of(page: str) -> str:
    return CSRF.search(page).group(1)


def login(client: TestClient, key: str):
    token = csrf_of(client.get("/console/login").text)
    return client.post("/console/login", data={"api_key": key, "csrf_token": token},
                       follow_redirects=False)


def walk(client: TestClient, query: str) -> list[list[str]]:
    """The transaction ids of every page of the queue, following the "Next page" links."""
    pages, url = [], f"/console/queue?{query}"
    while url:
        page = client.get(url)
        assert page.status_code == 200, page.text
        pages.append(re.findall(r'<tr data-transaction="([^"]+)"', page.text))
        found = re.search(r'href="([^"]+)" rel="next"', page.text)
        url = found.group(1).replace("&amp;", "&") if found else None
    return pages
