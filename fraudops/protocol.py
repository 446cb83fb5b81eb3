"""Wire protocol of the fraud predictor: KServe V2 / Open Inference Protocol, model `fraud-scorer`.

Shared by the predictor (server side) and its clients (the stream consumer, the gateway), with no
dependency on kserve so that a client image does not need it.

Request inputs:  ``sequences`` FP32 [B, K, F] and ``mask`` BOOL [B, K] (True = a real transaction,
False = front padding; the last column is the scored transaction).
Response outputs: ``fraud_probability`` FP32 [B], ``anomaly_score`` FP32 [B], ``decision`` BYTES [B]
(a `fraudops.schema.Decision`) and ``reason_codes`` BYTES [B] (comma-separated feature names).

Both encodings are supported: plain JSON and the binary tensor extension, where the JSON header is
followed by the raw little-endian tensors and its length travels in the
``Inference-Header-Content-Length`` header. `encode_request` asks for binary outputs when it sends
binary inputs, and `decode_response` reads either form.

Model metadata (``GET /v2/models/fraud-scorer``) carries ``parameters`` with the feature-spec
version and fingerprint, the feature names and the served model versions;
`ModelInfo.from_metadata` reads it and `ModelInfo.check_compatible` lets a client refuse a
predictor built for other features (`fraudops.served_model` does both for every client).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MODEL_NAME = "fraud-scorer"
INPUT_SEQUENCES = "sequences"
INPUT_MASK = "mask"
OUTPUT_FRAUD_PROBABILITY = "fraud_probability"
OUTPUT_ANOMALY_SCORE = "anomaly_score"
OUTPUT_DECISION = "decision"
OUTPUT_REASON_CODES = "reason_codes"
OUTPUTS = (OUTPUT_FRAUD_PROBABILITY, OUTPUT_ANOMALY_SCORE, OUTPUT_DECISION, OUTPUT_REASON_CODES)
#: Binary tensor extension: length of the JSON part at the start of the body.
HEADER_CONTENT_LENGTH = "Inference-Header-Content-Length"
#: Metadata parameter names.
PARAM_SPEC_VERSION = "feature_spec_version"
PARAM_SPEC_FINGERPRINT = "feature_spec_fingerprint"
PARAM_SEQUENCE_VERSION = "sequence_model_version"
PARAM_AUTOENCODER_VERSION = "autoencoder_model_version"
PARAM_FEATURE_NAMES = "feature_names"
#: Where the models run (``cpu``, ``cuda:0``): tells an operator the GPU is really used.
PARAM_DEVICE = "device"

_NUMPY_TYPES = {"FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"), "BOOL": np.dtype("bool"),
                "INT64": np.dtype("<i8"), "INT32": np.dtype("<i4"), "UINT8": np.dtype("u1")}


class ProtocolError(ValueError):
    """A request or response does not follow the fraud-scorer protocol."""


class PredictorUnavailableError(Exception):
    """A client (the stream consumer, the gateway) cannot get a usable answer from the
    predictor now: down, unreachable, slow or overloaded. The consumer retries it with back-off,
    the gateway answers 503."""


def infer_path(model_name: str = MODEL_NAME) -> str:
    """URL path of the V2 inference endpoint."""
    return f"/v2/models/{model_name}/infer"


def metadata_path(model_name: str = MODEL_NAME) -> str:
    """URL path of the V2 model-metadata endpoint."""
    return f"/v2/models/{model_name}"


@dataclass(frozen=True)
class ScoreBatch:
    """Decoded predictor answer, one entry per requested sequence."""

    fraud_probability: np.ndarray
    anomaly_score: np.ndarray
    decision: list[str]
    reason_codes: list[tuple[str, ...]]
    request_id: str | None = None
    model_version: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.decision)


@dataclass(frozen=True)
class ModelInfo:
    """What a client must know about the served model (from the V2 metadata endpoint)."""

    seq_len: int
    n_features: int
    feature_spec_version: str | None
    feature_spec_fingerprint: str | None
    sequence_model_version: str | None = None
    autoencoder_model_version: str | None = None
    #: The served model's feature names, in order (empty when the predictor does not say).
    feature_names: tuple[str, ...] = ()
    #: The V2 ``versions`` of the metadata: what the predictor's answers carry as model version.
    versions: tuple[str, ...] = ()

    @property
    def model_versions(self) -> str:
        """``"<sequence>/<autoencoder>"`` model versions (``?`` for one not known)."""
        return f"{self.sequence_model_version or '?'}/{self.autoencoder_model_version or '?'}"

    @classmethod
    def from_metadata(cls, doc: Mapping[str, Any]) -> ModelInfo:
        """Read the metadata document of ``GET /v2/models/fraud-scorer``."""
        inputs = {item.get("name"): item for item in doc.get("inputs", [])}
        shape = inputs.get(INPUT_SEQUENCES, {}).get("shape")
        if not isinstance(shape, list) or len(shape) != 3:
            raise ProtocolError(f"metadata has no 3-d '{INPUT_SEQUENCES}' input: {doc!r:.300}")
        params = doc.get("parameters") or {}
        return cls(seq_len=int(shape[1]), n_features=int(shape[2]),
                   feature_spec_version=_opt_str(params.get(PARAM_SPEC_VERSION)),
                   feature_spec_fingerprint=_opt_str(params.get(PARAM_SPEC_FINGERPRINT)),
                   sequence_model_version=_opt_str(params.get(PARAM_SEQUENCE_VERSION)),
                   autoencoder_model_version=_opt_str(params.get(PARAM_AUTOENCODER_VERSION)),
                   feature_names=_names(params.get(PARAM_FEATURE_NAMES)),
                   versions=tuple(str(v) for v in doc.get("versions") or ()))

    def check_compatible(self, *, n_features: int, spec_fingerprint: str | None = None,
                         spec_version: str | None = None) -> None:
        """Raise `ProtocolError` when the predictor expects other features than the client has."""
        problems = []
        if n_features != self.n_features:
            problems.append(f"feature count {self.n_features} != client's {n_features}")
        if spec_version and self.feature_spec_version and spec_version != self.feature_spec_version:
            problems.append(f"feature-spec version {self.feature_spec_version!r} != "
                            f"client's {spec_version!r}")
        if (spec_fingerprint and self.feature_spec_fingerprint
                and spec_fingerprint != self.feature_spec_fingerprint):
            problems.append(f"feature-spec fingerprint {self.feature_spec_fingerprint!r} != "
                            f"client's {spec_fingerprint!r}")
        if problems:
            raise ProtocolError("predictor serves an incompatible model: " + "; ".join(problems))


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _names(value: Any) -> tuple[str, ...]:
    """Feature names sent as one comma-separated string (the predictor's form) or a list."""
    if not value:
        return ()
    items = value.split(",") if isinstance(value, str) else value
    return tuple(str(n) for n in items if n)


# --------------------------------------------------------------------------------------------
# Client side
# --------------------------------------------------------------------------------------------


def encode_request(x: np.ndarray, mask: np.ndarray, *, binary: bool = True,
                   request_id: str | None = None) -> tuple[bytes, dict[str, str]]:
    """Encode a batch of sequences as a V2 inference request body and its headers.

    `x` is float32 [B, K, F], `mask` bool [B, K]. With `binary`, tensors travel raw after the
    JSON header and the outputs are requested in binary too.
    """
    if not binary:
        x, mask = _request_arrays(x, mask)
        doc: dict[str, Any] = {"id": request_id or uuid.uuid4().hex, "inputs": [
            {"name": n, "datatype": t, "shape": list(a.shape), "data": a.reshape(-1).tolist()}
            for n, t, a in ((INPUT_SEQUENCES, "FP32", x), (INPUT_MASK, "BOOL", mask))]}
        return json.dumps(doc, separators=(",", ":")).encode(), {"content-type": "application/json"}
    parts, headers = encode_request_parts(x, mask, request_id=request_id)
    del headers["content-length"]  # the HTTP client sets it for a body in one piece
    return b"".join(parts), headers


def encode_request_parts(x: np.ndarray, mask: np.ndarray, *, request_id: str | None = None
                         ) -> tuple[list[bytes | memoryview], dict[str, str]]:
    """The binary V2 request as buffers sent one after the other: the JSON header, then the
    tensors' own memory (no copy; views of `x` and `mask` when they already are contiguous
    float32 and bool), and its headers, ``content-length`` included. `b"".join(parts)` is
    `encode_request`'s body. A batch's sequences are megabytes (5.7 kB a row): copying them
    twice into one body cost the consumer 0.1 to 3 ms per 500 rows, depending on how the
    allocator reused its memory (fresh memory: page faults)."""
    x, mask = _request_arrays(x, mask)
    tensors = ((INPUT_SEQUENCES, "FP32", x), (INPUT_MASK, "BOOL", mask))
    doc: dict[str, Any] = {
        "id": request_id or uuid.uuid4().hex,
        "inputs": [{"name": n, "datatype": t, "shape": list(a.shape),
                    "parameters": {"binary_data_size": a.nbytes}} for n, t, a in tensors],
        "parameters": {"binary_data_output": True}}
    header = json.dumps(doc, separators=(",", ":")).encode()
    parts = [header, *(memoryview(a).cast("B") for _, _, a in tensors)]
    headers = {"content-type": "application/octet-stream", HEADER_CONTENT_LENGTH: str(len(header)),
               "content-length": str(len(header) + x.nbytes + mask.nbytes)}
    return parts, headers


def _request_arrays(x: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.ascontiguousarray(x, dtype="<f4")
    mask = np.ascontiguousarray(mask, dtype=bool)
    if x.ndim != 3 or mask.shape != x.shape[:2]:
        raise ProtocolError(f"expected sequences [B, K, F] and mask [B, K]; got {x.shape} and "
                            f"{mask.shape}")
    return x, mask


def decode_response(body: bytes, headers: Mapping[str, str]) -> ScoreBatch:
    """Decode a V2 inference response (JSON or binary extension) into a `ScoreBatch`."""
    json_length = _header(headers, HEADER_CONTENT_LENGTH)
    split = int(json_length) if json_length is not None else len(body)
    try:
        doc = json.loads(body[:split])
    except ValueError as error:
        raise ProtocolError(f"response is not V2 JSON: {error}") from error
    tensors = _read_tensors(doc.get("outputs", []), body, split)
    missing = [name for name in OUTPUTS if name not in tensors]
    if missing:
        raise ProtocolError(f"response lacks output(s): {', '.join(missing)}")
    codes = [tuple(c for c in str(item).split(",") if c) for item in tensors[OUTPUT_REASON_CODES]]
    return ScoreBatch(
        fraud_probability=np.asarray(tensors[OUTPUT_FRAUD_PROBABILITY], dtype=np.float32),
        anomaly_score=np.asarray(tensors[OUTPUT_ANOMALY_SCORE], dtype=np.float32),
        decision=[str(item) for item in tensors[OUTPUT_DECISION]],
        reason_codes=codes,
        request_id=doc.get("id"),
        model_version=doc.get("model_version"),
        parameters=dict(doc.get("parameters") or {}),
    )


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    return next((v for k, v in headers.items() if k.lower() == wanted), None)


def _read_tensors(outputs: Sequence[Mapping[str, Any]], body: bytes,
                  offset: int) -> dict[str, Any]:
    tensors: dict[str, Any] = {}
    for item in outputs:
        size = (item.get("parameters") or {}).get("binary_data_size")
        if "data" in item:
            data = item["data"]
            tensors[item["name"]] = ([_text(v) for v in data] if item["datatype"] == "BYTES"
                                     else np.asarray(data))
        elif size is not None:
            tensors[item["name"]] = decode_binary(body[offset:offset + size], item["datatype"])
            offset += size
        else:
            raise ProtocolError(f"output {item.get('name')!r} has neither data nor binary size")
    return tensors


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# --------------------------------------------------------------------------------------------
# Binary tensor layout (both sides)
# --------------------------------------------------------------------------------------------


def decode_binary(raw: bytes, datatype: str) -> np.ndarray | list[str]:
    """Flat contents of one binary tensor: a numpy array, or a list of str for BYTES."""
    if datatype == "BYTES":
        return unpack_bytes(raw)
    dtype = _NUMPY_TYPES.get(datatype)
    if dtype is None:
        raise ProtocolError(f"unsupported datatype {datatype!r}")
    if len(raw) % dtype.itemsize:
        raise ProtocolError(f"{len(raw)} bytes is not a whole number of {datatype} elements")
    return np.frombuffer(raw, dtype=dtype)


def pack_bytes(items: Sequence[str]) -> bytes:
    """BYTES tensor layout: each element as a 4-byte little-endian length and its UTF-8 bytes."""
    parts = []
    for item in items:
        data = item.encode()
        parts.append(len(data).to_bytes(4, "little"))
        parts.append(data)
    return b"".join(parts)


def unpack_bytes(raw: bytes) -> list[str]:
    """Inverse of `pack_bytes`."""
    items, pos = [], 0
    while pos < len(raw):
        if pos + 4 > len(raw):
            raise ProtocolError("truncated BYTES tensor")
        size = int.from_bytes(raw[pos:pos + 4], "little")
        pos += 4
        if pos + size > len(raw):
            raise ProtocolError("truncated BYTES tensor")
        items.append(raw[pos:pos + size].decode())
        pos += size
    return items
