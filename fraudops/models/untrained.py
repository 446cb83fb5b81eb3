"""Untrained model pairs in the real checkpoint format: for smoke runs, tests and benchmarks.

The weights are random (seeded), but the input normalisation is fitted on the rows given and the
autoencoder's score may be calibrated on them, so outputs land in a realistic range and every
serving code path runs as it would with trained models. Nothing real should be decided with them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fraudops.features import FeatureSpec
from fraudops.models.autoencoder import Autoencoder, AutoencoderConfig
from fraudops.models.checkpoint import ModelBundle, save_checkpoint
from fraudops.models.device import seed_everything
from fraudops.models.lstm_cnn import LSTMCNN, LSTMCNNConfig
from fraudops.models.policy import DecisionPolicy

#: The smallest sizes that still exercise every layer: fast enough for tests.
TINY_SEQUENCE = {"conv_channels": 8, "hidden_size": 8, "head_size": 8}
TINY_AUTOENCODER = {"hidden_size": 8, "bottleneck": 4}


def build_untrained_pair(
    fit_rows: np.ndarray,
    *,
    seed: int = 0,
    sequence_size: dict | None = None,
    autoencoder_size: dict | None = None,
    calibrate_fpr: float | None = None,
) -> tuple[LSTMCNN, Autoencoder]:
    """Both models (eval mode) with normalisation fitted on `fit_rows` [N, F]."""
    seed_everything(seed)
    dim = fit_rows.shape[1]
    sequence = LSTMCNN(LSTMCNNConfig(input_dim=dim, **(sequence_size or {})))
    autoencoder = Autoencoder(AutoencoderConfig(input_dim=dim, **(autoencoder_size or {})))
    with torch.no_grad():
        sequence.normalize.fit(fit_rows)
        autoencoder.normalize.fit(fit_rows)
    sequence.eval()
    autoencoder.eval()
    if calibrate_fpr is not None:
        autoencoder.calibrate(torch.from_numpy(fit_rows), target_fpr=calibrate_fpr)
    return sequence, autoencoder


def save_pair(
    directory: Path,
    spec: FeatureSpec | dict,
    seq_len: int,
    sequence: LSTMCNN,
    autoencoder: Autoencoder,
    policy: DecisionPolicy | None = None,
) -> tuple[Path, Path]:
    """Checkpoints `directory/sequence` and `directory/autoencoder`; the policy rides with the
    sequence model."""
    spec_dict = spec if isinstance(spec, dict) else spec.to_dict()
    policy = policy or DecisionPolicy()
    sequence_dir = save_checkpoint(
        ModelBundle(sequence, "lstm_cnn", spec_dict, seq_len, {"policy": policy.to_dict()}),
        Path(directory) / "sequence")
    autoencoder_dir = save_checkpoint(
        ModelBundle(autoencoder, "autoencoder", spec_dict, seq_len), Path(directory) / "autoencoder")
    return sequence_dir, autoencoder_dir


def write_untrained_pair(
    directory: Path,
    spec: FeatureSpec | dict,
    fit_rows: np.ndarray,
    seq_len: int,
    *,
    policy: DecisionPolicy | None = None,
    **build_options,
) -> tuple[Path, Path]:
    """`build_untrained_pair` then `save_pair`: the two checkpoint directories."""
    sequence, autoencoder = build_untrained_pair(fit_rows, **build_options)
    return save_pair(directory, spec, seq_len, sequence, autoencoder, policy)
