"""Settings of the local platform commands (`fraudops demo`, `fraudops up`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from fraudops.settings import CommonSettings
from local.layout import DEFAULT_HOME


class LocalSettings(CommonSettings):
    """``FRAUDOPS_HOME`` is the state dir; the local platform keeps it apart from a unit's
    default (``.fraudops``) so a demo never mixes with other local state."""

    home: Path = Field(default=DEFAULT_HOME, description="State dir of the local platform.")
