"""The generator's label stream: arrival of analyst verdicts, chargebacks and maturity labels,
determinism, never a label before its transaction, the file beside the transactions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from fraudops.cli import app
from fraudops.data import tabular
from fraudops.data.exceptions import FrameError
from fraudops.data.generate import GeneratorConfig, generate
from fraudops.data.labels import (
    LabelStreamConfig,
    generate_labels,
    label_stream_summary,
    labels_path,
    read_labels,
    to_labels,
    verdicts_as_of,
    write_labels,
)
from fraudops.schema import TransactionLabel

HOUR, DAY = pd.Timedelta(hours=1), pd.Timedelta(days=1)


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return generate(GeneratorConfig(rows=20_000, seed=3, fraud_rate=0.05))


@pytest.fixture(scope="module")
def labels(data: pd.DataFrame) -> pd.DataFrame:
    return generate_labels(data, seed=3)


def _delays(data: pd.DataFrame, labels: pd.DataFrame, source: str) -> pd.Series:
    picked = labels[labels["source"] == source]
    times = picked["transaction_id"].map(data.set_index("transaction_id")["timestamp"])
    return picked["labelled_at"] - times


def test_same_seed_same_stream_and_the_transactions_never_change(data, labels) -> None:
    pd.testing.assert_frame_equal(generate_labels(data, seed=3), labels)
    assert not generate_labels(data, seed=4)["labelled_at"].equals(labels["labelled_at"])
    other = GeneratorConfig(rows=20_000, seed=3, fraud_rate=0.05,
                            labels=LabelStreamConfig(never_reviewed_share=0.9, maturity_days=5))
    pd.testing.assert_frame_equal(generate(other), data)


def test_no_label_before_its_transaction_and_the_stream_is_in_time_order(data, labels) -> None:
    times = labels["transaction_id"].map(data.set_index("transaction_id")["timestamp"])
    assert times.notna().all() and (labels["labelled_at"] > times).all()
    assert labels["labelled_at"].is_monotonic_increasing
    joined = labels.merge(data, on="transaction_id", suffixes=("", "_tx"))
    for key in ("account_id", "merchant_id", "device_id"):  # the judged transaction's entities
        assert joined[key].equals(joined[f"{key}_tx"])


def test_verdicts_by_source(data, labels) -> None:
    """Analysts tell the truth; chargebacks are fraud; the maturity rule says legitimate."""
    truth = labels["transaction_id"].map(data.set_index("transaction_id")["label"])
    by = labels.groupby("source")
    assert (labels["label"][labels["source"] == "analyst"] == truth[labels["source"] == "analyst"]
            ).all()
    assert set(by.get_group("chargeback")["label"]) == {1}
    assert set(by.get_group("rule")["label"]) == {0} and (truth[labels["source"] == "rule"] == 0
                                                         ).all()
    assert labels["transaction_id"].is_unique  # by default no transaction gets two verdicts


def test_arrival_delays(data, labels) -> None:
    review = _delays(data, labels, "analyst")
    assert review.min() >= pd.Timedelta(minutes=1) and review.max() <= 48 * HOUR
    assert 1.6 * HOUR < review.median() < 2.5 * HOUR
    chargeback = _delays(data, labels, "chargeback")
    assert chargeback.min() >= DAY and chargeback.max() <= 120 * DAY
    assert 9 * DAY < chargeback.median() < 15 * DAY
    assert (_delays(data, labels, "rule") == 30 * DAY).all()


def test_default_shares(data, labels) -> None:
    """0.7 of fraud flagged, 0.9 of it reviewed, 0.8 of the rest disputed."""
    figures = label_stream_summary(data, labels)
    assert figures["fraud_by_analyst"] == pytest.approx(0.63, abs=0.04)
    assert figures["fraud_by_chargeback"] == pytest.approx(0.37 * 0.8, abs=0.04)
    assert figures["fraud_never_labelled"] == pytest.approx(0.37 * 0.2, abs=0.03)
    legit = (data["label"] == 0).sum()
    reviewed_legit = ((labels["source"] == "analyst") & (labels["label"] == 0)).sum()
    assert reviewed_legit / legit == pytest.approx(0.005 * 0.9, abs=0.002)


def test_never_reviewed_share_is_never_labelled_without_chargebacks(data) -> None:
    config = LabelStreamConfig(flag_fraud_share=1.0, never_reviewed_share=0.25,
                               chargeback_share=0.0)
    figures = label_stream_summary(data, generate_labels(data, 3, config))
    assert figures["fraud_by_analyst"] == pytest.approx(0.75, abs=0.03)
    assert figures["fraud_never_labelled"] == pytest.approx(0.25, abs=0.03)
    assert figures["fraud_by_chargeback"] == 0.0


def test_legitimate_only_after_maturity(data, labels) -> None:
    moment = data["timestamp"].max()
    known = verdicts_as_of(labels, moment).set_index("transaction_id")
    young = data[(data["timestamp"] > moment - 30 * DAY)].set_index("transaction_id")
    legit_known = known.reindex(young.index)["source"]
    # Young transactions have a verdict only from an analyst or a chargeback, never the rule.
    assert set(legit_known.dropna()) <= {"analyst", "chargeback"}
    assert legit_known.isna().mean() > 0.9


def test_unreported_fraud_matures_wrongly_and_a_chargeback_flips_it(data) -> None:
    config = LabelStreamConfig(mature_unreported_fraud=True, chargeback_median_days=40,
                               maturity_days=20)
    labels = generate_labels(data, 3, config)
    fraud = set(data.loc[data["label"] == 1, "transaction_id"])
    twice = labels[labels["transaction_id"].duplicated(keep=False)]
    assert len(twice) and set(twice["transaction_id"]) <= fraud
    assert list(twice.groupby("transaction_id")["source"].agg(tuple).unique()) == [
        ("rule", "chargeback")]
    final = verdicts_as_of(labels, labels["labelled_at"].max()).set_index("transaction_id")
    assert (final.loc[list(set(twice["transaction_id"])), "label"] == 1).all()
    # every fraud without an analyst's or early chargeback verdict gets the rule's 0
    assert set(final.index) >= fraud


def test_file_round_trip_and_events(data, labels, tmp_path) -> None:
    path = write_labels(labels, labels_path(tmp_path / "transactions.parquet"))
    assert path.name == "transactions.labels.parquet"
    back = read_labels(path)
    pd.testing.assert_frame_equal(back, labels)
    events = list(to_labels(back.head(50)))
    assert all(isinstance(e, TransactionLabel) for e in events)
    assert events[0].labelled_at == back["labelled_at"].iloc[0].to_pydatetime()


@pytest.mark.parametrize("change", [{"label": 2}, {"source": "oracle"}, {"labelled_at": None}])
def test_a_malformed_label_frame_is_refused(labels, change: dict) -> None:
    bad = labels.head(3).copy()
    column, value = next(iter(change.items()))
    bad[column] = bad[column].astype(object)
    bad.loc[1, column] = value
    with pytest.raises(FrameError):
        write_labels(bad, "unused.parquet")


def test_cli_writes_the_label_stream_beside_the_transactions(tmp_path) -> None:
    out = tmp_path / "data" / "transactions.parquet"
    result = CliRunner().invoke(app, ["data", "generate", "--rows", "3000", "--seed", "9",
                                      "--no-progress", "--out", str(out),
                                      "--never-reviewed-share", "0.5"])
    assert result.exit_code == 0, result.output
    assert "label stream" in result.output and "fraud by chargeback" in result.output
    labels = read_labels(out.with_name("transactions.labels.parquet"))
    transactions = tabular.read(out)
    expected = generate_labels(transactions, 9, LabelStreamConfig(never_reviewed_share=0.5))
    pd.testing.assert_frame_equal(labels, expected)
    assert np.isin(labels["transaction_id"], transactions["transaction_id"]).all()
