"""The model a predictor serves, as its clients (the stream consumer, the gateway) must know it.

One reading of the predictor's V2 metadata (`fraudops.protocol.ModelInfo`) for every client:
the sequence length, the feature spec to compute (the current spec with the served model's
passthrough features) checked against the served model's spec version and fingerprint, and the
served versions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fraudops.features.spec import FeatureSpec, spec_from_names
from fraudops.protocol import ModelInfo


@dataclass(frozen=True)
class ModelDescription:
    """The served model's description and the feature spec a client computes for it."""

    info: ModelInfo
    spec: FeatureSpec

    @property
    def label(self) -> str:
        """The served versions as the predictor's answers name them (``model_version``)."""
        return ",".join(self.info.versions)


def read_served_model(doc: Mapping[str, Any]) -> ModelDescription:
    """The served model of a ``GET /v2/models/fraud-scorer`` document.

    Raises `fraudops.protocol.ProtocolError` when the document is not a model description or
    when the model was built for other features than this code computes.
    """
    info = ModelInfo.from_metadata(doc)
    spec = spec_from_names(info.feature_names)
    info.check_compatible(n_features=spec.dim, spec_fingerprint=spec.fingerprint,
                          spec_version=spec.version)
    return ModelDescription(info, spec)
