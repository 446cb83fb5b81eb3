"""The declarative column mapping that turns a user's table into the platform's layout.

A mapping is a small YAML file (see ``examples/mappings/``)::

    columns:                  # platform field <- source column
      amount: Amount
    timestamp: {column: Time, start: "2013-09-01T00:00:00Z"}   # seconds from a start date
    label: {column: Class, positive: [1], delay: 30 days}     # or time: {column: ...}
    currency: {value: EUR}    # a constant ...
    channel: {column: type, map: {CASH_OUT: cash_out}}         # ... or a column with a value map
    extra: {pattern: "^V[0-9]+$"}                              # passthrough numeric features

Only ``columns.amount`` and ``timestamp`` are required. Without a transaction id column one is
derived from the row number; without an account id each transaction is its own history.
With ``label.time`` (a column, read like ``timestamp``) or ``label.delay`` (a fixed time after
the transaction), the import also writes the label stream: when each label became known.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import pandas as pd
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from fraudops.data.exceptions import MappingError
from fraudops.schema import Channel, MerchantCategory

CURRENCY_PATTERN = re.compile(r"^[A-Z]{3}$")
COUNTRY_PATTERN = re.compile(r"^[A-Z]{2}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Columns(_Strict):
    """Plain renames: platform field <- source column. Unset optional fields stay unknown."""

    amount: str
    transaction_id: str | None = None
    account_id: str | None = None
    merchant_id: str | None = None
    device_id: str | None = None
    fraud_scenario: str | None = Field(
        default=None, description="Ground truth of synthetic data (text, kept as is)."
    )


class TimestampMapping(_Strict):
    """Event time: a datetime string column, or a number of `unit`s after `start`."""

    column: str
    format: str | None = Field(
        default=None,
        description="strftime format, 'ISO8601' or 'mixed'; None lets pandas infer it.",
    )
    timezone: str = Field(default="UTC", description="Zone of timestamps that carry none.")
    start: datetime | None = Field(
        default=None, description="When set, the column holds offsets from this instant."
    )
    unit: Literal["ms", "s", "min", "h", "D"] = "s"

    @field_validator("start")
    @classmethod
    def _aware_start(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


LabelValue = str | int | float | bool


class LabelMapping(_Strict):
    """Which source values mean fraud; with `negative` set, any other known value is invalid."""

    column: str
    positive: list[LabelValue] = Field(default_factory=lambda: [1], min_length=1)
    negative: list[LabelValue] | None = None
    unknown: list[LabelValue] = Field(
        default_factory=list, description="Values that mean 'not labelled' (like a null)."
    )
    required: bool = Field(default=True, description="Drop rows whose label is missing.")
    time: TimestampMapping | None = Field(
        default=None, description="When each label became known (read like `timestamp`).")
    delay: str | None = Field(
        default=None, description="Or: every label known this long after its transaction "
                                  "(a pandas duration, e.g. '30 days', '72h').")

    @field_validator("delay")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                delay = pd.Timedelta(value)
            except ValueError as error:
                raise ValueError(f"not a duration: {value!r} ({error})") from None
            if pd.isna(delay) or delay < pd.Timedelta(0):
                raise ValueError(f"delay must be a duration >= 0, got {value!r}")
        return value

    @model_validator(mode="after")
    def _one_time(self) -> LabelMapping:
        if self.time is not None and self.delay is not None:
            raise ValueError("give at most one of 'time' (a column) or 'delay'")
        return self

    @property
    def timed(self) -> bool:
        """Whether the import writes a label stream (the labels have a time)."""
        return self.time is not None or self.delay is not None


class CodeMapping(_Strict):
    """A coded field (currency, channel, category, country): a constant or a mapped column.

    Source values are looked up in `map` first; values that are already valid codes pass
    through; anything else becomes `default` (or, without one, makes the row invalid for a
    required field and null for an optional one).
    """

    value: str | None = None
    column: str | None = None
    map: dict[str, str] = Field(default_factory=dict)
    default: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> CodeMapping:
        if (self.value is None) == (self.column is None):
            raise ValueError("give exactly one of 'value' (a constant) or 'column'")
        return self


class ExtraMapping(_Strict):
    """Passthrough numeric features: explicit columns and/or a regex over the source columns."""

    columns: list[str] = Field(default_factory=list)
    pattern: str | None = None
    fill_missing: float | None = Field(
        default=None, description="Value for missing features; None drops such rows."
    )

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as error:
                raise ValueError(f"not a valid regular expression: {error}") from error
        return value


class CsvOptions(_Strict):
    """How to read a CSV source (ignored for Parquet)."""

    separator: str | None = Field(default=None, description="None: ',' (tab for .tsv files).")
    encoding: str = "utf-8"
    decimal: str = Field(default=".", min_length=1, max_length=1)


#: What each coded field accepts, and its default when the mapping does not say.
CODE_FIELDS: dict[str, tuple[frozenset[str] | re.Pattern[str], str | None]] = {
    "currency": (CURRENCY_PATTERN, "USD"),
    "channel": (frozenset(c.value for c in Channel), Channel.OTHER.value),
    "merchant_category": (
        frozenset(c.value for c in MerchantCategory),
        MerchantCategory.OTHER.value,
    ),
    "country": (COUNTRY_PATTERN, None),
}


def is_valid_code(field: str, code: str) -> bool:
    """Whether `code` is an acceptable value of the coded platform field `field`."""
    allowed = CODE_FIELDS[field][0]
    if isinstance(allowed, re.Pattern):
        return bool(allowed.match(code))
    return code in allowed


class ColumnMapping(_Strict):
    """The whole mapping from a source table to the platform layout."""

    version: Literal[1] = 1
    columns: Columns
    timestamp: TimestampMapping
    label: LabelMapping | None = None
    amount_scale: float = Field(default=1.0, gt=0, description="e.g. 0.01 for amounts in cents.")
    currency: CodeMapping | None = None
    channel: CodeMapping | None = None
    merchant_category: CodeMapping | None = None
    country: CodeMapping | None = None
    extra: ExtraMapping | None = None
    csv: CsvOptions = Field(default_factory=CsvOptions)
    id_prefix: str = Field(
        default="row-",
        pattern=r"^[A-Za-z0-9_.:@/+-]*$",
        description="Prefix of transaction ids derived from the row number.",
    )

    @field_validator(*CODE_FIELDS)
    @classmethod
    def _valid_codes(cls, code: CodeMapping | None, info: ValidationInfo) -> CodeMapping | None:
        if code is None:
            return code
        field = info.field_name
        targets = {"value": code.value, "default": code.default}
        targets.update({f"map[{k!r}]": v for k, v in code.map.items()})
        problems = [
            f"{where}: {value!r} is not a valid {field}"
            for where, value in targets.items()
            if value is not None and not is_valid_code(field, value)
        ]
        if problems:
            raise ValueError("; ".join(problems))
        return code

    def code(self, field: str) -> CodeMapping | None:
        """The mapping of a coded field, or a constant default when the file omits it."""
        mapped = getattr(self, field)
        if mapped is not None:
            return mapped
        default = CODE_FIELDS[field][1]
        return CodeMapping(value=default) if default is not None else None

    def source_columns(self) -> dict[str, str]:
        """Named source columns (not passthrough features), keyed by what they feed."""
        named = {f: c for f, c in self.columns.model_dump().items() if c is not None}
        named["timestamp"] = self.timestamp.column
        if self.label is not None:
            named["label"] = self.label.column
            if self.label.time is not None:
                named["label_time"] = self.label.time.column
        for field in CODE_FIELDS:
            code = getattr(self, field)
            if code is not None and code.column is not None:
                named[field] = code.column
        return named


def load_mapping(path: str | Path) -> ColumnMapping:
    """Read and validate a YAML mapping file; `MappingError` says everything that is wrong."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise MappingError(f"mapping file not found: {path}") from error
    except yaml.YAMLError as error:
        raise MappingError(f"mapping file {path} is not valid YAML: {error}") from error
    return parse_mapping(raw, origin=str(path))


def parse_mapping(raw: object, origin: str = "mapping") -> ColumnMapping:
    """Validate an already-parsed mapping (a dict), e.g. one embedded in params.yaml."""
    if not isinstance(raw, dict):
        raise MappingError(
            f"{origin}: expected a mapping of keys to values, got {type(raw).__name__}"
        )
    try:
        return ColumnMapping.model_validate(raw)
    except ValidationError as error:
        lines = [
            f"  - {'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}"
            for e in error.errors()
        ]
        raise MappingError(
            f"{origin} is not a valid column mapping:\n" + "\n".join(lines)
        ) from error
