"""The feature specification: names, order, version. One spec for training and serving.

Features are *raw* (log transforms, cyclic encodings, one-hots, counts); standardisation is fitted
at training time and stored inside the model, so the spec stays data-independent except for the
passthrough columns a data set brings along.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from fraudops.schema import EXTRA_PREFIX, Channel, MerchantCategory

#: Bump on any change to a feature's definition or order: models trained on another version are
#: refused by the predictor.
FEATURE_SPEC_VERSION = "2.0.0"  # 2.0.0: label-informed features

#: Default length of the per-account sequence the LSTM-CNN sees.
DEFAULT_SEQ_LEN = 16

MICROS = 1_000_000
#: Sliding windows for velocity aggregates, in microseconds.
WINDOWS: dict[str, int] = {"1h": 3_600 * MICROS, "24h": 86_400 * MICROS, "7d": 7 * 86_400 * MICROS}
#: Entities that get velocity aggregates (the transaction field holding each one's key).
VELOCITY_ENTITIES: dict[str, str] = {
    "account": "account_id",
    "merchant": "merchant_id",
    "device": "device_id",
}
VELOCITY_STATS = ("count", "sum", "max")
#: Fields whose first appearance for an account is a signal (new merchant / device / country).
NOVELTY_FIELDS = ("merchant_id", "device_id", "country")

#: Label-informed features: trailing windows over the time a verdict became known (`labelled_at`).
LABEL_WINDOWS: dict[str, int] = {"1d": 86_400 * MICROS, "7d": 7 * 86_400 * MICROS,
                                 "28d": 28 * 86_400 * MICROS}
#: The widest label window: label state older than this never counts again (memory bound), and
#: a label more than this after the verdict it repeats starts a new verdict (see
#: `fraudops.features.labels.verdict_runs`).
LABEL_MEMORY_US = max(LABEL_WINDOWS.values())
#: Entities with label-informed features (the transaction field holding each one's key).
LABEL_ENTITIES: dict[str, str] = dict(VELOCITY_ENTITIES)
#: Smoothed fraud rate = (fraud + PRIOR_RATE * PRIOR_WEIGHT) / (labelled + PRIOR_WEIGHT): an
#: entity with few verdicts sits near the prior (about the share of fraud among labelled
#: transactions in a typical label stream), one with many near its own rate.
LABEL_PRIOR_RATE = 0.02
LABEL_PRIOR_WEIGHT = 5.0
#: Window of the "known fraud" flags and of the account's risky visits.
EXPOSURE_WINDOW = "7d"

CHANNELS = tuple(c.value for c in Channel)
CATEGORIES = tuple(c.value for c in MerchantCategory)
#: Name prefixes of the one-hot groups: feature ``channel_online`` is 1 for an online payment.
CHANNEL_PREFIX = "channel_"
CATEGORY_PREFIX = "category_"
#: Variance floor for the amount z-score: keeps it finite and stable for steady spenders.
Z_VARIANCE_FLOOR = 0.05
Z_CLIP = 10.0


def _base_names() -> tuple[str, ...]:
    names = ["amount_log", "hour_sin", "hour_cos", "dow_sin", "dow_cos"]
    names += [CHANNEL_PREFIX + c for c in CHANNELS]
    names += [CATEGORY_PREFIX + c for c in CATEGORIES]
    names += [f"account_new_{f.removesuffix('_id')}" for f in NOVELTY_FIELDS]
    names += ["account_first_seen", "account_gap_log", "account_history_log"]
    names += ["account_amount_z", "account_amount_diff"]
    for entity in VELOCITY_ENTITIES:
        for window in WINDOWS:
            names += [f"{entity}_{stat}_{window}_log" for stat in VELOCITY_STATS]
    return (*names, *_label_names())


def _label_names() -> tuple[str, ...]:
    names = []
    for entity in LABEL_ENTITIES:
        for window in LABEL_WINDOWS:
            names += [f"{entity}_fraud_{window}_log", f"{entity}_labelled_{window}_log",
                      f"{entity}_fraud_rate_{window}"]
    names += [f"merchant_fraud_known_{EXPOSURE_WINDOW}", f"device_fraud_known_{EXPOSURE_WINDOW}",
              f"account_risky_visits_{EXPOSURE_WINDOW}_log"]
    return tuple(names)


BASE_FEATURES: tuple[str, ...] = _base_names()
#: The label-informed features (from verdicts, not from the traffic), in spec order.
LABEL_FEATURES: tuple[str, ...] = _label_names()


@dataclass(frozen=True)
class FeatureSpec:
    """Which features, in which order, under which definition version."""

    passthrough: tuple[str, ...] = ()
    version: str = FEATURE_SPEC_VERSION
    names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        duplicates = {n for n in self.passthrough if self.passthrough.count(n) > 1}
        if duplicates:
            raise ValueError(f"duplicate passthrough features: {sorted(duplicates)}")
        names = BASE_FEATURES + tuple(EXTRA_PREFIX + n for n in self.passthrough)
        object.__setattr__(self, "names", names)

    @property
    def dim(self) -> int:
        return len(self.names)

    @property
    def fingerprint(self) -> str:
        """Short hash of version + names: two specs with the same fingerprint are interchangeable."""
        payload = json.dumps({"version": self.version, "names": self.names}).encode()
        return hashlib.sha256(payload).hexdigest()[:16]

    def to_dict(self) -> dict:
        return {"version": self.version, "passthrough": list(self.passthrough),
                "fingerprint": self.fingerprint}

    @classmethod
    def from_dict(cls, data: dict) -> FeatureSpec:
        return cls(passthrough=tuple(data.get("passthrough", ())), version=data["version"])


def build_spec(passthrough: tuple[str, ...] | list[str] = ()) -> FeatureSpec:
    """The current spec, with the data set's passthrough columns appended."""
    return FeatureSpec(passthrough=tuple(passthrough))


def spec_from_names(names: Iterable[str]) -> FeatureSpec:
    """The current spec with the passthrough features among `names` (a model's feature names).

    Only the passthrough names are read: whether the rest matches is the fingerprint's business.
    """
    return build_spec([n.removeprefix(EXTRA_PREFIX) for n in names if n.startswith(EXTRA_PREFIX)])
