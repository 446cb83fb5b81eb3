"""Error answers that are small, 4xx for bad input, and say nothing about the inside.

- JSON bodies are parsed strictly (`strict_json`): NaN, Infinity, numbers that overflow to
  infinity, integers too long to convert, nesting too deep, invalid UTF-8 and lone surrogates
  are a ``json_invalid`` 422, never a 500 further on.
- Validation errors keep type, location and message (truncated) and a short scalar `input`;
  large inputs are never echoed.
- 503s say which dependency is unavailable, not its address or its driver's message (those go
  to the log); anything unexpected is a bare 500 (with the traceback in the log).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import FastAPI, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from sqlalchemy.exc import SQLAlchemyError

from fraudops.protocol import PredictorUnavailableError
from serving.exceptions import KafkaUnavailableError, RulesUnavailableError, StoreUnavailableError

log = logging.getLogger(__name__)
#: Most validation errors listed in one answer, and characters kept of each text in them.
MAX_ERRORS = 20
MAX_TEXT = 200
#: Longest scalar `input` echoed back in a validation error.
MAX_INPUT = 64


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a valid JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("number out of range")
    return value


def strict_json(body: bytes) -> Any:
    """Parse a JSON body; raises `json.JSONDecodeError` for anything that is not plain JSON."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise json.JSONDecodeError("invalid UTF-8", "", error.start) from None
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except json.JSONDecodeError as error:
        raise json.JSONDecodeError(error.msg, "", error.pos) from None
    except (ValueError, RecursionError) as error:  # NaN, 1e999, 10**5000, [[[[...]]]]
        raise json.JSONDecodeError(str(error)[:MAX_TEXT] or type(error).__name__, "", 0) from None
    if _has_lone_surrogate(value):
        raise json.JSONDecodeError("lone surrogate in a string", "", 0)
    return value


def _has_lone_surrogate(value: Any) -> bool:
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


class StrictJSONRequest(Request):
    """A request whose `json()` is `strict_json`."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = strict_json(await self.body())
        return self._json


class StrictJSONRoute(APIRoute):
    """Route class of every gateway router: JSON bodies go through `strict_json`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict_handler


def _text(value: Any) -> str:
    text = str(value)
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + "..."


def small_error(error: dict[str, Any]) -> dict[str, Any]:
    """One validation error without large inputs (JSON-safe)."""
    loc = [part if isinstance(part, int) else _text(part)[:64] for part in error.get("loc", ())]
    out: dict[str, Any] = {"type": _text(error.get("type", "")), "loc": loc,
                           "msg": _text(error.get("msg", ""))}
    if _short_scalar(error.get("input")):
        out["input"] = error["input"]
    if isinstance(error.get("ctx"), dict):
        out["ctx"] = {_text(k)[:64]: _text(v) for k, v in list(error["ctx"].items())[:5]}
    return out


def _short_scalar(value: Any) -> bool:
    if isinstance(value, str):
        return len(value) <= MAX_INPUT
    if isinstance(value, bool | int):
        return value.bit_length() <= 64
    return isinstance(value, float) and math.isfinite(value)


def _validation_failed(_: Request, error: RequestValidationError) -> JSONResponse:
    errors = error.errors()
    detail = [small_error(item) for item in errors[:MAX_ERRORS]]
    if len(errors) > MAX_ERRORS:
        detail.append({"type": "too_many_errors", "loc": [],
                       "msg": f"{len(errors) - MAX_ERRORS} more errors not shown"})
    return JSONResponse(status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
                        content={"detail": detail})


def _unavailable(what: str) -> JSONResponse:
    return JSONResponse(status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
                        content={"detail": what}, headers={"Retry-After": "5"})


def _kafka_down(request: Request, error: Exception) -> JSONResponse:
    request.app.state.services.metrics.kafka_errors.inc()
    log.warning("Kafka unavailable: %s", error)
    return _unavailable("Kafka did not acknowledge the record; nothing was accepted, retry later")


def _predictor_down(_: Request, error: Exception) -> JSONResponse:
    log.warning("predictor unavailable: %s", error)
    return _unavailable("the predictor is unavailable; retry later")


def _store_down(_: Request, error: Exception) -> JSONResponse:
    log.warning("decision store unavailable: %s: %s", type(error).__name__, error)
    return _unavailable("the decision store is unavailable; retry later")


def _rules_down(_: Request, error: Exception) -> JSONResponse:
    log.error("rule set configured but not in force, refusing to score: %s", error)
    return _unavailable("the configured rule set could not be put in force (the gateway's log "
                        "says why); refusing to decide without it")


def add_error_handlers(app: FastAPI) -> None:
    """Install the handlers above on `app`."""
    app.add_exception_handler(RequestValidationError, _validation_failed)
    app.add_exception_handler(KafkaUnavailableError, _kafka_down)
    app.add_exception_handler(PredictorUnavailableError, _predictor_down)
    app.add_exception_handler(StoreUnavailableError, _store_down)
    app.add_exception_handler(RulesUnavailableError, _rules_down)
    app.add_exception_handler(SQLAlchemyError, _store_down)
