"""Model definitions, the on-disk format and the scorer shared by training and serving."""

from fraudops.models.autoencoder import Autoencoder, AutoencoderConfig
from fraudops.models.checkpoint import ModelBundle, load_checkpoint, save_checkpoint
from fraudops.models.device import pick_device, seed_everything
from fraudops.models.exceptions import (
    BackendUnavailableError,
    FeatureSpecMismatchError,
    ModelError,
    ModelInputError,
    ModelLoadError,
)
from fraudops.models.lstm_cnn import LSTMCNN, LSTMCNNConfig
from fraudops.models.policy import DecisionPolicy
from fraudops.models.scorer import LoadedModelInfo, Scorer, ScoreResult, load_scorer

__all__ = [
    "LSTMCNN",
    "Autoencoder",
    "AutoencoderConfig",
    "BackendUnavailableError",
    "DecisionPolicy",
    "FeatureSpecMismatchError",
    "LSTMCNNConfig",
    "LoadedModelInfo",
    "ModelBundle",
    "ModelError",
    "ModelInputError",
    "ModelLoadError",
    "ScoreResult",
    "Scorer",
    "load_checkpoint",
    "load_scorer",
    "pick_device",
    "save_checkpoint",
    "seed_everything",
]
