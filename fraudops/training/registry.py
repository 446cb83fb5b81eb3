"""Model registry: register a trained pair, alias it challenger, gate promotion to champion.

Both models are promoted together (the policy of the sequence model is fitted on the
autoencoder's scores): the gate compares the challenger pair with the champion pair on the same
holdout and moves `champion` on both names only when the challenger is better by a margin. The
decision and both scores are written as tags on the challenger's model versions. The run's
gradient-boosted reference is scored on the same rows: its figure and, plainly, whether it beats
the challenger go into the decision's reason (the reference is never promoted: it is the yardstick).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from fraudops.settings import ModelNames
from fraudops.training.exceptions import RegistryError

log = logging.getLogger(__name__)
TAG_DECISION = "fraudops.gate.decision"
TAG_REASON = "fraudops.gate.reason"
TAG_CHALLENGER_SCORE = "fraudops.gate.challenger_score"
TAG_CHAMPION_SCORE = "fraudops.gate.champion_score"
TAG_METRIC = "fraudops.gate.metric"
TAG_REFERENCE_SCORE = "fraudops.gate.reference_score"
TAG_PARTNER = "fraudops.partner_version"


@dataclass(frozen=True)
class ModelVersions:
    """Registered versions of one trained pair."""

    sequence: str
    autoencoder: str
    run_id: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class GateDecision:
    """What the promotion gate decided and why."""

    promote: bool
    reason: str
    metric: str
    challenger_score: float
    champion_score: float | None
    margin: float
    #: The run's LightGBM reference on the same holdout and metric (None: not trained).
    reference_score: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def decide_promotion(challenger_score: float, champion_score: float | None, margin: float,
                     metric: str = "auprc", reference_score: float | None = None
                     ) -> GateDecision:
    """Promote when there is no (comparable) champion or the challenger beats it by `margin`.

    The reference's score only informs: the reason says whether it beats the challenger.
    """
    note = _reference_note(challenger_score, reference_score, metric)
    if challenger_score is None or math.isnan(challenger_score):
        return GateDecision(False, "challenger score is undefined" + note, metric, float("nan"),
                            champion_score, margin, reference_score)
    if champion_score is None or math.isnan(champion_score):
        return GateDecision(True, "no comparable champion" + note, metric, challenger_score,
                            champion_score, margin, reference_score)
    better = challenger_score >= champion_score + margin
    reason = (f"challenger {metric} {challenger_score:.4f} "
              f"{'>=' if better else '<'} champion {champion_score:.4f} + margin {margin}")
    return GateDecision(better, reason + note, metric, challenger_score, champion_score, margin,
                        reference_score)


def _reference_note(challenger: float | None, reference: float | None, metric: str) -> str:
    if reference is None or not math.isfinite(reference):
        return ""
    if challenger is None or not math.isfinite(challenger):
        return f"; the LightGBM reference has {metric} {reference:.4f} on the same rows"
    if reference > challenger:
        return (f"; the LightGBM reference beats the challenger on the same rows: {metric} "
                f"{reference:.4f} vs {challenger:.4f}")
    return (f"; the challenger beats or equals the LightGBM reference on the same rows "
            f"({metric} {reference:.4f})")


def register_pair(client: MlflowClient, names: ModelNames, sequence_uri: str,
                  autoencoder_uri: str, run_id: str | None) -> ModelVersions:
    """Register both logged models and alias the new versions `challenger`."""
    import mlflow

    try:
        seq = mlflow.register_model(sequence_uri, names.sequence)
        ae = mlflow.register_model(autoencoder_uri, names.autoencoder)
        versions = ModelVersions(str(seq.version), str(ae.version), run_id)
        for name, version, partner in ((names.sequence, versions.sequence, versions.autoencoder),
                                       (names.autoencoder, versions.autoencoder,
                                        versions.sequence)):
            client.set_registered_model_alias(name, names.challenger_alias, version)
            client.set_model_version_tag(name, version, TAG_PARTNER, partner)
    except MlflowException as error:
        raise RegistryError(f"registering models failed: {error.message}") from error
    log.info("registered %s v%s and %s v%s as %s", names.sequence, versions.sequence,
             names.autoencoder, versions.autoencoder, names.challenger_alias)
    return versions


def champion_versions(client: MlflowClient, names: ModelNames) -> ModelVersions | None:
    """The current champion pair, or None when there is none yet."""
    try:
        seq = client.get_model_version_by_alias(names.sequence, names.champion_alias)
        ae = client.get_model_version_by_alias(names.autoencoder, names.champion_alias)
    except MlflowException:
        return None
    return ModelVersions(str(seq.version), str(ae.version), seq.run_id)


def apply_decision(client: MlflowClient, names: ModelNames, versions: ModelVersions,
                   decision: GateDecision) -> None:
    """Record the decision on both challenger versions; move `champion` if it promotes."""
    tags = {TAG_DECISION: "promoted" if decision.promote else "rejected",
            TAG_REASON: decision.reason, TAG_METRIC: decision.metric,
            TAG_CHALLENGER_SCORE: f"{decision.challenger_score:.6f}",
            TAG_CHAMPION_SCORE: ("none" if decision.champion_score is None
                                 else f"{decision.champion_score:.6f}"),
            TAG_REFERENCE_SCORE: ("none" if decision.reference_score is None
                                  else f"{decision.reference_score:.6f}")}
    try:
        for name, version in ((names.sequence, versions.sequence),
                              (names.autoencoder, versions.autoencoder)):
            for key, value in tags.items():
                client.set_model_version_tag(name, version, key, value)
            if decision.promote:
                client.set_registered_model_alias(name, names.champion_alias, version)
    except MlflowException as error:
        raise RegistryError(f"recording the gate decision failed: {error.message}") from error
    log.info("gate: %s (%s)", tags[TAG_DECISION], decision.reason)


def model_uri(name: str, alias_or_version: str) -> str:
    """``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``."""
    return (f"models:/{name}/{alias_or_version}" if alias_or_version.isdigit()
            else f"models:/{name}@{alias_or_version}")
