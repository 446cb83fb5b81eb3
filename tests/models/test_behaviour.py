"""Behavioural tests of a trained model (Made-With-ML style), through the real feature path.

A small model is trained once per module on generated data; transactions are then changed at
the input (the raw transaction, not its features), featurized like any other and scored:

- directional: a new device in a new country with a much higher amount raises the score;
- invariance: the transaction id does not change any score;
- minimum functionality: on each fraud scenario, the model flags most of its frauds at a 5%
  false-positive rate in the held-out period.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fraudops.data import tabular
from fraudops.data.generate import GeneratorConfig, generate
from fraudops.features import FeatureSpec
from fraudops.training.config import (
    AutoencoderTrainConfig,
    ReferenceTrainConfig,
    SequenceTrainConfig,
    TrainingConfig,
)
from fraudops.training.dataset import featurize
from fraudops.training.splits import split_for
from fraudops.training.workflow import assemble_scorer, fit_autoencoder, fit_sequence

#: Scenarios a model of an account's own history cannot be expected to catch in a small
#: sample: their frauds look like the victim's normal traffic (stealth_terminal) or are told
#: apart only by labels of other accounts (common_point_of_compromise). The LightGBM
#: reference misses them too (benchmarks/bench_ablation.py).
HARD_SCENARIOS = {"stealth_terminal", "common_point_of_compromise"}
MIN_RECALL_AT_5PCT_FPR = 0.6


@pytest.fixture(scope="module")
def trained():
    """(frame, config, scorer) of a small model trained on 6 000 generated transactions."""
    frame = generate(GeneratorConfig(rows=6000, seed=3, fraud_rate=0.05, days=20))
    config = TrainingConfig(
        seq_len=8, threads=1, device="cpu", reference=ReferenceTrainConfig(enabled=False),
        sequence=SequenceTrainConfig(conv_channels=8, hidden_size=8, head_size=16,
                                     wide_size=32, epochs=6, batch_size=256,
                                     negative_sampling=1.0, patience=6),
        autoencoder=AutoencoderTrainConfig(hidden_size=8, bottleneck=4, epochs=2,
                                           max_rows=2000))
    data = featurize(frame, config.seq_len)
    scorer = assemble_scorer(fit_sequence(data, config).bundle,
                             fit_autoencoder(data, config).bundle, data, config)
    return frame, config, scorer


def score_frame(frame: pd.DataFrame, scorer) -> pd.DataFrame:
    """The frame in stream order with each transaction's fraud probability."""
    data = featurize(frame, scorer.seq_len, FeatureSpec.from_dict(scorer.feature_spec))
    ordered = tabular.sort_by_time(tabular.normalize(frame)).reset_index(drop=True)
    result = scorer.score(*data.sequences(np.arange(len(data))))
    return ordered.assign(probability=result.fraud_probability)


def _riskier_copies(frame: pd.DataFrame, count: int = 40) -> tuple[pd.DataFrame, list[str]]:
    """Copies of late legitimate transactions of accounts with history, one second later,
    from a new device in a new country and 20 times the amount."""
    ordered = tabular.sort_by_time(tabular.normalize(frame))
    history = ordered.groupby("account_id").cumcount()
    late = ordered[(ordered["label"] == 0) & (history >= 3)
                   & (ordered["timestamp"] > ordered["timestamp"].quantile(0.8))]
    picked = late.drop_duplicates("account_id").head(count)
    copies = picked.copy()
    copies["transaction_id"] = copies["transaction_id"] + "-risky"
    copies["timestamp"] = copies["timestamp"] + pd.Timedelta(seconds=1)
    copies["device_id"] = [f"dev-never-seen-{i}" for i in range(len(copies))]
    seen = ordered.groupby("account_id")["country"].agg(set)
    copies["country"] = [next(c for c in ("NG", "BR", "RU", "VN") if c not in seen[a])
                         for a in copies["account_id"]]
    copies["amount"] = (copies["amount"] * 20).round(2)
    copies["label"] = -1
    return copies, picked["transaction_id"].tolist()


def test_new_device_new_country_high_amount_raises_the_score(trained):
    frame, _, scorer = trained
    copies, originals = _riskier_copies(frame)
    scored = score_frame(pd.concat([frame, copies], ignore_index=True), scorer)
    by_id = scored.set_index("transaction_id")["probability"]
    before = by_id.loc[originals].to_numpy()
    after = by_id.loc[[t + "-risky" for t in originals]].to_numpy()
    assert len(originals) >= 20
    assert np.mean(after > before) >= 0.9
    assert np.median(after - before) > 0.05


def test_transaction_id_does_not_change_any_score(trained):
    frame, _, scorer = trained
    renamed = frame.assign(transaction_id=[f"other-{i:06d}" for i in range(len(frame))])
    original, changed = score_frame(frame, scorer), score_frame(renamed, scorer)
    assert np.array_equal(original["probability"].to_numpy(), changed["probability"].to_numpy())


def _test_period_recall(trained) -> dict[str, float]:
    frame, config, scorer = trained
    data = featurize(frame, config.seq_len)
    scored = score_frame(frame, scorer).iloc[data.labelled(split_for(data, config).test)]
    legit = scored.loc[scored["label"] == 0, "probability"]
    threshold = np.quantile(legit, 0.95)
    fraud = scored[scored["label"] == 1]
    return (fraud["probability"] >= threshold).groupby(fraud["fraud_scenario"]).mean().to_dict()


def test_each_fraud_scenario_is_mostly_caught(trained):
    recall = _test_period_recall(trained)
    assert set(recall) - HARD_SCENARIOS, "no detectable scenario in the test period"
    missed = {name: round(value, 3) for name, value in recall.items()
              if name not in HARD_SCENARIOS and value < MIN_RECALL_AT_5PCT_FPR}
    assert not missed, f"recall at 5% FPR below {MIN_RECALL_AT_5PCT_FPR}: {missed}"
