"""Features: one specification, one implementation, two execution modes (batch and online).

    spec = build_spec(passthrough)
    X = compute_batch(time_sorted_frame, spec)          # training / evaluation / drift
    state = OnlineFeatureState(spec, seq_len)           # streaming
    features, sequence, mask = state.update(transaction)

Out-of-order events follow one event-time policy in both modes (`fraudops.features.policy`).
"""

from fraudops.features.batch import compute_batch, gather_sequences, sequence_index
from fraudops.features.online import OnlineFeatureState, StateDelta, epoch_micros
from fraudops.features.policy import EventTimePolicy, StreamAdmission, admit_stream
from fraudops.features.spec import (
    BASE_FEATURES,
    DEFAULT_SEQ_LEN,
    FEATURE_SPEC_VERSION,
    FeatureSpec,
    build_spec,
    spec_from_names,
)

__all__ = [
    "BASE_FEATURES",
    "DEFAULT_SEQ_LEN",
    "FEATURE_SPEC_VERSION",
    "EventTimePolicy",
    "FeatureSpec",
    "OnlineFeatureState",
    "StateDelta",
    "StreamAdmission",
    "admit_stream",
    "build_spec",
    "compute_batch",
    "epoch_micros",
    "gather_sequences",
    "sequence_index",
    "spec_from_names",
]
