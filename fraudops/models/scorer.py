"""The scorer: both models, the feature spec and the decision policy behind one call.

`load_scorer` accepts MLflow model URIs (``models:/fraud-lstm-cnn@champion``, ``models:/NAME/3``,
``runs:/RUN/sequence_model``) or local directories (as KServe's storage initializer leaves
them, or as `save_checkpoint` writes them). Nothing is loaded at import time.
"""

from __future__ import annotations

import logging
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy.special import expit
from torch import nn

from fraudops.models.calibration import Calibration
from fraudops.models.checkpoint import (
    AUTOENCODER_KIND,
    SEQUENCE_KIND,
    ModelBundle,
    find_checkpoint,
    load_checkpoint,
)
from fraudops.models.device import pick_device
from fraudops.models.exceptions import (
    BackendUnavailableError,
    FeatureSpecMismatchError,
    ModelInputError,
    ModelLoadError,
)
from fraudops.models.onnx_graph import anomaly_scores
from fraudops.models.policy import DecisionPolicy

log = logging.getLogger(__name__)
#: ``models:/``, ``runs:/``, ``s3://``...: anything else is a local path.
_URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:/")
#: Rows scored per forward pass (bounds memory for large offline batches).
CHUNK = 8192
#: How the forward passes run: torch modules, or their ONNX graphs under ONNX Runtime (CPU).
BACKENDS = ("torch", "onnxruntime")
#: The feature holding log1p(amount): the cost rule of the policy reads the amount from it.
AMOUNT_FEATURE = "amount_log"


@dataclass(frozen=True)
class ScoreResult:
    """Per-row outputs of `Scorer.score`."""

    fraud_probability: np.ndarray  # float32 [B]
    anomaly_score: np.ndarray  # float32 [B]
    decision: np.ndarray  # str [B]: approve | review | block
    reason_codes: list[list[str]] = field(default_factory=list)  # top unusual features per row


@dataclass(frozen=True)
class LoadedModelInfo:
    """Where a loaded model came from (reported by the predictor's metadata)."""

    uri: str
    name: str | None = None
    version: str | None = None
    run_id: str | None = None

    def to_dict(self) -> dict:
        return {"uri": self.uri, "name": self.name, "version": self.version,
                "run_id": self.run_id}


class FusedModels(nn.Module):
    """Both forward passes as one call: the raw fraud probability and the anomaly score, stacked
    [B, 2], so a batch costs one module call and one device-to-host copy (one sync on a GPU)."""

    def __init__(self, sequence: nn.Module, autoencoder: nn.Module):
        super().__init__()
        self.sequence = sequence
        self.autoencoder = autoencoder

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        probability = torch.sigmoid(self.sequence(x, mask))
        return torch.stack([probability, self.autoencoder.anomaly_score(x[:, -1, :])], dim=1)


class Scorer:
    """Both models plus policy; `score(x, mask)` gives probabilities, anomalies, decisions.

    A row's scores must not depend on which other rows share its batch: a batch redone after
    a crash (its decisions already produced, not yet committed) has other neighbours, and a
    score that moved in its last bits put two different records for one id on
    `fraud-decisions`. In float32 the matrix kernels pick another summation order for another
    batch shape (the same transaction scored in two batches differed by up to 7e-7). Two ways
    keep a row's scores fixed:

    * ``exact=True``: the forward passes run in float64 (the answer is float32, and rounded to
      float32 the results agree); two to four times the float32 time on the CPU;
    * ``block_rows=N`` (with ``exact=False``): float32 passes of exactly N rows each (the last
      one padded with copies of the batch's first row), so every pass has the same shape and
      the kernels the same order whatever the batch. Padding costs on small batches (a single
      transaction is scored as N rows).

    ``exact=False`` without ``block_rows``: plain float32 in one pass (training's evaluation).

    ``backend="onnxruntime"`` (float32, CPU) runs the models' ONNX graphs (logged with them by
    training; exported on load, with a warning, for a model that has none or an older export)
    instead of the torch modules. Their kernels give a row the same bits in a batch of any size,
    which the scorer checks at load (`batch_invariant`, on batches of several sizes and
    offsets): then a batch runs in one pass, unpadded (a single transaction is one row), and
    ``block_rows`` applies only where the check fails.
    """

    def __init__(self, sequence: ModelBundle, autoencoder: ModelBundle,
                 policy: DecisionPolicy | None = None, device: torch.device | str = "cpu",
                 sources: dict[str, LoadedModelInfo] | None = None, exact: bool = True,
                 block_rows: int | None = None, backend: str = "torch", threads: int = 1):
        _check_pair(sequence, autoencoder)
        if block_rows is not None and (exact or block_rows < 1):
            raise ValueError("block_rows needs exact=False and at least one row")
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; one of {BACKENDS}")
        self.device = torch.device(device)
        self.backend = backend
        self._sessions = None
        if backend == "onnxruntime":
            if exact or self.device.type != "cpu":
                raise ValueError("the onnxruntime backend runs float32 (exact=False) on the CPU")
            self._sessions = tuple(_onnx_session(bundle, threads)
                                   for bundle in (sequence, autoencoder))
            ae = autoencoder.module
            self._anomaly_loc = float(ae.score_loc)
            self._anomaly_scale = float(ae.score_scale)
        self.dtype = torch.float64 if exact else torch.float32
        self.block_rows = block_rows
        self.sequence_model = sequence.module.to(self.device, self.dtype).eval()
        self.autoencoder = autoencoder.module.to(self.device, self.dtype).eval()
        self.models = FusedModels(self.sequence_model, self.autoencoder).eval()
        self.feature_spec: dict = sequence.feature_spec
        self.seq_len = sequence.seq_len
        self.policy = policy or DecisionPolicy.from_dict(sequence.extra.get("policy") or {})
        #: Fitted on validation in training; the raw probability for older checkpoints.
        self.calibration = Calibration.from_dict(sequence.extra.get("calibration"))
        names = self.feature_names
        self._amount_column = names.index(AMOUNT_FEATURE) if AMOUNT_FEATURE in names else None
        self.sources = sources or {}
        #: Whether a row's scores are the same bits in batches of any size without padding.
        self.batch_invariant = exact or (self._sessions is not None and self._onnx_invariant())
        if self._sessions is not None and not self.batch_invariant:
            log.warning("ONNX Runtime's scores depend on the batch on this machine: scoring in "
                        "padded passes of %s rows", block_rows)

    @property
    def feature_names(self) -> list[str]:
        return list(self.feature_spec.get("names", []))

    @property
    def feature_dim(self) -> int:
        return self.sequence_model.config.input_dim

    @property
    def feature_spec_version(self) -> str:
        return str(self.feature_spec.get("version", ""))

    @property
    def versions(self) -> dict[str, str | None]:
        """Registered model name (or role) -> version loaded (None for an unregistered dir)."""
        return {(info.name or role): info.version for role, info in self.sources.items()}

    def check_input(self, x: np.ndarray, mask: np.ndarray) -> None:
        """Raise `ModelInputError` unless x is [B, K, F] and mask [B, K] for this model."""
        if x.ndim != 3 or x.shape[1:] != (self.seq_len, self.feature_dim):
            raise ModelInputError(f"sequences must have shape [B, {self.seq_len}, "
                                  f"{self.feature_dim}], got {list(x.shape)}")
        if mask.shape != x.shape[:2]:
            raise ModelInputError(f"mask must have shape {list(x.shape[:2])}, "
                                  f"got {list(mask.shape)}")
        if not np.isfinite(x).all():
            raise ModelInputError("sequences contain NaN or infinite values")

    @torch.inference_mode()
    def score(self, x: np.ndarray, mask: np.ndarray, reasons: int = 0) -> ScoreResult:
        """Score a batch; `reasons` > 0 adds that many reason codes per row."""
        x = np.asarray(x, dtype=np.float32)
        mask = np.asarray(mask, dtype=bool)
        self.check_input(x, mask)
        parts = [self._score_chunk(x[i:i + CHUNK], mask[i:i + CHUNK], reasons)
                 for i in range(0, len(x), CHUNK)] or [self._score_chunk(x, mask, reasons)]
        prob = np.concatenate([p[0] for p in parts]).astype(np.float32)
        anomaly = np.concatenate([p[1] for p in parts]).astype(np.float32)
        codes = [row for p in parts for row in p[2]]
        decision = self.policy.decide(prob, anomaly, self.amounts(x))
        return ScoreResult(prob, anomaly, decision, codes)

    def amounts(self, x: np.ndarray) -> np.ndarray | None:
        """The scored transactions' amounts, read back from their features (None: no such
        feature in this spec, and the policy's cost rule is skipped)."""
        if self._amount_column is None:
            return None
        return np.expm1(x[:, -1, self._amount_column].astype(np.float64))

    def _score_chunk(self, x: np.ndarray, mask: np.ndarray, reasons: int):
        if self._sessions is not None:
            onnx_blocks = None if self.batch_invariant else self.block_rows
            raw, anomaly = _in_blocks(self._onnx_forward, onnx_blocks, np.concatenate,
                                      np.ascontiguousarray(x), np.ascontiguousarray(mask)).T
            # Only the reason codes need torch, and only the last step of each sequence.
            current = torch.from_numpy(np.array(x[:, -1, :], dtype=np.float32))
        else:
            xt = torch.from_numpy(x).to(self.device, self.dtype)
            mt = torch.from_numpy(mask).to(self.device)
            raw, anomaly = self._blocked(self.models, xt, mt).cpu().numpy().T
            current = xt[:, -1, :]
        prob = self.calibration.apply(raw, anomaly)
        codes = self._reason_codes(current, reasons) if reasons > 0 else []
        return prob, anomaly, codes

    def _onnx_forward(self, x: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """`FusedModels.forward` through the ONNX graphs: [B, 2] (probability, anomaly)."""
        sequence, autoencoder = self._sessions
        logit = sequence.run(None, {"x": x, "mask": mask})[0]
        residual = autoencoder.run(None, {"current": np.ascontiguousarray(x[:, -1, :])})[0]
        # scipy's sigmoid takes every element alike; torch's vectorised one rounds the elements
        # past the last full vector differently, so a row's bits moved with the batch's size.
        probability = expit(logit)
        return np.stack([probability, anomaly_scores(residual, self._anomaly_loc,
                                                     self._anomaly_scale)], axis=1)

    def _onnx_invariant(self, rows: int = 300, seed: int = 0) -> bool:
        """Whether the ONNX graphs give every row of a `rows`-row batch the same bits in
        batches of other sizes (1 to 129 rows, at several offsets)."""
        from fraudops.models.onnx_graph import check_inputs

        x, mask = check_inputs(self.sequence_model, self.seq_len, rows, seed)
        whole = self._onnx_forward(x, mask)
        for size in (1, 2, 7, 16, 63, 64, 65, 129):
            for start in (0, 5, rows - size):
                part = self._onnx_forward(x[start:start + size], mask[start:start + size])
                if not np.array_equal(part, whole[start:start + size]):
                    return False
        return True

    def _blocked(self, module, *inputs: torch.Tensor) -> torch.Tensor:
        """`module(*inputs)`, in passes of exactly `block_rows` rows when set (see `Scorer`)."""
        return _in_blocks(module, self.block_rows, torch.cat, *inputs)

    def _reason_codes(self, current: torch.Tensor, top: int) -> list[list[str]]:
        # The features the autoencoder reconstructs worst are the ones that make the
        # transaction unusual: an explanation an analyst can check against the raw data.
        errors = (self._blocked(self.autoencoder, current)
                  - self.autoencoder.normalize(current)).pow(2)
        top = min(top, errors.shape[1])
        index = errors.topk(top, dim=1).indices.cpu().numpy()
        names = self.feature_names or [f"f{i}" for i in range(errors.shape[1])]
        return [[names[j] for j in row] for row in index]


def _in_blocks(forward, size: int | None, concat, *inputs):
    """`forward(*inputs)`, in passes of exactly `size` rows when set, the last one padded with
    copies of the first row: torch tensors (`concat` torch.cat) or numpy arrays
    (np.concatenate)."""
    if size is None:
        return forward(*inputs)
    rows = len(inputs[0])
    pad = -rows % size
    if pad:
        inputs = tuple(concat([t, t[[0] * pad]]) for t in inputs)
    return concat([forward(*(t[i:i + size] for t in inputs))
                   for i in range(0, rows + pad, size)])[:rows]


def _onnx_session(bundle: ModelBundle, threads: int):
    """An ONNX Runtime session over the bundle's graph (exported now when it has none, or when
    it was exported with another output than the current code's)."""
    from fraudops.models.onnx_graph import OnnxExportError, export_onnx, graph_output, session

    try:
        if bundle.onnx is not None:
            current = session(bundle.onnx, threads)
            output = current.get_outputs()[0].name
            if output == graph_output(bundle.kind):
                return current
            log.warning("the %s model's ONNX graph is an older export (output %r, not %r): "
                        "exporting it now", bundle.kind, output, graph_output(bundle.kind))
        else:
            log.warning("the %s model has no ONNX graph (trained before they were exported, or "
                        "the export was refused): exporting it now", bundle.kind)
        try:
            graph = export_onnx(bundle)
        except OnnxExportError as error:
            raise BackendUnavailableError(f"{error}; serve it with backend=torch") from error
        return session(graph, threads)
    except ImportError as error:
        raise BackendUnavailableError(
            "the onnxruntime backend needs the onnxruntime package") from error


def _check_pair(sequence: ModelBundle, autoencoder: ModelBundle) -> None:
    if sequence.kind != SEQUENCE_KIND or autoencoder.kind != AUTOENCODER_KIND:
        raise ModelLoadError(f"expected ({SEQUENCE_KIND}, {AUTOENCODER_KIND}) models, got "
                             f"({sequence.kind}, {autoencoder.kind})")
    if sequence.feature_spec.get("fingerprint") != autoencoder.feature_spec.get("fingerprint") \
            or sequence.module.config.input_dim != autoencoder.module.config.input_dim:
        raise ModelLoadError("the sequence model and the autoencoder were trained on different "
                             "feature specs; train and register them together")


def check_feature_spec(bundle: ModelBundle, expected_version: str | None, uri: str) -> None:
    """Refuse a model whose feature-spec version differs from the running code's."""
    if expected_version is None:
        from fraudops.features import FEATURE_SPEC_VERSION

        expected_version = FEATURE_SPEC_VERSION
    if bundle.feature_spec_version != str(expected_version):
        raise FeatureSpecMismatchError(
            f"{uri} was trained with feature-spec version {bundle.feature_spec_version!r} but "
            f"this code computes version {expected_version!r}; retrain or deploy matching code")


def load_scorer(sequence_uri: str, autoencoder_uri: str, *, device: str = "auto",
                expected_spec_version: str | None = None, cache_dir: str | Path | None = None,
                exact: bool = True, block_rows: int | None = None, backend: str = "torch",
                threads: int = 1) -> Scorer:
    """Load both models (MLflow URI or local dir) into a `Scorer` on the chosen device
    (`exact`: float64 forward passes; `block_rows`: float32 passes of that many rows;
    `backend`: torch or onnxruntime; see `Scorer`)."""
    target = pick_device(device)
    bundles, sources = {}, {}
    for role, uri in (("sequence", sequence_uri), ("autoencoder", autoencoder_uri)):
        directory, info = resolve_model_uri(uri, cache_dir)
        bundle = load_checkpoint(directory, device=target)
        check_feature_spec(bundle, expected_spec_version, uri)
        bundles[role], sources[role] = bundle, info
        log.info("loaded %s model from %s (version %s)", role, uri, info.version)
    return Scorer(bundles["sequence"], bundles["autoencoder"], device=target, sources=sources,
                  exact=exact, block_rows=block_rows, backend=backend, threads=threads)


def resolve_model_uri(uri: str, cache_dir: str | Path | None = None
                      ) -> tuple[Path, LoadedModelInfo]:
    """A local directory holding the model at `uri`, and where it came from."""
    local = Path(uri.removeprefix("file://"))
    if uri.startswith("file://") or not _URI_SCHEME.match(uri):
        if not local.exists():
            raise ModelLoadError(f"model directory {local} does not exist")
        return find_checkpoint(local), LoadedModelInfo(uri, run_id=_mlmodel_run_id(local))
    return _download_mlflow_model(uri, cache_dir)


def _download_mlflow_model(uri: str, cache_dir: str | Path | None
                           ) -> tuple[Path, LoadedModelInfo]:
    try:
        import mlflow
        from mlflow.exceptions import MlflowException
    except ImportError as error:  # serving/training extras bring mlflow
        raise ModelLoadError(f"{uri}: loading MLflow URIs needs the mlflow package") from error
    try:
        name, version, run_id = _registry_info(uri)
        # Download the resolved version, not the alias: it may move while we download.
        pinned = f"models:/{name}/{version}" if name and version else uri
        dst = tempfile.mkdtemp(prefix="fraudops-model-", dir=cache_dir)
        path = mlflow.artifacts.download_artifacts(artifact_uri=pinned, dst_path=dst)
    except MlflowException as error:
        raise ModelLoadError(f"cannot fetch {uri}: {error.message}") from error
    run_id = run_id or _mlmodel_run_id(Path(path))
    return find_checkpoint(path), LoadedModelInfo(uri, name, version, run_id)


def _registry_info(uri: str) -> tuple[str | None, str | None, str | None]:
    """(name, version, run id) for a ``models:/`` URI; Nones otherwise."""
    if not uri.startswith("models:/"):
        return None, None, None
    from mlflow import MlflowClient

    ref = uri[len("models:/"):].strip("/")
    client = MlflowClient()
    if "@" in ref:
        name, alias = ref.split("@", 1)
        mv = client.get_model_version_by_alias(name, alias)
    else:
        name, _, version = ref.partition("/")
        if not version.isdigit():
            return name, None, None  # stage names ("Production") are deprecated
        mv = client.get_model_version(name, version)
    return mv.name, str(mv.version), mv.run_id


def _mlmodel_run_id(path: Path) -> str | None:
    """The MLflow run id recorded in an MLmodel file next to or above the checkpoint."""
    import yaml

    for candidate in (path / "MLmodel", path.parent / "MLmodel", path.parent.parent / "MLmodel"):
        if candidate.is_file():
            return (yaml.safe_load(candidate.read_text()) or {}).get("run_id")
    return None
