"""Client of the `fraud-scorer` predictor (V2 binary protocol) for the synchronous score route.

The gateway learns the served model's sequence length and features from the predictor's
metadata and refuses to score when it cannot compute the same features (other spec version or
fingerprint): a wrong answer is worse than a 503.
"""

from __future__ import annotations

import asyncio

import httpx
import numpy as np

from fraudops import protocol
from fraudops.protocol import PredictorUnavailableError
from fraudops.served_model import ModelDescription, read_served_model


class PredictorClient:
    """Async V2 client with the served model's description cached until its version changes."""

    def __init__(self, base_url: str, model_name: str, timeout_s: float) -> None:
        self._model_name = model_name
        self._client = httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout_s)
        self._served: ModelDescription | None = None
        self._lock = asyncio.Lock()

    async def features(self) -> ModelDescription:
        """What the served model expects (fetched once, then after each version change)."""
        served = self._served
        if served is not None:
            return served
        async with self._lock:
            if self._served is None:
                self._served = await self._fetch()
            return self._served

    async def _fetch(self) -> ModelDescription:
        doc = await self._get_json(protocol.metadata_path(self._model_name))
        try:
            return read_served_model(doc)
        except protocol.ProtocolError as error:
            raise PredictorUnavailableError(f"cannot score with the served model: {error}"
                                            ) from error

    async def _get_json(self, path: str) -> dict:
        try:
            response = await self._client.get(path)
        except httpx.HTTPError as error:
            raise PredictorUnavailableError(f"predictor unreachable: {error!r}") from error
        if response.status_code != 200:
            raise PredictorUnavailableError(
                f"predictor answered {response.status_code} to GET {path}: {response.text[:200]}")
        try:
            doc = response.json()
        except ValueError as error:
            raise PredictorUnavailableError(f"predictor metadata is not JSON: {error}") from error
        if not isinstance(doc, dict):
            raise PredictorUnavailableError("predictor metadata is not a JSON object")
        return doc

    async def score(self, x: np.ndarray, mask: np.ndarray) -> protocol.ScoreBatch:
        """Score sequences; a changed model version invalidates the cached description."""
        body, headers = protocol.encode_request(x, mask, binary=True)
        try:
            response = await self._client.post(protocol.infer_path(self._model_name),
                                               content=body, headers=headers)
        except httpx.HTTPError as error:
            raise PredictorUnavailableError(f"predictor unreachable: {error!r}") from error
        if response.status_code != 200:
            self._served = None  # the model may have changed under us: re-read its metadata
            raise PredictorUnavailableError(
                f"predictor answered {response.status_code}: {response.text[:300]}")
        try:
            batch = protocol.decode_response(response.content, response.headers)
        except protocol.ProtocolError as error:
            raise PredictorUnavailableError(f"unusable predictor answer: {error}") from error
        served = self._served
        if served is not None and batch.model_version and batch.model_version != served.label:
            self._served = None
        return batch

    async def ready(self) -> bool:
        try:
            response = await self._client.get(f"/v2/models/{self._model_name}/ready")
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def aclose(self) -> None:
        await self._client.aclose()
