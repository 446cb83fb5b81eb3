"""On-disk model format: a directory with ``fraudops_model.json`` and ``weights.pt``.

The JSON holds everything needed to rebuild the module (kind, architecture config) and to check
it against the running code (feature spec, its version, sequence length) plus, for the sequence
model, the decision policy. The weights are a plain state dict (loaded with
``weights_only=True``: no pickled code runs on load); ``model.onnx``, when training exported
one, is the scoring graph for ONNX Runtime (see `fraudops.models.onnx_graph`). MLflow logs
this directory as the artifact of a pyfunc model (see `fraudops.models.pyfunc`), so a
registered model, a downloaded one and a directory left by KServe's storage initializer all
load through `load_checkpoint`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from fraudops.models.autoencoder import Autoencoder, AutoencoderConfig
from fraudops.models.exceptions import ModelLoadError
from fraudops.models.lstm_cnn import LSTMCNN, LSTMCNNConfig

#: 2: the LSTM-CNN's wide branch, the autoencoder's per-feature residual scale, the calibration
#: in the metadata. A /1 checkpoint loads as what it was (the new fields default to the old
#: architecture); code that reads only /1 refuses a /2 one by its format, not with a crash.
FORMAT = "fraudops-model/2"
READABLE_FORMATS = ("fraudops-model/1", FORMAT)
META_FILE = "fraudops_model.json"
WEIGHTS_FILE = "weights.pt"
#: The model's scoring graph for ONNX Runtime (written by training; optional on load).
ONNX_FILE = "model.onnx"
SEQUENCE_KIND = "lstm_cnn"
AUTOENCODER_KIND = "autoencoder"
_BUILDERS = {
    SEQUENCE_KIND: (LSTMCNN, LSTMCNNConfig),
    AUTOENCODER_KIND: (Autoencoder, AutoencoderConfig),
}


@dataclass
class ModelBundle:
    """A model module with the metadata that travels with it."""

    module: nn.Module
    kind: str
    feature_spec: dict
    seq_len: int
    extra: dict = field(default_factory=dict)
    #: The scoring graph (`fraudops.models.onnx_graph`), when one was exported.
    onnx: bytes | None = None

    @property
    def feature_spec_version(self) -> str:
        return str(self.feature_spec.get("version", ""))

    @property
    def feature_names(self) -> list[str]:
        return list(self.feature_spec.get("names", []))


def kind_of(module: nn.Module) -> str:
    for kind, (cls, _) in _BUILDERS.items():
        if isinstance(module, cls):
            return kind
    raise TypeError(f"not a fraudops model: {type(module).__name__}")


def save_checkpoint(bundle: ModelBundle, directory: str | Path) -> Path:
    """Write `bundle` to `directory` (created); returns the directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": FORMAT,
        "kind": bundle.kind,
        "config": bundle.module.config.to_dict(),
        "feature_spec": bundle.feature_spec,
        "feature_spec_version": bundle.feature_spec_version,
        "seq_len": bundle.seq_len,
        **bundle.extra,
    }
    (directory / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
    state = {k: v.detach().cpu() for k, v in bundle.module.state_dict().items()}
    torch.save(state, directory / WEIGHTS_FILE)
    if bundle.onnx is not None:
        (directory / ONNX_FILE).write_bytes(bundle.onnx)
    return directory


def find_checkpoint(directory: str | Path) -> Path:
    """The directory holding ``fraudops_model.json`` at or below `directory`."""
    directory = Path(directory)
    if (directory / META_FILE).is_file():
        return directory
    found = sorted(directory.rglob(META_FILE)) if directory.is_dir() else []
    if not found:
        raise ModelLoadError(f"no {META_FILE} at or below {directory}: not a fraudops model")
    return found[0].parent


def load_checkpoint(directory: str | Path, device: torch.device | str = "cpu") -> ModelBundle:
    """Rebuild a model from a directory written by `save_checkpoint` (or an MLflow model dir)."""
    root = find_checkpoint(directory)
    try:
        meta = json.loads((root / META_FILE).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ModelLoadError(f"unreadable {root / META_FILE}: {error}") from error
    if meta.get("format") not in READABLE_FORMATS or meta.get("kind") not in _BUILDERS:
        raise ModelLoadError(f"{root}: unsupported model format/kind "
                             f"{meta.get('format')!r}/{meta.get('kind')!r}")
    cls, config_cls = _BUILDERS[meta["kind"]]
    module = cls(config_cls(**meta["config"]))
    try:
        state = torch.load(root / WEIGHTS_FILE, map_location="cpu", weights_only=True)
        module.load_state_dict(state)
    except (OSError, RuntimeError) as error:
        raise ModelLoadError(f"{root}: cannot load weights: {error}") from error
    module.to(device).eval()
    reserved = {"format", "kind", "config", "feature_spec", "feature_spec_version", "seq_len"}
    extra = {k: v for k, v in meta.items() if k not in reserved}
    graph = root / ONNX_FILE
    return ModelBundle(module, meta["kind"], meta["feature_spec"], int(meta["seq_len"]), extra,
                       onnx=graph.read_bytes() if graph.is_file() else None)
