"""Issue 20, findings 1-3: limits before parsing, small 4xx errors, no 5xx for any input.

The app runs in process (`gateway_fakes`): real routes, guard and SQLite store; only Kafka and
the predictor are stand-ins. The real process is probed in `test_gateway_probe.py`, and
schemathesis runs against it in `test_gateway.py`.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from gateway_fakes import (
    ANALYST_KEY,
    INGEST_KEY,
    build,
    call_asgi,
    client,
    seed_alerts,
    transaction,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

JSON = {"content-type": "application/json"}


@pytest.fixture
def gateway(tmp_path: Path):
    seed_alerts(f"sqlite:///{tmp_path / 'store.db'}", "al-1")
    return build(tmp_path)


def _receive_counting(chunks: list[bytes], delay_s: float = 0.0):
    """A `receive` handing out `chunks` (more_body until the last); counts the calls."""
    calls = {"n": 0}

    async def receive() -> dict:
        calls["n"] += 1
        if delay_s:
            await asyncio.sleep(delay_s)
        index = calls["n"] - 1
        if index >= len(chunks):
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": chunks[index],
                "more_body": index < len(chunks) - 1}

    return receive, calls


def test_unauthenticated_body_is_never_read(gateway) -> None:
    """Before: FastAPI read and parsed the whole body, then checked the key."""
    app, _ = gateway
    receive, calls = _receive_counting([b"x" * 16384] * 1000)
    status, headers, body = asyncio.run(call_asgi(
        app, "POST", "/v1/transactions", {"content-type": "application/json"}, receive))
    assert status == 401 and calls["n"] == 0
    assert headers["www-authenticate"] == "X-API-Key" and len(body) < 100


def test_malformed_json_without_a_key_is_401_not_422(gateway) -> None:
    app, _ = gateway
    with client(app) as anonymous:
        response = anonymous.post("/v1/transactions", content=b"{bad", headers=JSON)
    assert response.status_code == 401


def test_declared_oversized_body_is_413_unread(gateway) -> None:
    app, _ = gateway
    receive, calls = _receive_counting([b"x" * 16384] * 1000)
    status, _, body = asyncio.run(call_asgi(
        app, "POST", "/v1/transactions",
        {"content-type": "application/json", "content-length": str(21 * 2**20),
         "x-api-key": INGEST_KEY}, receive))
    assert status == 413 and calls["n"] == 0 and len(body) < 100


def test_chunked_body_is_counted_as_it_streams(gateway) -> None:
    """No Content-Length: the guard stops reading once the limit (64 KiB) is passed."""
    app, _ = gateway
    receive, calls = _receive_counting([b"x" * 16384] * 1000)
    status, _, _ = asyncio.run(call_asgi(
        app, "POST", "/v1/transactions",
        {"content-type": "application/json", "transfer-encoding": "chunked",
         "x-api-key": INGEST_KEY}, receive))
    assert status == 413 and calls["n"] == 5  # 5 x 16 KiB > 64 KiB: nothing further read


def test_body_limit_is_configurable(tmp_path: Path) -> None:
    app, _ = build(tmp_path, max_body_bytes=2048)
    body = transaction("tx-1").model_dump_json().encode()
    with client(app, INGEST_KEY) as ingest:
        small = ingest.post("/v1/transactions", content=body, headers=JSON)
        large = ingest.post("/v1/transactions", content=body + b" " * 2048, headers=JSON)
    assert small.status_code == 202 and large.status_code == 413


def test_slow_body_gets_408(tmp_path: Path) -> None:
    app, _ = build(tmp_path, body_timeout_s=0.2)
    receive, _ = _receive_counting([b"{"] * 100, delay_s=0.05)
    status, _, _ = asyncio.run(call_asgi(
        app, "POST", "/v1/transactions",
        {"content-type": "application/json", "x-api-key": INGEST_KEY}, receive))
    assert status == 408


def test_slow_handler_gets_504_in_time(tmp_path: Path) -> None:
    app, _ = build(tmp_path, request_timeout_s=0.3)
    predictor = app.state.services.predictor
    original = predictor.score

    async def slow_score(x, mask):
        await asyncio.sleep(5)
        return await original(x, mask)

    predictor.score = slow_score
    with client(app, INGEST_KEY) as ingest:
        response = ingest.post("/v1/score", content=transaction("tx-1").model_dump_json(),
                               headers=JSON)
    assert response.status_code == 504
    assert response.elapsed.total_seconds() < 3


def test_validation_errors_never_echo_large_inputs(gateway) -> None:
    """Before: a 21 MB body came back as a 37 MB 422 (every input echoed)."""
    app, _ = gateway
    big = "A" * 30_000  # two of them: just under the 64 KiB body limit
    with client(app, ANALYST_KEY) as analyst:
        response = analyst.post("/v1/feedback", json={"transaction_id": big, "verdict": big})
    assert response.status_code == 422
    assert len(response.content) < 2000 and big[:100] not in response.text
    assert {tuple(e["loc"]) for e in response.json()["detail"]} == {
        ("body", "transaction_id"), ("body", "verdict")}


def test_a_large_array_to_score_gets_a_small_422(gateway) -> None:
    """Before: an array to /v1/score was validated item by item and every item echoed back."""
    app, _ = gateway
    body = json.dumps([{"amount": i} for i in range(3500)]).encode()  # 62 KB: under the limit
    with client(app, INGEST_KEY) as ingest:
        response = ingest.post("/v1/score", content=body, headers=JSON)
    assert response.status_code == 422 and len(response.content) < 2000


def test_many_errors_are_capped(gateway) -> None:
    app, _ = gateway
    payload = {"transaction_id": "t", "account_id": "a", "timestamp": "2026-01-01T00:00:00Z",
               "amount": 1.0, "extra": {f"f{i}": "x" for i in range(400)}}
    with client(app, INGEST_KEY) as ingest:
        response = ingest.post("/v1/transactions", json=payload)
    assert response.status_code == 422 and len(response.json()["detail"]) <= 21
    assert len(response.content) < 8000


NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e999", "-1e400"]


@pytest.mark.parametrize("number", NON_FINITE)
@pytest.mark.parametrize(("path", "key", "template"), [
    ("/v1/feedback", ANALYST_KEY,
     '{"transaction_id": "al-1", "verdict": "legitimate", "note": %s}'),
    ("/v1/score", INGEST_KEY, ('{"transaction_id": "t", "account_id": "a", '
                               '"timestamp": "2026-01-01T00:00:00Z", "amount": %s}')),
    ("/v1/transactions", INGEST_KEY, ('{"transaction_id": "t", "account_id": "a", '
                                      '"timestamp": "2026-01-01T00:00:00Z", "amount": 1, '
                                      '"extra": {"x": %s}}')),
])
def test_non_finite_numbers_are_422(gateway, path: str, key: str, template: str,
                                    number: str) -> None:
    """Before: HTTP 500 (the 422 that echoed NaN could not be encoded)."""
    app, producer = gateway
    with client(app, key) as caller:
        response = caller.post(path, content=(template % number).encode(), headers=JSON)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["type"] == "json_invalid"
    assert producer.sent == []


@pytest.mark.parametrize("raw", [
    b'{"transaction_id": "t\\ud800", "verdict": "legitimate"}',  # lone high surrogate
    b'{"transaction_id": "al-1", "verdict": "legitimate", "note": "x\\udfff"}',
    b'{"transaction_id": "al-1", "verdict": "legitimate", "note": "\xff\xfe"}',  # bad UTF-8
    b'{"transaction_id": "al-1", "\\ud800": 1}',  # in a key
    b"[" * 30_000 + b"]" * 30_000,  # nesting beyond the parser's recursion limit
    b'{"transaction_id": "al-1", "verdict": "legitimate", "note": ' + b"9" * 5000 + b"}",
])
def test_invalid_unicode_and_absurd_json_are_422(gateway, raw: bytes) -> None:
    app, producer = gateway
    with client(app, ANALYST_KEY) as analyst:
        response = analyst.post("/v1/feedback", content=raw, headers=JSON)
    assert response.status_code == 422, response.text
    assert len(response.content) < 1000 and producer.sent == []


def test_surrogate_pairs_are_valid_text(gateway) -> None:
    app, producer = gateway
    with client(app, ANALYST_KEY) as analyst:
        response = analyst.post("/v1/feedback", content=(
            b'{"transaction_id": "al-1", "verdict": "legitimate", "note": "ok \\ud83d\\ude00"}'),
            headers=JSON)
    assert response.status_code == 200, response.text
    assert json.loads(producer.sent[0].value)["note"] == "ok \U0001f600"


# -- no 5xx for any input (property-based) ----------------------------------------------------

_NASTY_STRINGS = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["t\ud800", "\udfff", "\x00", "al-1", "a" * 200, "../../etc", "NaN"]))
_NUMBERS = st.one_of(st.integers(), st.floats(allow_nan=True, allow_infinity=True),
                     st.integers(min_value=10**30, max_value=10**40))
_LEAVES = st.one_of(st.none(), st.booleans(), _NUMBERS, _NASTY_STRINGS)
_VALUES = st.recursive(_LEAVES, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(_NASTY_STRINGS, inner, max_size=4)),
    max_leaves=12)
_TX_FIELDS = ["transaction_id", "account_id", "timestamp", "amount", "currency", "merchant_id",
              "merchant_category", "channel", "country", "device_id", "label", "extra"]
_FEEDBACK_FIELDS = ["transaction_id", "verdict", "note"]


def _body(fields: list[str]):
    """Dicts over the route's own field names (so validation goes deep), with any values."""
    keys = st.one_of(st.sampled_from(fields), _NASTY_STRINGS)
    return st.dictionaries(keys, _VALUES, max_size=len(fields) + 2)


def _encode(value: object) -> bytes:
    # json.dumps writes NaN/Infinity and lone surrogates as the attacker would send them
    return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")


@pytest.fixture(scope="module")
def shared_gateway(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gateway")
    seed_alerts(f"sqlite:///{tmp / 'store.db'}", "al-1")
    app, _ = build(tmp)
    with client(app, INGEST_KEY) as ingest, client(app, ANALYST_KEY) as analyst:
        yield ingest, analyst


ROUTES = [("/v1/transactions", "ingest", _TX_FIELDS), ("/v1/score", "ingest", _TX_FIELDS),
          ("/v1/feedback", "analyst", _FEEDBACK_FIELDS)]
_CONTENT_TYPES = st.sampled_from(["application/json", "application/json; charset=latin-1",
                                  "text/plain", "application/x-www-form-urlencoded", None])


@pytest.mark.parametrize(("path", "who", "fields"), ROUTES)
@settings(max_examples=120, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_no_input_gives_a_server_error(shared_gateway, path: str, who: str, fields: list[str],
                                       data: st.DataObject) -> None:
    """Bodies over the route's fields with NaN, infinities, huge integers, lone surrogates and
    raw bytes, under several content types. Before: NaN, Infinity and lone surrogates gave 500."""
    ingest, analyst = shared_gateway
    caller = ingest if who == "ingest" else analyst
    raw = data.draw(st.one_of(_body(fields).map(_encode), _VALUES.map(_encode),
                              st.binary(max_size=200)), label="body")
    content_type = data.draw(_CONTENT_TYPES, label="content type")
    headers = {"content-type": content_type} if content_type else {}
    response = caller.post(path, content=raw, headers=headers)
    assert response.status_code < 500, (raw[:300], response.text[:300])
    assert len(response.content) < 10_000


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=st.dictionaries(st.sampled_from(["since", "until", "account_id", "decision",
                                              "status", "limit", "offset", "format"]),
                             _NASTY_STRINGS.map(lambda s: s.encode("utf-8", "surrogatepass")
                                                .decode("utf-8", "replace")), max_size=4),
       path=st.sampled_from(["/v1/alerts", "/v1/alerts/al-1", "/v1/drift/reports",
                             "/v1/drift/reports/r1"]))
def test_no_query_gives_a_server_error(shared_gateway, query: dict, path: str) -> None:
    _, analyst = shared_gateway
    response = analyst.get(path, params=query)
    assert response.status_code < 500, (query, response.text[:300])
