"""Import of a user's CSV/Parquet through a column mapping (fraudops.data.importer)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from fraudops.cli import app
from fraudops.data import tabular
from fraudops.data.exceptions import MappingError, SourceError
from fraudops.data.importer import import_dataset
from fraudops.data.mapping import load_mapping, parse_mapping
from fraudops.schema import MAX_AMOUNT

REPO_ROOT = Path(__file__).resolve().parents[2]
KAGGLE_MAPPING = REPO_ROOT / "examples" / "mappings" / "kaggle_creditcard.yaml"
ROWS = 3000
# Row index -> (column, bad value, the drop reason the importer must report).
BAD_ROWS = {
    10: ("Amount", "twelve", "non-numeric amount"),
    11: ("Amount", -3.5, "negative amount"),
    12: ("Amount", MAX_AMOUNT * 10, "absurd amount (infinite or above MAX_AMOUNT)"),
    13: ("Amount", None, "missing amount"),
    14: ("Time", "noon", "unparseable timestamp"),
    15: ("V7", None, "non-finite passthrough feature"),
    16: ("V20", "inf", "non-finite passthrough feature"),
    17: ("Class", 3, "invalid label"),
    18: ("Class", None, "missing label"),
    2500: ("Time", 1e12, "timestamp out of range"),
}


def kaggle_like(rows: int = ROWS, seed: int = 7) -> pd.DataFrame:
    """A Kaggle credit-card-like table (Time, V1..V28, Amount, Class), with some bad rows."""
    rng = np.random.default_rng(seed)
    table = pd.DataFrame({"Time": np.sort(rng.integers(0, 172_800, rows)).astype(float)})
    for i in range(1, 29):
        table[f"V{i}"] = rng.normal(size=rows)
    table["Amount"] = rng.exponential(90, rows).round(2)
    table["Class"] = (rng.random(rows) < 0.02).astype(int)
    table = table.astype(object)
    for row, (column, value, _) in BAD_ROWS.items():
        table.loc[row, column] = value
    return table


@pytest.fixture
def kaggle_csv(tmp_path: Path) -> Path:
    path = tmp_path / "creditcard.csv"
    kaggle_like().to_csv(path, index=False)
    return path


def expected_label_rate() -> float:
    good = kaggle_like().drop(index=list(BAD_ROWS))
    return float(good["Class"].astype(int).mean())


def test_kaggle_layout_without_account_id(kaggle_csv: Path, tmp_path: Path) -> None:
    report = import_dataset(kaggle_csv, KAGGLE_MAPPING, tmp_path / "out.parquet", chunk_size=700)

    expected_drops: dict[str, int] = {}
    for _, _, reason in BAD_ROWS.values():
        expected_drops[reason] = expected_drops.get(reason, 0) + 1
    assert report.dropped == expected_drops
    assert (report.rows_read, report.rows_written) == (ROWS, ROWS - len(BAD_ROWS))
    assert report.label_rate == pytest.approx(expected_label_rate())
    assert report.extra_features == [f"V{i}" for i in range(1, 29)]

    data = tabular.read(tmp_path / "out.parquet")
    assert list(data.columns) == list(tabular.BASE_COLUMNS) + [f"extra_V{i}" for i in range(1, 29)]
    assert len(data) == report.rows_written
    assert (data["account_id"] == data["transaction_id"]).all()  # each row its own history
    assert data["transaction_id"].is_unique
    assert data["transaction_id"].iloc[0] == "cc-0"
    assert not {f"cc-{row}" for row in BAD_ROWS} & set(data["transaction_id"])
    assert data["merchant_id"].isna().all() and data["country"].isna().all()
    assert (data["currency"] == "EUR").all()
    assert tabular.label_rate(data) == pytest.approx(expected_label_rate())
    source = kaggle_like().drop(index=list(BAD_ROWS)).reset_index(drop=True)
    assert np.allclose(data["amount"], source["Amount"].astype(float))
    assert np.allclose(data["extra_V28"], source["V28"].astype(float))
    start = pd.Timestamp("2013-09-01T00:00:00Z")
    assert (data["timestamp"] - start).dt.total_seconds().tolist() == source["Time"].astype(
        float
    ).tolist()


def test_output_rows_are_valid_transactions(kaggle_csv: Path, tmp_path: Path) -> None:
    import_dataset(kaggle_csv, KAGGLE_MAPPING, tmp_path / "out.parquet")
    data = tabular.read(tmp_path / "out.parquet")
    sample = data.sample(n=200, random_state=1)
    transactions = list(tabular.to_transactions(sample))
    assert len(transactions) == 200
    assert all(len(tx.extra) == 28 and tx.label in (0, 1) for tx in transactions)
    assert {tx.transaction_id for tx in transactions} == set(sample["transaction_id"])


def test_chunk_size_does_not_change_the_result(kaggle_csv: Path, tmp_path: Path) -> None:
    small = import_dataset(kaggle_csv, KAGGLE_MAPPING, tmp_path / "small.parquet", chunk_size=97)
    whole = import_dataset(kaggle_csv, KAGGLE_MAPPING, tmp_path / "whole.parquet", chunk_size=10**6)
    assert small.dropped == whole.dropped
    assert (small.rows_written, small.fraud_rows) == (whole.rows_written, whole.fraud_rows)
    pd.testing.assert_frame_equal(
        tabular.read(tmp_path / "small.parquet"), tabular.read(tmp_path / "whole.parquet")
    )


def test_parquet_source_with_ids_codes_and_datetimes(tmp_path: Path) -> None:
    source = pd.DataFrame(
        {
            "tx": ["t1", "t2", "t3", "t4", "t5"],
            "card": [4111, 4111, 5500, 5500, 4111],
            "shop": ["Rippin, Kub and Mann", "Acme", None, "Acme", "Acme"],
            "when": [
                "2024-03-01 10:00:00",
                "2024-03-01 11:30:00",
                "2024-03-02 09:00:00",
                "not a date",
                "2024-03-03 08:00:00",
            ],
            "amt": [10.0, 25.5, 3000.0, 4.0, 7.25],
            "kind": ["CASH_OUT", "PAYMENT", "weird", "PAYMENT", None],
            "cat": ["grocery_pos", "travel", "shopping_net", "travel", "travel"],
            "cc": ["us", "FR", "Mars", "US", "DE"],
            "is_fraud": [False, True, False, False, True],
            "score_a": [0.1, 0.2, 0.3, 0.4, 0.5],
        }
    )
    source.to_parquet(tmp_path / "src.parquet")
    mapping = parse_mapping(
        {
            "columns": {
                "transaction_id": "tx",
                "account_id": "card",
                "merchant_id": "shop",
                "amount": "amt",
            },
            "timestamp": {
                "column": "when",
                "format": "%Y-%m-%d %H:%M:%S",
                "timezone": "Europe/Paris",
            },
            "label": {"column": "is_fraud", "positive": [True]},
            "channel": {
                "column": "kind",
                "map": {"CASH_OUT": "cash_out", "PAYMENT": "online"},
                "default": "other",
            },
            "merchant_category": {"column": "cat", "map": {"grocery_pos": "grocery"}},
            "country": {"column": "cc"},
            "extra": {"columns": ["score_a"]},
        }
    )
    report = import_dataset(tmp_path / "src.parquet", mapping, tmp_path / "out.parquet")
    data = tabular.read(tmp_path / "out.parquet")

    assert report.dropped == {"unparseable timestamp": 1}
    assert data["transaction_id"].tolist() == ["t1", "t2", "t3", "t5"]
    assert data["account_id"].tolist() == ["4111", "4111", "5500", "4111"]
    assert data["merchant_id"].tolist()[:2] == ["Rippin_Kub_and_Mann", "Acme"]
    assert data["channel"].tolist() == ["cash_out", "online", "other", "other"]
    assert data["merchant_category"].tolist() == ["grocery", "travel", "other", "travel"]
    assert data["country"].tolist()[:2] == ["US", "FR"] and pd.isna(data["country"].iloc[2])
    assert data["label"].tolist() == [0, 1, 0, 1]
    assert data["timestamp"].iloc[0] == pd.Timestamp("2024-03-01T09:00:00Z")  # CET = UTC+1
    assert data["extra_score_a"].tolist() == [0.1, 0.2, 0.3, 0.5]
    assert report.defaulted == {"channel": 2, "merchant_category": 1, "country": 1}
    list(tabular.to_transactions(data))  # every row is a valid Transaction


def test_missing_columns_are_all_named(tmp_path: Path) -> None:
    table = kaggle_like(rows=50).drop(columns=["Amount", "Class", "Time"])
    table.to_csv(tmp_path / "partial.csv", index=False)
    with pytest.raises(SourceError) as caught:
        import_dataset(tmp_path / "partial.csv", KAGGLE_MAPPING, tmp_path / "out.parquet")
    message = str(caught.value)
    for column in (
        "'Amount' (mapped to amount)",
        "'Class' (mapped to label)",
        "'Time' (mapped to timestamp)",
    ):
        assert column in message
    assert len(caught.value.problems) == 3
    assert not (tmp_path / "out.parquet").exists()


def test_unusable_columns_are_all_named(tmp_path: Path) -> None:
    table = kaggle_like(rows=50)
    table["Amount"] = "n/a"
    table["V3"] = "redacted"
    table["Time"] = "sometime"
    table.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(SourceError) as caught:
        import_dataset(tmp_path / "bad.csv", KAGGLE_MAPPING, tmp_path / "out.parquet")
    problems = " ".join(caught.value.problems)
    assert "'Amount' (amount)" in problems and "'V3' (passthrough feature)" in problems
    assert "'Time' (timestamp)" in problems
    assert not list(tmp_path.glob("out.parquet*"))  # no partial output left behind


def test_invalid_mapping_lists_each_problem(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        "columns: {amount: a, acount_id: b}\n"
        "timestamp: {column: t}\nchannel: {column: c, map: {X: teleport}}\n"
    )
    with pytest.raises(MappingError) as caught:
        load_mapping(path)
    assert "acount_id" in str(caught.value) and "teleport" in str(caught.value)


@pytest.mark.parametrize(
    "path", sorted((REPO_ROOT / "examples" / "mappings").glob("*.yaml")), ids=lambda p: p.name
)
def test_example_mappings_are_valid(path: Path) -> None:
    assert load_mapping(path).columns.amount


def test_cli_imports_and_writes_a_json_report(kaggle_csv: Path, tmp_path: Path) -> None:
    out, report = tmp_path / "out" / "tx.parquet", tmp_path / "out" / "report.json"
    result = CliRunner().invoke(
        app,
        [
            "data",
            "import",
            str(kaggle_csv),
            "--mapping",
            str(KAGGLE_MAPPING),
            "--out",
            str(out),
            "--report-json",
            str(report),
            "--chunk-size",
            "500",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "rows written" in result.output and "non-numeric amount" in result.output
    figures = json.loads(report.read_text())
    assert figures["rows_written"] == ROWS - len(BAD_ROWS) == len(tabular.read(out))
    assert figures["label_rate"] == pytest.approx(expected_label_rate())


def test_cli_reports_bad_input_without_a_traceback(tmp_path: Path) -> None:
    kaggle_like(rows=20).drop(columns=["Amount", "V5"]).to_csv(tmp_path / "x.csv", index=False)
    result = CliRunner().invoke(
        app,
        [
            "data",
            "import",
            str(tmp_path / "x.csv"),
            "-m",
            str(KAGGLE_MAPPING),
            "-o",
            str(tmp_path / "o.parquet"),
        ],
    )
    assert result.exit_code == 1
    assert "'Amount'" in result.output and "Traceback" not in result.output


def test_platform_mapping_round_trips_generated_data(tmp_path: Path) -> None:
    from fraudops.data.generate import GeneratorConfig, generate

    generated = generate(GeneratorConfig(rows=2000, seed=3))
    generated.loc[5, "amount"] = -1.0  # one row the schema rejects
    generated.to_parquet(tmp_path / "gen.parquet")
    report = import_dataset(
        tmp_path / "gen.parquet",
        REPO_ROOT / "examples/mappings/platform.yaml",
        tmp_path / "o.parquet",
    )
    assert report.dropped == {"negative amount": 1}
    expected = tabular.normalize(generated.drop(index=5).reset_index(drop=True))
    pd.testing.assert_frame_equal(tabular.read(tmp_path / "o.parquet"), expected)


def test_unknown_label_values_become_unlabelled(tmp_path: Path) -> None:
    pd.DataFrame(
        {
            "t": ["2024-01-01T00:00:00Z"] * 4,
            "a": [1.0, 2.0, 3.0, 4.0],
            "y": ["fraud", "ok", "?", None],
        }
    ).to_csv(tmp_path / "s.csv", index=False)
    mapping = parse_mapping(
        {
            "columns": {"amount": "a"},
            "timestamp": {"column": "t"},
            "label": {
                "column": "y",
                "positive": ["fraud"],
                "negative": ["ok"],
                "unknown": ["?"],
                "required": False,
            },
        }
    )
    report = import_dataset(tmp_path / "s.csv", mapping, tmp_path / "o.parquet")
    assert tabular.read(tmp_path / "o.parquet")["label"].tolist() == [1, 0, -1, -1]
    assert (report.labelled_rows, report.fraud_rows, report.dropped) == (2, 1, {})


def test_malformed_lines_and_compressed_csv(tmp_path: Path) -> None:
    import gzip

    lines = ["when,amt,y"] + [f"2024-01-0{1 + i % 9}T00:00:00Z,{i}.5,{i % 2}" for i in range(40)]
    lines[7] += ",surplus"  # one field too many: skipped and counted, never a crash
    with gzip.open(tmp_path / "s.csv.gz", "wt") as handle:
        handle.write("\n".join(lines) + "\n")
    mapping = parse_mapping(
        {"columns": {"amount": "amt"}, "timestamp": {"column": "when"}, "label": {"column": "y"}}
    )
    # (pandas accepts a surplus line that begins a chunk: the bad line is mid-chunk here)
    small = import_dataset(tmp_path / "s.csv.gz", mapping, tmp_path / "a.parquet", chunk_size=4)
    whole = import_dataset(tmp_path / "s.csv.gz", mapping, tmp_path / "b.parquet")
    assert small.dropped == whole.dropped == {"malformed CSV line (too many fields)": 1}
    assert (small.rows_read, small.rows_written) == (40, 39)
    pd.testing.assert_frame_equal(
        tabular.read(tmp_path / "a.parquet"), tabular.read(tmp_path / "b.parquet")
    )


def test_unreadable_source_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "x.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(SourceError, match="cannot be read"):
        import_dataset(tmp_path / "x.parquet", KAGGLE_MAPPING, tmp_path / "o.parquet")
    with pytest.raises(SourceError, match="file not found"):
        import_dataset(tmp_path / "missing.csv", KAGGLE_MAPPING, tmp_path / "o.parquet")


def test_example_mappings_import_their_layouts(tmp_path: Path) -> None:
    paysim = pd.DataFrame(
        {
            "step": [1, 2, 2],
            "type": ["PAYMENT", "TRANSFER", "CASH_OUT"],
            "amount": [9.5, 181.0, 181.0],
            "nameOrig": ["C1231006815", "C1305486145", "C840083671"],
            "oldbalanceOrg": [170136.0, 181.0, 181.0],
            "newbalanceOrig": [160296.36, 0.0, 0.0],
            "nameDest": ["M1979787155", "C553264065", "C38997010"],
            "oldbalanceDest": [0.0, 0.0, 21182.0],
            "newbalanceDest": [0.0, 0.0, 0.0],
            "isFraud": [0, 1, 1],
            "isFlaggedFraud": [0, 0, 0],
        }
    )
    paysim.to_csv(tmp_path / "paysim.csv", index=False)
    report = import_dataset(
        tmp_path / "paysim.csv", REPO_ROOT / "examples/mappings/paysim.yaml", tmp_path / "p.parquet"
    )
    data = tabular.read(tmp_path / "p.parquet")
    assert report.rows_written == 3 and data["channel"].tolist() == [
        "online",
        "transfer",
        "cash_out",
    ]
    assert data["merchant_category"].tolist() == ["other", "money_transfer", "money_transfer"]
    assert data["timestamp"].iloc[1] == pd.Timestamp("2024-01-01T02:00:00Z")
    assert data["account_id"].iloc[0] == "C1231006815"
