"""The feature specification: names, order, version. One spec for training and serving.

Features are *raw* (log transforms, cyclic encodings, one-hots, counts); standardisation is fitted
at training time and stored inside the model, so the spec stays data-independent except for the
passthrough columns a data set brings along.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from fraudops.schema import Channel, MerchantCategory

#: Bump on any change to a feature's definition or order: models trained on another version are
#: refused by the predictor.
FEATURE_SPEC_VERSION = "1.0.0"

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

CHANNELS = tuple(c.value for c in Channel)
CATEGORIES = tuple(c.value for c in MerchantCategory)
#: Variance floor for the amount z-score: keeps it finite and stable for steady spenders.
Z_VARIANCE_FLOOR = 0.05
Z_CLIP = 10.0


def _base_names() -> tuple[str, ...]:
    names = ["amount_log", "hour_sin", "hour_cos", "dow_sin", "dow_cos"]
    names += [f"channel_{c}" for c in CHANNELS]
    names += [f"category_{c}" for c in CATEGORIES]
    names += [f"account_new_{f.removesuffix('_id')}" for f in NOVELTY_FIELDS]
    names += ["account_first_seen", "account_gap_log", "account_history_log"]
    names += ["account_amount_z", "account_amount_diff"]
    for entity in VELOCITY_ENTITIES:
        for window in WINDOWS:
            names += [f"{entity}_{stat}_{window}_log" for stat in VELOCITY_STATS]
    return tuple(names)


BASE_FEATURES: tuple[str, ...] = _base_names()


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
        names = BASE_FEATURES + tuple(f"extra_{n}" for n in self.passthrough)
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
