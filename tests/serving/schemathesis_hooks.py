"""Schemathesis hooks of the gateway's run (`test_gateway.py`): bodies parsers choke on.

Loaded by the schemathesis CLI through ``SCHEMATHESIS_HOOKS=schemathesis_hooks`` (this folder on
``PYTHONPATH``). Each JSON body the schema generates is sent as generated, or with one of its
values replaced by NaN, Infinity, -Infinity, an integer of 400 digits or a string holding a lone
surrogate, written as an attacker would (``json.dumps(allow_nan=True)``: bare ``NaN`` and
``\\ud800`` escapes). Where ``POISON_LOG`` names a file, every poisoned body is appended to it,
so the test can tell that they were generated.
"""

from __future__ import annotations

import json
import os
from typing import Any

import schemathesis
from hypothesis import strategies as st

POISONS = (float("nan"), float("inf"), float("-inf"), 10**400, "t\ud800", "\udfff x", "\ud83d")


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Where a value sits in `value`: the paths of every leaf, list item and dict value."""
    if isinstance(value, dict):
        return [p for key, item in value.items() for p in [(*prefix, key),
                                                            *_paths(item, (*prefix, key))]]
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in [(*prefix, i),
                                                            *_paths(item, (*prefix, i))]]
    return []


def _replaced(value: Any, path: tuple, poison: Any) -> Any:
    if not path:
        return poison
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {k: _replaced(v, rest, poison) if k == head else v for k, v in value.items()}
    return [_replaced(v, rest, poison) if i == head else v for i, v in enumerate(value)]


def _encode(body: Any) -> bytes:
    raw = json.dumps(body, allow_nan=True).encode()  # ensure_ascii: surrogates as \\udXXX
    if log := os.environ.get("POISON_LOG"):
        with open(log, "ab") as out:
            out.write(raw[:500] + b"\n")
    return raw


@schemathesis.hook
def flatmap_body(context: schemathesis.HookContext, body: Any) -> st.SearchStrategy:
    paths = _paths(body) or [()]
    poisoned = st.tuples(st.sampled_from(paths), st.sampled_from(POISONS)).map(
        lambda choice: _encode(_replaced(body, *choice)))
    return st.one_of(st.just(body), poisoned)
