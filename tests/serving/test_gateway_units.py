"""Gateway building blocks without services: report directory, score history replay, settings."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from fraudops.features import OnlineFeatureState, build_spec
from fraudops.schema import Transaction
from serving.exceptions import ConfigurationError, ReportNotFoundError
from serving.gateway.principals import Principals, Role
from serving.gateway.reports import DriftReports
from serving.gateway.scoring import build_sequence
from serving.settings import GatewayServiceSettings, GatewaySettings, parse_alias_uri

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _tx(tx_id: str, account: str, minutes: int) -> Transaction:
    return Transaction(transaction_id=tx_id, account_id=account, amount=10.0 + minutes,
                       timestamp=T0 + timedelta(minutes=minutes))


def test_build_sequence_replays_only_earlier_events_of_the_account() -> None:
    spec = build_spec()
    history = [_tx("a1", "A", 0), _tx("b1", "B", 1), _tx("a2", "A", 2), _tx("a9", "A", 90)]
    x, mask, used = build_sequence(spec, 4, history, _tx("a3", "A", 3))
    state = OnlineFeatureState(spec, 4)
    state.update(history[0])
    state.update(history[2])
    _, expected, expected_mask = state.update(_tx("a3", "A", 3))
    assert used == 2 and x.shape == (1, 4, spec.dim)
    np.testing.assert_array_equal(x[0], expected)
    np.testing.assert_array_equal(mask[0], expected_mask)
    assert mask[0].tolist() == [False, True, True, True]


def _report(root: Path, report_id: str, doc: dict | None, html: bool = True) -> None:
    path = root / report_id
    path.mkdir(parents=True)
    if html:
        (path / "report.html").write_text("<html></html>")
    if doc is not None:
        (path / "report.json").write_text(json.dumps(doc))


def test_reports_listed_newest_first_with_optional_fields(tmp_path: Path) -> None:
    _report(tmp_path, "old", {"created_at": "2026-01-01T00:00:00Z", "dataset_drift": False})
    _report(tmp_path, "new", {"created_at": "2026-02-01T00:00:00+00:00", "drift_share": 0.4,
                              "drifted_columns": ["amount_log"], "dataset_drift": "yes"})
    _report(tmp_path, "no-json", None)
    os.utime(tmp_path / "no-json", (0, 0))  # falls back to the directory's mtime: 1970
    (tmp_path / "empty").mkdir()
    (tmp_path / "decisions.jsonl").write_text("{}")
    reports = DriftReports(tmp_path).list()
    assert [r.report_id for r in reports] == ["new", "old", "no-json"]
    assert reports[0].drift_share == 0.4 and reports[0].dataset_drift is None  # not a bool
    assert reports[1].dataset_drift is False and reports[2].created_at.year == 1970


def test_reports_refuse_unknown_and_escaping_ids(tmp_path: Path) -> None:
    _report(tmp_path / "reports", "r1", {"x": 1}, html=False)
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "report.html").write_text("secret")
    reports = DriftReports(tmp_path / "reports")
    assert reports.document("r1") == {"x": 1}
    for bad in ("../secret", "..", "", "r2", "/etc"):
        with pytest.raises(ReportNotFoundError):
            reports.html(bad)
    with pytest.raises(ReportNotFoundError, match="no HTML"):
        reports.html("r1")
    assert DriftReports(tmp_path / "missing").list() == []


def test_gateway_settings_parse_principals_and_origins() -> None:
    settings = GatewaySettings(api_keys=" k1, ,ana:analyst+admin:k2 ",
                               cors_origins="https://a.example, ")
    principals = Principals.parse(settings.api_keys.get_secret_value(), settings.bare_key_roles)
    bare, ana = principals.match(b"k1"), principals.match(b"k2")
    assert (bare.name, bare.roles) == ("key-1", {Role.INGEST, Role.ANALYST})
    assert (ana.name, ana.roles) == ("ana", {Role.ANALYST, Role.ADMIN})
    assert principals.match(b"k") is None and principals.match(b"") is None
    assert settings.cors_origins == ["https://a.example"]
    assert "k1" not in repr(settings)  # a SecretStr never prints


def test_gateway_list_settings_come_comma_separated_from_the_environment(monkeypatch) -> None:
    """Before: a list setting (FRAUDOPS_GATEWAY__CORS_ORIGINS=...) failed to parse as JSON."""
    monkeypatch.setenv("FRAUDOPS_GATEWAY__CORS_ORIGINS", "https://a.example,https://b.example")
    monkeypatch.setenv("FRAUDOPS_GATEWAY__ALLOWED_HOSTS", "gateway.example, *.svc")
    gateway = GatewayServiceSettings().gateway
    assert gateway.cors_origins == ["https://a.example", "https://b.example"]
    assert gateway.allowed_hosts == ["gateway.example", "*.svc"]


@pytest.mark.parametrize(("raw", "problem"), [
    ("", "no API key"), ("ana:reader:k1", "roles must be among"), ("ana::k1", "has no role"),
    ("ana:analyst:k1,bo:analyst:k1", "repeats"), ("ana:analyst:k1,ana:ingest:k2", "repeats"),
    ("a b:analyst:k1", "must match"), ("ana:analyst: ", "empty key"),
])
def test_principals_refuse_configurations_that_cannot_work(raw: str, problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem):
        Principals.parse(raw, ["ingest"])


@pytest.mark.parametrize(("uri", "expected"), [
    ("models:/fraud-lstm-cnn@champion", ("fraud-lstm-cnn", "champion")),
    ("models:/fraud-lstm-cnn/3", None), ("/mnt/models/sequence", None), ("runs:/abc/m", None),
])
def test_parse_alias_uri(uri: str, expected: tuple[str, str] | None) -> None:
    assert parse_alias_uri(uri) == expected
