"""Import of label times: a label-time column or a configured delay gives the imported labels
a label stream beside the transactions (issue 15)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from fraudops.cli import app
from fraudops.data.exceptions import MappingError, SourceError
from fraudops.data.importer import import_dataset
from fraudops.data.labels import labels_path, read_labels, to_labels
from fraudops.data.mapping import parse_mapping

BASE = {"columns": {"amount": "amt", "transaction_id": "tx", "account_id": "card",
                    "merchant_id": "shop"},
        "timestamp": {"column": "when"}}


def _source(tmp_path: Path) -> Path:
    source = pd.DataFrame({
        "tx": ["t1", "t2", "t3", "t4", "t5", "t6"],
        "card": ["c1", "c1", "c2", "c2", "c1", "c3"],
        "shop": ["s1", "s2", "s1", None, "s2", "s1"],
        "when": ["2024-03-01 10:00", "2024-03-01 11:30", "2024-03-02 09:00",
                 "2024-03-02 10:00", "2024-03-03 08:00", "2024-03-03 09:00"],
        "amt": [10.0, 25.5, 30.0, 4.0, 7.25, 1.0],
        "fraud": [0, 1, None, 1, 0, 1],
        "known": ["2024-04-01 00:00", "2024-03-15 12:00", None, "2024-03-01 00:00",
                  "garbage", "2024-03-20 00:00"],
    })
    path = tmp_path / "src.csv"
    source.to_csv(path, index=False)
    return path


def _label(**extra: object) -> dict:
    return BASE | {"label": {"column": "fraud", "required": False, **extra}}


def test_a_label_time_column(tmp_path: Path) -> None:
    mapping = parse_mapping(_label(time={"column": "known", "format": "%Y-%m-%d %H:%M"}))
    out = tmp_path / "transactions.parquet"
    report = import_dataset(_source(tmp_path), mapping, out, chunk_size=2)
    labels = read_labels(labels_path(out))
    assert report.label_stream == str(labels_path(out)) and report.labels_written == 3
    # t3 has no label; t4's label predates it; t5's label time is unreadable: skipped, counted
    assert report.labels_skipped == {"label time before the transaction": 1,
                                     "label time missing or unreadable": 1}
    assert list(labels["transaction_id"]) == ["t2", "t6", "t1"]  # in time order
    assert list(labels["label"]) == [1, 1, 0] and set(labels["source"]) == {"import"}
    assert labels["labelled_at"].iloc[0] == pd.Timestamp("2024-03-15 12:00", tz="UTC")
    assert (labels["account_id"].tolist(), labels["merchant_id"].tolist()) == (
        ["c1", "c3", "c1"], ["s2", "s1", "s1"])
    assert report.rows_written == 6  # a label without a usable time never drops its row
    assert len(list(to_labels(labels))) == 3  # every row is a valid TransactionLabel


def test_a_configured_delay(tmp_path: Path) -> None:
    out = tmp_path / "o.parquet"
    report = import_dataset(_source(tmp_path), parse_mapping(_label(delay="30 days")), out)
    labels = read_labels(labels_path(out)).set_index("transaction_id")
    transactions = pd.read_parquet(out).set_index("transaction_id")
    assert report.labels_written == 5 and not report.labels_skipped
    delay = labels["labelled_at"] - transactions.loc[labels.index, "timestamp"]
    assert (delay == pd.Timedelta(days=30)).all()


def test_without_a_label_time_no_stream_is_written(tmp_path: Path) -> None:
    out = tmp_path / "o.parquet"
    report = import_dataset(_source(tmp_path), parse_mapping(_label()), out)
    assert report.label_stream is None and not labels_path(out).exists()


@pytest.mark.parametrize(("extra", "message"), [
    ({"delay": "soon"}, "not a duration"),
    ({"delay": "-2 days"}, ">= 0"),
    ({"delay": "1 day", "time": {"column": "known"}}, "at most one"),
])
def test_bad_label_time_mappings(extra: dict, message: str) -> None:
    with pytest.raises(MappingError, match=message):
        parse_mapping(_label(**extra))


def test_a_missing_label_time_column_is_named(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="'reported'"):
        import_dataset(_source(tmp_path), parse_mapping(_label(time={"column": "reported"})),
                       tmp_path / "o.parquet")


def test_cli_reports_the_label_stream(tmp_path: Path) -> None:
    import yaml

    mapping = tmp_path / "m.yaml"
    mapping.write_text(yaml.safe_dump(_label(delay="72h")), encoding="utf-8")
    result = CliRunner().invoke(app, ["data", "import", str(_source(tmp_path)), "--mapping",
                                      str(mapping), "--out", str(tmp_path / "o.parquet"),
                                      "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "label stream" in result.output
    assert labels_path(tmp_path / "o.parquet").exists()
