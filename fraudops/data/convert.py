"""Vectorised conversion of one chunk of a user's table into the platform layout.

`convert_chunk` never raises on bad values: each unusable row is dropped and counted under the
first reason it hits (`DROP_REASONS` order), so the counts add up to the rows dropped.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

from fraudops.data import tabular
from fraudops.data.labels import LABEL_COLUMNS
from fraudops.data.mapping import (
    CODE_FIELDS,
    CodeMapping,
    ColumnMapping,
    TimestampMapping,
    is_valid_code,
)
from fraudops.schema import (
    MAX_AMOUNT,
    MAX_TIMESTAMP,
    MIN_TIMESTAMP,
    Channel,
    LabelSource,
    MerchantCategory,
)

DROP_REASONS = (
    "missing transaction_id",
    "missing account_id",
    "missing timestamp",
    "unparseable timestamp",
    "timestamp out of range",
    "missing amount",
    "non-numeric amount",
    "negative amount",
    "absurd amount (infinite or above MAX_AMOUNT)",
    "missing label",
    "invalid label",
    "invalid currency",
    "non-finite passthrough feature",
)
_INVALID_ID_CHARS = re.compile(r"[^A-Za-z0-9_.:@/+-]+")
_MAX_ID_LENGTH = 128
_MAX_OFFSET_SECONDS = 4e9  # beyond ~126 years from the start no timestamp can be in range
# Coded fields that can never be null: unknown values fall back to "other" unless mapped.
_FALLBACK = {"channel": Channel.OTHER.value, "merchant_category": MerchantCategory.OTHER.value}
_UNIT_SECONDS = {"ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0, "D": 86400.0}
#: Why a label of a written row is not in the label stream (the row itself is kept).
LABEL_SKIP_REASONS = ("label time missing or unreadable", "label time out of range",
                      "label time before the transaction")


class Drops:
    """Per-row reason codes: 0 keeps the row, i > 0 drops it for DROP_REASONS[i - 1]."""

    def __init__(self, rows: int) -> None:
        self.codes = np.zeros(rows, dtype=np.int8)

    def flag(self, reason: str, mask: pd.Series | np.ndarray) -> None:
        mask = np.asarray(mask, dtype=bool)
        self.codes[(self.codes == 0) & mask] = DROP_REASONS.index(reason) + 1

    @property
    def keep(self) -> np.ndarray:
        return self.codes == 0

    def counts(self) -> Counter[str]:
        tally = np.bincount(self.codes, minlength=len(DROP_REASONS) + 1)
        return Counter({DROP_REASONS[i - 1]: int(n) for i, n in enumerate(tally) if i and n})


@dataclass
class ChunkResult:
    """A converted chunk (kept rows only, in the output schema) and what happened to the rest."""

    table: pa.Table | None = None
    labels: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int8))
    dropped: Counter[str] = field(default_factory=Counter)
    defaulted: Counter[str] = field(default_factory=Counter)
    #: The kept rows' labels with their time (when the mapping times labels), and why the
    #: others are missing from it.
    label_stream: pa.Table | None = None
    labels_skipped: Counter[str] = field(default_factory=Counter)


def as_text(series: pd.Series) -> pd.Series:
    """Source values as stripped strings; integral floats lose their '.0' (ids read as numbers)."""
    if pd.api.types.is_float_dtype(series):
        values = series.to_numpy(dtype="float64")
        finite = np.isfinite(values)
        if finite.any() and np.all(values[finite] == np.round(values[finite])):
            series = series.astype("Int64")
    text = series.astype("string").str.strip()
    return text.mask(text == "")


def identifiers(series: pd.Series) -> pd.Series:
    """Ids that fit `fraudops.schema.Identifier`: other characters become '_' (deterministic)."""
    text = as_text(series)
    if text.str.fullmatch(r"[A-Za-z0-9_.:@/+-]{1,128}").fillna(True).all():
        return text
    text = text.str.replace(_INVALID_ID_CHARS, "_", regex=True).str.slice(0, _MAX_ID_LENGTH)
    return text.mask(text == "")


def event_times(chunk: pd.DataFrame, mapping: ColumnMapping, drops: Drops) -> pd.Series:
    """UTC event times; flags missing, unparseable and out-of-range timestamps."""
    raw = chunk[mapping.timestamp.column]
    drops.flag("missing timestamp", _missing(raw))
    spec = mapping.timestamp
    times = parse_times(raw, spec)
    # An offset too far to be a time is readable, and out of range (below), not unparseable.
    drops.flag("unparseable timestamp",
               _offsets(raw, spec).isna() if spec.start is not None else times.isna())
    in_range = (times >= pd.Timestamp(MIN_TIMESTAMP)) & (times < pd.Timestamp(MAX_TIMESTAMP))
    drops.flag("timestamp out of range", ~in_range)
    return times


def parse_times(raw: pd.Series, spec: TimestampMapping) -> pd.Series:
    """A time column as UTC times (NaT where unreadable; offsets beyond any range too)."""
    if spec.start is not None:
        offsets = _offsets(raw, spec)
        offsets = offsets.where(offsets.abs() < _MAX_OFFSET_SECONDS)  # NaT: out of range
        return pd.Timestamp(spec.start) + pd.to_timedelta(offsets, unit="s")
    return _parse_datetimes(raw, spec.format, spec.timezone)


def _offsets(raw: pd.Series, spec: TimestampMapping) -> pd.Series:
    return pd.to_numeric(raw, errors="coerce").astype("float64") * _UNIT_SECONDS[spec.unit]


def _parse_datetimes(raw: pd.Series, fmt: str | None, timezone: str) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(raw):  # e.g. a Parquet timestamp column
        aware = raw if raw.dt.tz is not None else raw.dt.tz_localize(timezone, "NaT", "NaT")
        return aware.dt.tz_convert("UTC")
    text = as_text(raw)
    if timezone == "UTC":
        return pd.to_datetime(text, format=fmt, utc=True, errors="coerce")
    parsed = pd.to_datetime(text, format=fmt, errors="coerce")
    if not pd.api.types.is_datetime64_any_dtype(parsed):  # mixed offsets: honour each one
        return pd.to_datetime(text, format=fmt, utc=True, errors="coerce")
    if parsed.dt.tz is None:
        parsed = parsed.dt.tz_localize(timezone, ambiguous="NaT", nonexistent="NaT")
    return parsed.dt.tz_convert("UTC")


def amounts(chunk: pd.DataFrame, mapping: ColumnMapping, drops: Drops) -> pd.Series:
    """Amounts in currency units; flags missing, non-numeric, negative and absurd ones."""
    raw = chunk[mapping.columns.amount]
    values = pd.to_numeric(raw, errors="coerce").astype("float64") * mapping.amount_scale
    drops.flag("missing amount", _missing(raw))
    drops.flag("non-numeric amount", values.isna())
    drops.flag("negative amount", values < 0)
    drops.flag(
        "absurd amount (infinite or above MAX_AMOUNT)", ~np.isfinite(values) | (values > MAX_AMOUNT)
    )
    return values


def labels(chunk: pd.DataFrame, mapping: ColumnMapping, drops: Drops) -> np.ndarray:
    """1 fraud, 0 legitimate, tabular.UNKNOWN_LABEL where unlabelled (or no label column at all)."""
    if mapping.label is None:
        return np.full(len(chunk), tabular.UNKNOWN_LABEL, dtype=np.int8)
    spec = mapping.label
    raw = chunk[spec.column]
    if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
        missing, matches = raw.isna(), lambda wanted: raw.isin(_numbers(wanted))
    else:  # compare spellings: '1', 1.0 and ' 1 ' are one token, 'True' is 'true'
        tokens = _label_tokens(raw)
        missing = tokens.isna()
        matches = lambda wanted: tokens.isin(_label_tokens(pd.Series(wanted, dtype=object)))
    positive = matches(spec.positive).to_numpy()
    missing = missing.to_numpy() | (matches(spec.unknown).to_numpy() if spec.unknown else False)
    if spec.negative is not None:
        drops.flag("invalid label", ~missing & ~positive & ~matches(spec.negative).to_numpy())
    if spec.required:
        drops.flag("missing label", missing)
    out = positive.astype(np.int8)
    out[missing] = tabular.UNKNOWN_LABEL
    return out


def _numbers(values: list) -> list[float]:
    numbers = []
    for value in values:
        try:
            numbers.append(float(value))
        except ValueError:
            continue
    return numbers


def _label_tokens(series: pd.Series) -> pd.Series:
    text = as_text(series.astype(object) if pd.api.types.is_bool_dtype(series) else series)
    return text.str.lower().str.replace(r"^([+-]?\d+)\.0*$", r"\1", regex=True)


def _missing(raw: pd.Series) -> pd.Series:
    """Nulls, and for text columns blank strings too."""
    return raw.isna() if pd.api.types.is_numeric_dtype(raw) else as_text(raw).isna()


def codes(
    chunk: pd.DataFrame, name: str, spec: CodeMapping | None, result: ChunkResult, drops: Drops
) -> pd.Series | str | None:
    """A coded field: a constant, or a column mapped through `spec.map` onto valid codes."""
    if spec is None or spec.column is None:
        return None if spec is None else spec.value
    raw = as_text(chunk[spec.column])
    lookup = {value: _code_of(name, value, spec) for value in raw.dropna().unique()}
    mapped = raw.map(lookup).astype("string")
    unknown = raw.notna() & mapped.isna()
    default = spec.default if spec.default is not None else _FALLBACK.get(name)
    if default is not None:
        result.defaulted[name] += int((unknown | raw.isna()).sum())
        return mapped.fillna(default)
    if name == "currency":  # required: without a default an unusable currency drops the row
        drops.flag("invalid currency", mapped.isna())
    else:
        result.defaulted[name] += int(unknown.sum())
    return mapped


def _code_of(name: str, value: str, spec: CodeMapping) -> str | None:
    if value in spec.map:
        return spec.map[value]
    allowed = CODE_FIELDS[name][0]
    normalised = value.upper() if isinstance(allowed, re.Pattern) else value.lower()
    return normalised if is_valid_code(name, normalised) else None


def extras(chunk: pd.DataFrame, names: list[str], fill: float | None, drops: Drops) -> np.ndarray:
    """Passthrough features as a float matrix; flags rows with any non-finite value."""
    block = chunk[names]
    if not all(pd.api.types.is_numeric_dtype(t) and t != bool for t in block.dtypes):
        block = block.apply(pd.to_numeric, errors="coerce")
    values = block.to_numpy(dtype="float64", na_value=np.nan)
    if fill is not None:
        values = np.where(chunk[names].isna().to_numpy(), fill, values)
    drops.flag("non-finite passthrough feature", ~np.isfinite(values).all(axis=1))
    return values


def convert_chunk(
    chunk: pd.DataFrame, mapping: ColumnMapping, extra_names: list[str], first_row: int
) -> ChunkResult:
    """Convert one chunk; `first_row` (its position in the source) seeds derived ids."""
    chunk = chunk.reset_index(drop=True)
    drops, result = Drops(len(chunk)), ChunkResult()
    out: dict[str, object] = {"transaction_id": _transaction_ids(chunk, mapping, first_row)}
    drops.flag("missing transaction_id", out["transaction_id"].isna())
    account = mapping.columns.account_id
    out["account_id"] = identifiers(chunk[account]) if account else out["transaction_id"]
    drops.flag("missing account_id", out["account_id"].isna())
    out["timestamp"] = event_times(chunk, mapping, drops)
    out["amount"] = amounts(chunk, mapping, drops)
    out["label"] = labels(chunk, mapping, drops)
    for name in CODE_FIELDS:
        out[name] = codes(chunk, name, mapping.code(name), result, drops)
    for name in ("merchant_id", "device_id"):
        column = getattr(mapping.columns, name)
        out[name] = identifiers(chunk[column]) if column else None
    scenario = mapping.columns.fraud_scenario
    out["fraud_scenario"] = as_text(chunk[scenario]).str.slice(0, 64) if scenario else None
    fill = mapping.extra.fill_missing if mapping.extra else None
    values = extras(chunk, extra_names, fill, drops) if extra_names else None
    result.table = _assemble(out, values, output_schema(extra_names), drops.keep)
    result.labels = out["label"][drops.keep]
    result.dropped = drops.counts()
    if mapping.label is not None and mapping.label.timed:
        result.label_stream = _label_stream(chunk, mapping, out, drops.keep, result)
    return result


def _label_stream(chunk: pd.DataFrame, mapping: ColumnMapping, out: dict[str, object],
                  keep: np.ndarray, result: ChunkResult) -> pa.Table:
    """The labels of the kept, labelled rows, each with the time it became known."""
    spec = mapping.label
    events = out["timestamp"]
    if spec.time is not None:
        known = parse_times(chunk[spec.time.column], spec.time)
    else:
        known = events + pd.Timedelta(spec.delay)
    labelled = keep & (out["label"] != tabular.UNKNOWN_LABEL)
    unreadable = known.isna().to_numpy()
    out_of_range = ~unreadable & ~((known >= pd.Timestamp(MIN_TIMESTAMP))
                                   & (known < pd.Timestamp(MAX_TIMESTAMP))).to_numpy()
    early = ~unreadable & ~out_of_range & (known < events).to_numpy()
    for reason, mask in zip(LABEL_SKIP_REASONS, (unreadable, out_of_range, early), strict=True):
        if count := int((labelled & mask).sum()):
            result.labels_skipped[reason] += count
    take = labelled & ~(unreadable | out_of_range | early)
    columns = {"transaction_id": out["transaction_id"], "label": out["label"],
               "labelled_at": known, "source": LabelSource.IMPORT.value,
               "account_id": out["account_id"], "merchant_id": out["merchant_id"],
               "device_id": out["device_id"]}
    schema = label_stream_schema()
    arrays = [_take(columns[name], take, int(take.sum()), schema.field(name).type)
              for name in LABEL_COLUMNS]
    return pa.Table.from_arrays(arrays, schema=schema)


def label_stream_schema() -> pa.Schema:
    """The Parquet schema of a label stream (`fraudops.data.labels`)."""
    types = {"label": pa.int8(), "labelled_at": pa.timestamp("ns", tz="UTC")}
    return pa.schema([pa.field(c, types.get(c, pa.string())) for c in LABEL_COLUMNS])


def _transaction_ids(chunk: pd.DataFrame, mapping: ColumnMapping, first_row: int) -> pd.Series:
    column = mapping.columns.transaction_id
    if column:
        return identifiers(chunk[column]).reset_index(drop=True)
    rows = pd.Series(np.arange(first_row, first_row + len(chunk)), dtype="int64").astype("string")
    return mapping.id_prefix + rows


def _assemble(
    out: dict[str, object], values: np.ndarray | None, schema: pa.Schema, keep: np.ndarray
) -> pa.Table:
    rows = int(keep.sum())
    arrays = [_take(out.get(name), keep, rows, schema.field(name).type) for name in tabular.BASE_COLUMNS]
    if values is not None:
        # one copy, into column-major rows, so each feature column is passed without another
        kept = np.compress(keep, np.ascontiguousarray(values.T), axis=1)
        arrays += [pa.array(column) for column in kept]
    return pa.Table.from_arrays(arrays, schema=schema)


def _take(value: object, keep: np.ndarray, rows: int, kind: pa.DataType) -> pa.Array:
    """The kept rows of a converted column; a constant (or None) fills the whole column."""
    if isinstance(value, pd.Series):
        return pa.array(value.iloc[keep], type=kind, from_pandas=True)
    if isinstance(value, np.ndarray):
        return pa.array(value[keep], type=kind)
    return pa.nulls(rows, kind) if value is None else pa.repeat(pa.scalar(value, kind), rows)


def output_schema(extra_names: list[str]) -> pa.Schema:
    """The Parquet schema of an imported data set (the `fraudops.data.tabular` layout)."""
    types = {c: pa.string() for c in tabular.STRING_COLUMNS}
    types.update(timestamp=pa.timestamp("ns", tz="UTC"), amount=pa.float64(), label=pa.int8())
    fields = [pa.field(c, types[c]) for c in tabular.BASE_COLUMNS]
    fields += [pa.field(tabular.EXTRA_PREFIX + name, pa.float64()) for name in extra_names]
    return pa.schema(fields)
