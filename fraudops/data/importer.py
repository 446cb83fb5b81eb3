"""Bring-your-own-data: import a user's CSV or Parquet into the platform's layout.

`import_dataset` streams the source in chunks (pandas ``read_csv(chunksize=...)`` or pyarrow
``iter_batches``), converts each chunk through a `ColumnMapping` (`fraudops.data.convert`) and
appends it to a Parquet file with a fixed schema, so memory stays bounded by the chunk size
whatever the file size. Before writing anything it checks the source against the mapping and
reports every missing or unusable column at once (`SourceError`). The output appears atomically:
a failed import leaves no half-written file behind. When the mapping gives labels a time
(`label.time` or `label.delay`), the labels are also written as a label stream beside the output
(`fraudops.data.labels.labels_path`, in source order; `read_labels` sorts it by time).
"""

from __future__ import annotations

import math
import os
import re
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from fraudops.data import tabular
from fraudops.data.convert import (
    Drops,
    as_text,
    convert_chunk,
    event_times,
    label_stream_schema,
    output_schema,
)
from fraudops.data.exceptions import SourceError, UnsupportedFormatError
from fraudops.data.labels import labels_path
from fraudops.data.mapping import ColumnMapping, CsvOptions, load_mapping

DEFAULT_CHUNK_SIZE = 50_000
_CSV_SUFFIXES = (".csv", ".tsv", ".txt")
_COMPRESSION = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd", ".zip": "zip"}

MALFORMED = "malformed CSV line (too many fields)"
# What a broken file raises while being read: reported as a SourceError, not a traceback.
_UNREADABLE = (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError, pa.ArrowInvalid)

#: Called after each chunk with (done, total) in bytes (CSV) or rows (Parquet).
ProgressCallback = Callable[[int, int], None]


@dataclass
class ImportReport:
    """What an import did: counts, drop reasons, replaced values, the features passed through."""

    source: str
    output: str
    rows_read: int = 0
    rows_written: int = 0
    labelled_rows: int = 0
    fraud_rows: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    defaulted: dict[str, int] = field(default_factory=dict)
    extra_features: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: The label stream written beside the output (None: the mapping gives labels no time).
    label_stream: str | None = None
    labels_written: int = 0
    labels_skipped: dict[str, int] = field(default_factory=dict)

    @property
    def rows_dropped(self) -> int:
        return self.rows_read - self.rows_written

    @property
    def label_rate(self) -> float:
        """Share of fraud among labelled written rows (NaN when none is labelled)."""
        return self.fraud_rows / self.labelled_rows if self.labelled_rows else math.nan

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / self.seconds if self.seconds > 0 else math.nan

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (e.g. a DVC metrics file); NaN becomes None."""
        data = asdict(self)
        data.update(
            rows_dropped=self.rows_dropped,
            rows_per_second=self.rows_per_second,
            label_rate=None if math.isnan(self.label_rate) else self.label_rate,
        )
        if math.isnan(data["rows_per_second"]):
            data["rows_per_second"] = None
        return data


def source_format(path: Path) -> str:
    """'csv' or 'parquet', from the file name (compressed CSV such as .csv.gz included)."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in _COMPRESSION:
        suffixes = suffixes[:-1]
    if suffixes and suffixes[-1] in (".parquet", ".pq"):
        return "parquet"
    if suffixes and suffixes[-1] in _CSV_SUFFIXES:
        return "csv"
    raise UnsupportedFormatError(
        f"{path}: expected a .csv (optionally compressed) or .parquet file"
    )


def source_header(path: Path, csv: CsvOptions | None = None) -> list[str]:
    """Column names of the source, without reading its rows."""
    if source_format(path) == "parquet":
        return list(pq.ParquetFile(path).schema_arrow.names)
    return [str(c) for c in pd.read_csv(path, nrows=0, **_csv_options(path, csv)).columns]


def _csv_options(path: Path, csv: CsvOptions | None) -> dict[str, object]:
    csv = csv or CsvOptions()
    tab = ".tsv" in [s.lower() for s in path.suffixes]
    separator = csv.separator or ("\t" if tab else ",")
    return {
        "sep": separator,
        "encoding": csv.encoding,
        "decimal": csv.decimal,
        "compression": _COMPRESSION.get(path.suffix.lower()),
    }


def passthrough_columns(mapping: ColumnMapping, header: list[str]) -> list[str]:
    """Source columns passed through as features: the explicit list, then regex matches."""
    if mapping.extra is None:
        return []
    named = set(mapping.source_columns().values())
    chosen = list(mapping.extra.columns)
    if mapping.extra.pattern is not None:
        pattern = re.compile(mapping.extra.pattern)
        chosen += [c for c in header if pattern.search(c) and c not in named and c not in chosen]
    return chosen


def missing_columns(mapping: ColumnMapping, header: list[str], extras: list[str]) -> list[str]:
    """One problem line per mapped column that the source lacks."""
    present = set(header)
    problems = [
        f"missing column {column!r} (mapped to {target})"
        for target, column in mapping.source_columns().items()
        if column not in present
    ]
    problems += [f"missing column {c!r} (passthrough feature)" for c in extras if c not in present]
    if mapping.extra and mapping.extra.pattern and not mapping.extra.columns and not extras:
        problems.append(f"no column matches the passthrough pattern {mapping.extra.pattern!r}")
    return problems


def unusable_columns(chunk: pd.DataFrame, mapping: ColumnMapping, extras: list[str]) -> list[str]:
    """Mapped columns whose non-null values in `chunk` (the first one) are ALL unusable.

    Such a column is mapped wrongly (text mapped to the amount, dates in an unexpected format),
    which would otherwise silently drop every row.
    """
    problems = [
        f"column {column!r} ({target}) has no values"
        for target, column in (
            ("amount", mapping.columns.amount),
            ("timestamp", mapping.timestamp.column),
        )
        if len(chunk) and chunk[column].isna().all()
    ]
    numeric = {mapping.columns.amount: "amount"} | {c: "passthrough feature" for c in extras}
    problems += [
        f"column {column!r} ({target}) has no numeric values"
        for column, target in numeric.items()
        if _none_numeric(chunk[column])
    ]
    spec = mapping.timestamp
    present = chunk[spec.column].notna()
    if present.any():
        times = event_times(
            chunk.loc[present, [spec.column]].reset_index(drop=True),
            mapping,
            Drops(int(present.sum())),
        )
        if times.isna().all():
            how = (
                f"offsets in {spec.unit} from {spec.start}"
                if spec.start
                else f"datetimes (format {spec.format or 'inferred'})"
            )
            problems.append(f"column {spec.column!r} (timestamp) has no values readable as {how}")
    return problems


def _none_numeric(series: pd.Series) -> bool:
    present = (
        as_text(series).dropna() if not pd.api.types.is_numeric_dtype(series) else series.dropna()
    )
    return len(present) > 0 and pd.to_numeric(present, errors="coerce").isna().all()


def read_chunks(
    path: Path,
    columns: list[str],
    chunk_size: int,
    csv: CsvOptions | None = None,
    on_progress: ProgressCallback | None = None,
) -> Iterator[pd.DataFrame]:
    """Stream the given source columns in chunks of at most `chunk_size` rows.

    CSV lines with too many fields are skipped; a chunk counts them in
    ``chunk.attrs["malformed_lines"]``.
    """
    if source_format(path) == "parquet":
        yield from _parquet_chunks(path, columns, chunk_size, on_progress)
    else:
        yield from _csv_chunks(path, columns, chunk_size, csv, on_progress)


def _parquet_chunks(
    path: Path, columns: list[str], chunk_size: int, on_progress: ProgressCallback | None
) -> Iterator[pd.DataFrame]:
    parquet = pq.ParquetFile(path)
    total, done = parquet.metadata.num_rows, 0
    for batch in parquet.iter_batches(batch_size=chunk_size, columns=columns):
        done += batch.num_rows
        yield batch.to_pandas()
        if on_progress:
            on_progress(done, total)


def _csv_chunks(
    path: Path,
    columns: list[str],
    chunk_size: int,
    csv: CsvOptions | None,
    on_progress: ProgressCallback | None,
) -> Iterator[pd.DataFrame]:
    total = path.stat().st_size
    with path.open("rb") as handle:  # a binary handle lets progress follow the bytes read
        # No `usecols`: with it pandas silently accepts lines with surplus fields (an unquoted
        # separator shifts the values); reading every field lets it detect and skip them.
        # index_col=False: never take a surplus first field as the index (which shifts every
        # column). pandas still accepts, truncated, a surplus line that starts a chunk.
        reader = pd.read_csv(
            handle,
            chunksize=chunk_size,
            index_col=False,
            on_bad_lines="warn",
            **_csv_options(path, csv),
        )
        while True:
            # pandas reports each skipped line as a warning; count them instead of printing
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", pd.errors.ParserWarning)
                chunk = next(reader, None)
            if chunk is None:
                return
            chunk = chunk[columns]
            chunk.attrs["malformed_lines"] = sum(
                str(w.message).count("Skipping line") for w in caught
            )
            yield chunk
            if on_progress:
                on_progress(min(handle.tell(), total), total)


def import_dataset(
    source: str | Path,
    mapping: ColumnMapping | str | Path,
    out: str | Path,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    on_progress: ProgressCallback | None = None,
) -> ImportReport:
    """Import `source` (CSV or Parquet) through `mapping` into the Parquet file `out`.

    Raises `SourceError` naming every missing or unusable column before anything is written.
    """
    started = time.perf_counter()
    source, out = Path(source), Path(out)
    if not isinstance(mapping, ColumnMapping):
        mapping = load_mapping(mapping)
    if not source.is_file():
        raise SourceError(str(source), ["file not found"])
    try:
        header = source_header(source, mapping.csv)
        extras = passthrough_columns(mapping, header)
        if problems := missing_columns(mapping, header, extras):
            raise SourceError(str(source), problems)
        columns = list(dict.fromkeys([*mapping.source_columns().values(), *extras]))
        report = ImportReport(source=str(source), output=str(out), extra_features=extras)
        chunks = read_chunks(source, columns, chunk_size, mapping.csv, on_progress)
        _write(chunks, mapping, extras, out, report)
    except _UNREADABLE as error:
        raise SourceError(str(source), [f"cannot be read: {error}"]) from error
    report.seconds = time.perf_counter() - started
    return report


def _write(
    chunks: Iterator[pd.DataFrame],
    mapping: ColumnMapping,
    extras: list[str],
    out: Path,
    report: ImportReport,
) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    timed = mapping.label is not None and mapping.label.timed
    targets = [out] + ([labels_path(out)] if timed else [])
    partials = [path.with_name(path.name + ".partial") for path in targets]
    dropped: Counter[str] = Counter()
    defaulted: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    parsed = 0  # rows the reader delivered: derived ids count these, so chunking cannot move them
    # Dictionary encoding only pays off for the low-cardinality text columns; trying it on
    # float features costs time and then falls back anyway.
    options = {"compression": "zstd", "use_dictionary": list(tabular.STRING_COLUMNS)}
    try:
        with ExitStack() as files:
            writer = files.enter_context(
                pq.ParquetWriter(partials[0], output_schema(extras), **options))
            label_writer = files.enter_context(pq.ParquetWriter(
                partials[1], label_stream_schema(), compression="zstd")) if timed else None
            for chunk in chunks:
                if parsed == 0 and (problems := unusable_columns(chunk, mapping, extras)):
                    raise SourceError(report.source, problems)
                result = convert_chunk(chunk, mapping, extras, first_row=parsed)
                writer.write_table(result.table)
                if label_writer is not None:
                    label_writer.write_table(result.label_stream)
                    report.labels_written += result.label_stream.num_rows
                    skipped.update(result.labels_skipped)
                parsed += len(chunk)
                malformed = chunk.attrs.get("malformed_lines", 0)
                _tally(report, len(chunk) + malformed, result.labels)
                dropped.update(result.dropped + Counter({MALFORMED: malformed}))
                defaulted.update(result.defaulted)
        for partial, target in zip(partials, targets, strict=True):
            os.replace(partial, target)
    finally:
        for partial in partials:
            partial.unlink(missing_ok=True)
    report.dropped = dict(dropped.most_common())
    report.defaulted = {k: v for k, v in defaulted.most_common() if v}
    report.label_stream = str(targets[1]) if timed else None
    report.labels_skipped = dict(skipped.most_common())


def _tally(report: ImportReport, rows_read: int, labels: np.ndarray) -> None:
    report.rows_read += rows_read
    report.rows_written += len(labels)
    report.labelled_rows += int((labels >= 0).sum())
    report.fraud_rows += int((labels == 1).sum())
