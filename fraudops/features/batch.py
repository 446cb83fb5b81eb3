"""Batch execution of the feature spec over a time-sorted data set (training, evaluation, drift).

Every per-entity computation works on the rows sorted by (entity, stream order): sliding-window
aggregates become prefix sums and range-maximum queries, so one million rows take seconds.
Semantics match `fraudops.features.online` exactly: windows are (t - w, t] over the entity's
events up to and including the current one, in stream order. Training and drift frames are
time-sorted; `arrival_order=True` computes the features of a stream as the consumer received it,
out-of-order events included, under the event-time policy (`fraudops.features.policy`): each
entity's times clamped to its running maximum, in row order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from fraudops.features import encoding
from fraudops.features.labels import OPEN, smoothed_rate, verdict_runs
from fraudops.features.spec import (
    CATEGORY_PREFIX,
    CHANNEL_PREFIX,
    EXPOSURE_WINDOW,
    LABEL_ENTITIES,
    LABEL_WINDOWS,
    NOVELTY_FIELDS,
    VELOCITY_ENTITIES,
    WINDOWS,
    Z_CLIP,
    Z_VARIANCE_FLOOR,
    FeatureSpec,
)
from fraudops.schema import EXTRA_PREFIX


def timestamps_us(frame: pd.DataFrame) -> np.ndarray:
    """Event times as int64 microseconds since the epoch (UTC)."""
    return frame["timestamp"].to_numpy(dtype="datetime64[us]").astype(np.int64)


def compute_batch(frame: pd.DataFrame, spec: FeatureSpec, *, arrival_order: bool = False,
                  labels: pd.DataFrame | None = None) -> np.ndarray:
    """Features of every row of a normalized frame: float32 [N, spec.dim].

    `labels` is the label stream (`fraudops.data.labels` layout: transaction_id, label,
    labelled_at): each label counts for a row only if known strictly before the row's time
    (`fraudops.features.labels`); without it the label features say "nothing known".

    The rows are the stream in order: by default the frame must be time-sorted (ValueError
    otherwise: a training set out of order is a mistake); with `arrival_order` they are the
    order the consumer received them, and late rows follow the event-time policy (only the
    admitted rows belong in the frame: see `fraudops.features.policy.admit_stream`).
    """
    ts = timestamps_us(frame)
    in_time_order = len(ts) < 2 or not np.any(np.diff(ts) < 0)
    if not (in_time_order or arrival_order):
        raise ValueError("frame must be sorted by timestamp (use fraudops.data.tabular.sort_by_time)")
    columns: dict[str, np.ndarray] = {}
    cents = encoding.to_cents(frame["amount"].to_numpy())
    log_amount = encoding.cents_log(cents)
    columns["amount_log"] = log_amount
    cyclic = encoding.cyclic_time(ts)
    for i, name in enumerate(("hour_sin", "hour_cos", "dow_sin", "dow_cos")):
        columns[name] = cyclic[:, i]
    _one_hot(columns, CHANNEL_PREFIX, frame["channel"], encoding.CHANNEL_INDEX,
             encoding.OTHER_CHANNEL)
    _one_hot(columns, CATEGORY_PREFIX, frame["merchant_category"], encoding.CATEGORY_INDEX,
             encoding.OTHER_CATEGORY)
    account = pd.factorize(frame["account_id"])[0]
    columns.update(_novelty(frame))
    clamp = not in_time_order
    columns.update(_account_history(account, ts, log_amount, clamp))
    codes, clock = {}, _Clock.of(ts)
    for entity, key in VELOCITY_ENTITIES.items():
        codes[entity] = account if key == "account_id" else pd.factorize(frame[key])[0]
        columns.update(_velocity(entity, codes[entity], clock, cents, clamp))
    columns.update(_label_features(judged_runs(frame, labels), codes, clock, clamp))
    for name in spec.passthrough:
        values = frame[EXTRA_PREFIX + name].to_numpy(dtype=np.float64, na_value=np.nan)
        columns[EXTRA_PREFIX + name] = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    out = np.empty((len(frame), spec.dim), dtype=np.float32)
    for j, name in enumerate(spec.names):
        out[:, j] = columns[name]
    return out


def _one_hot(columns, prefix, values: pd.Series, index: dict[str, int], other: int) -> None:
    codes = pd.Categorical(values, categories=list(index)).codes.astype(np.int64)
    codes = np.where(codes < 0, other, codes)
    for name, i in index.items():
        columns[prefix + name] = (codes == i).astype(np.float64)


def _novelty(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    out = {}
    for field in NOVELTY_FIELDS:
        known = frame[field].notna().to_numpy()
        first = ~frame.duplicated(subset=["account_id", field]).to_numpy()
        out[f"account_new_{field.removesuffix('_id')}"] = (known & first).astype(np.float64)
    return out


def _group_order(codes: np.ndarray):
    """Stable order by entity (time order kept within), and each sorted row's position in its group."""
    order = np.argsort(codes, kind="stable")
    g = codes[order]
    n = len(g)
    new_group = np.ones(n, dtype=bool)
    new_group[1:] = g[1:] != g[:-1]
    group_start = np.maximum.accumulate(np.where(new_group, np.arange(n), 0))
    return order, g, np.arange(n) - group_start


def _watermarks(t: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Running maximum of the times `t` within each group of `g` (rows sorted by group, stream
    order kept within): each event's time clamped to its entity's watermark."""
    return pd.Series(t).groupby(g, sort=False).cummax().to_numpy(dtype=np.int64)


def _account_history(account, ts, log_amount, clamp: bool) -> dict[str, np.ndarray]:
    order, g, pos = _group_order(account)
    t, x = ts[order], log_amount[order]
    if clamp:
        t = _watermarks(t, g)
    first = pos == 0
    gap = np.where(first, 0, t - np.roll(t, 1)) / 1e6
    # Exclusive prefix sums within each group, in extended precision (global sums are large).
    cum = np.concatenate([[0], np.cumsum(x.astype(np.longdouble))])
    cumsq = np.concatenate([[0], np.cumsum(x.astype(np.longdouble) ** 2)])
    idx = np.arange(len(x))
    start = idx - pos
    sum_prev = (cum[idx] - cum[start]).astype(np.float64)
    sumsq_prev = (cumsq[idx] - cumsq[start]).astype(np.float64)
    z, diff = encoding.amount_z(x, pos, sum_prev, sumsq_prev, Z_VARIANCE_FLOOR, Z_CLIP)
    sorted_cols = {
        "account_first_seen": first.astype(np.float64),
        "account_gap_log": np.log1p(gap),
        "account_history_log": np.log1p(pos.astype(np.float64)),
        "account_amount_z": z,
        "account_amount_diff": diff,
    }
    return {name: _unsort(values, order) for name, values in sorted_cols.items()}


@dataclass(frozen=True)
class _Clock:
    """The frame's event times as ranks among its distinct times (1-based), computed once:
    windows over (entity, time) become searches on integer keys ``code * scale + rank``. An
    entity's clamped time (a running maximum) is one of the times, and its rank the running
    maximum of the ranks."""

    times: np.ndarray  # the distinct times, sorted
    rank: np.ndarray  # per row: the rank of its time

    @classmethod
    def of(cls, ts: np.ndarray) -> _Clock:
        ordered = np.sort(ts)
        times = ordered[np.r_[True, ordered[1:] != ordered[:-1]]] if len(ts) else ordered
        return cls(times, np.searchsorted(times, ts, side="right"))

    @property
    def scale(self) -> np.int64:
        return np.int64(len(self.times) + 1)

    def entity(self, codes: np.ndarray, clamp: bool):
        """Rows by (entity, stream order): the order, the codes, the ranks (clamped to the
        entity's watermark under `clamp`) and the integer keys."""
        order, g, _ = _group_order(codes)
        r = self.rank[order]
        if clamp:
            r = _watermarks(r, g)
        return order, g, r, g.astype(np.int64) * self.scale + r

    def lag(self, rank: np.ndarray, width: int) -> np.ndarray:
        """rank_right(t - width) for the times of ranks `rank` (>= 1)."""
        back = np.searchsorted(self.times, self.times - width, side="right")
        return back[rank - 1]

    def of_values(self, values: np.ndarray) -> np.ndarray:
        """rank_right of arbitrary times (how many distinct times are <= each)."""
        return np.searchsorted(self.times, values, side="right")


def _velocity(entity: str, codes, clock: _Clock, cents, clamp: bool) -> dict[str, np.ndarray]:
    order, g, r, key = clock.entity(codes, clamp)
    c = cents[order]
    prefix = np.concatenate([[0], np.cumsum(c)])
    idx = np.arange(len(c))
    out = {}
    known = g >= 0
    for window, width in WINDOWS.items():
        query = g.astype(np.int64) * clock.scale + clock.lag(r, width)
        start = np.searchsorted(key, query, side="right")
        count = (idx - start + 1).astype(np.float64)
        total = prefix[idx + 1] - prefix[start]
        biggest = _range_max(c, start, idx)
        for stat, values in (("count", np.log1p(count)), ("sum", encoding.cents_log(total)),
                             ("max", encoding.cents_log(biggest))):
            out[f"{entity}_{stat}_{window}_log"] = _unsort(np.where(known, values, 0.0), order)
    return out


@dataclass(frozen=True)
class LabelRuns:
    """The verdict runs of a label stream over a frame's transactions (one entry per run)."""

    row: np.ndarray  # the judged transaction's row in the frame
    since: np.ndarray  # int64 microseconds
    until: np.ndarray  # int64 microseconds (`OPEN`: never closed)
    verdict: np.ndarray  # int64 0/1
    #: Labels whose transaction is not in the frame: ignored by the features.
    unknown: int = 0


def judged_runs(frame: pd.DataFrame, labels: pd.DataFrame | None) -> LabelRuns:
    """The verdict runs (`fraudops.features.labels.verdict_runs`) of `labels` on the rows of
    `frame` they judge (by transaction id, its first row)."""
    empty = np.zeros(0, dtype=np.int64)
    if labels is None or labels.empty:
        return LabelRuns(empty, empty, empty, empty)
    missing = {"transaction_id", "label", "labelled_at"} - set(labels.columns)
    if missing:
        raise ValueError(f"label stream lacks column(s): {sorted(missing)}")
    first = ~frame["transaction_id"].duplicated().to_numpy()
    rows = np.flatnonzero(first)
    found = pd.Index(frame["transaction_id"].to_numpy()[first]).get_indexer(
        labels["transaction_id"].to_numpy())
    known = found >= 0
    at = pd.to_datetime(labels["labelled_at"], utc=True).to_numpy(dtype="datetime64[us]")
    table = pd.DataFrame({"row": rows[found[known]], "at": at.astype(np.int64)[known],
                          "verdict": labels["label"].to_numpy(dtype=np.int64)[known]})
    table = table.drop_duplicates().sort_values(["row", "at", "verdict"], ignore_index=True)
    several = table["row"].duplicated(keep=False).to_numpy()
    single = table[~several]
    parts = [(single["row"].to_numpy(), single["at"].to_numpy(),
              np.full(len(single), OPEN, dtype=np.int64), single["verdict"].to_numpy())]
    # Repeats and flips are rare: the shared rule, transaction by transaction.
    for row, group in table[several].groupby("row", sort=False):
        runs = np.array(verdict_runs(zip(group["at"].tolist(), group["verdict"].tolist(),
                                         strict=True)), dtype=np.int64).reshape(-1, 3)
        parts.append((np.full(len(runs), row), runs[:, 0], runs[:, 1], runs[:, 2]))
    row, since, until, verdict = (np.concatenate(p).astype(np.int64) for p in zip(*parts))
    return LabelRuns(row, since, until, verdict, unknown=int((~known).sum()))


def _label_features(runs: LabelRuns, codes: dict[str, np.ndarray], clock: _Clock,
                    clamp: bool) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    # The runs' ranks do not depend on the entity: once for all three.
    since = clock.of_values(runs.since)
    last = {w: clock.of_values(np.minimum(runs.since + (width - 1), runs.until))
            for w, width in LABEL_WINDOWS.items()}
    for entity in LABEL_ENTITIES:
        out.update(_entity_label_counts(entity, runs, since, last, codes[entity], clock, clamp))
    known = {}
    for entity in ("merchant", "device"):
        fraud = np.expm1(out[f"{entity}_fraud_{EXPOSURE_WINDOW}_log"])
        known[entity] = np.rint(fraud) > 0
        out[f"{entity}_fraud_known_{EXPOSURE_WINDOW}"] = known[entity].astype(np.float64)
    risky = (known["merchant"] | known["device"]).astype(np.float64)
    out[f"account_risky_visits_{EXPOSURE_WINDOW}_log"] = np.log1p(
        _window_sum(codes["account"], clock, risky, LABEL_WINDOWS[EXPOSURE_WINDOW], clamp))
    return out


def _entity_label_counts(entity: str, runs: LabelRuns, since, last, codes, clock: _Clock,
                         clamp: bool):
    """Per row, the runs of its entity counting at its (clamped) time: a run (since, until)
    counts at t when since < t <= min(since + w - 1, until), so each run adds one to an
    interval of the entity's rows in time order (a difference array); `since` and `last` are
    the runs' ranks (`_Clock`)."""
    order, _, _, row_key = clock.entity(codes, clamp)
    run_code = codes[runs.row] if len(runs.row) else np.zeros(0, dtype=np.int64)
    valid = run_code >= 0
    base = run_code[valid].astype(np.int64) * clock.scale
    verdict = runs.verdict[valid]
    start = np.searchsorted(row_key, base + since[valid], side="right")
    out, n = {}, len(codes)
    for window in LABEL_WINDOWS:
        end = np.searchsorted(row_key, base + last[window][valid], side="right")
        end = np.maximum(end, start)
        labelled = _interval_sums(start, end, np.ones(len(start)), n)
        fraud = _interval_sums(start, end, verdict.astype(np.float64), n)
        for name, values in ((f"{entity}_fraud_{window}_log", np.log1p(fraud)),
                             (f"{entity}_labelled_{window}_log", np.log1p(labelled)),
                             (f"{entity}_fraud_rate_{window}", smoothed_rate(fraud, labelled))):
            out[name] = _unsort(values, order)
    return out


def _interval_sums(start: np.ndarray, end: np.ndarray, weights: np.ndarray, n: int) -> np.ndarray:
    """sum of weights[k] over the k with start[k] <= i < end[k], for every i < n."""
    diff = (np.bincount(start, weights, minlength=n + 1)
            - np.bincount(end, weights, minlength=n + 1))
    return np.rint(np.cumsum(diff)[:n])  # integer counts: no float drift


def _window_sum(codes, clock: _Clock, values: np.ndarray, width: int, clamp: bool) -> np.ndarray:
    """Sum of `values` over each row's entity rows in (t - width, t], the row included."""
    order, g, r, key = clock.entity(codes, clamp)
    query = g.astype(np.int64) * clock.scale + clock.lag(r, width)
    start = np.searchsorted(key, query, side="right")
    prefix = np.concatenate([[0.0], np.cumsum(values[order])])
    idx = np.arange(len(order))
    return _unsort(np.rint(prefix[idx + 1] - prefix[start]), order)


def _range_max(values: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """max(values[start[i] : end[i] + 1]) for every i, via a sparse table (O(n log n))."""
    lengths = end - start + 1
    if len(values) == 0:
        return values.copy()
    levels = [values]
    while (1 << len(levels)) <= lengths.max():
        prev, step = levels[-1], 1 << (len(levels) - 1)
        nxt = prev.copy()
        nxt[:-step] = np.maximum(prev[:-step], prev[step:])
        levels.append(nxt)
    k = np.floor(np.log2(lengths)).astype(np.int64)
    out = np.empty_like(values)
    for level in np.unique(k):
        sel = k == level
        table = levels[level]
        out[sel] = np.maximum(table[start[sel]], table[end[sel] - (1 << level) + 1])
    return out


def _unsort(sorted_values: np.ndarray, order: np.ndarray) -> np.ndarray:
    out = np.empty_like(sorted_values)
    out[order] = sorted_values
    return out


def sequence_index(frame: pd.DataFrame, seq_len: int) -> np.ndarray:
    """int64 [N, seq_len]: each row's account history (last column = the row), -1 = padding."""
    account = pd.factorize(frame["account_id"])[0]
    order, _, pos = _group_order(account)
    n = len(order)
    out = np.full((n, seq_len), -1, dtype=np.int64)
    for back in range(seq_len):
        valid = pos >= back
        rows = np.where(valid, order[np.maximum(np.arange(n) - back, 0)], -1)
        out[order, seq_len - 1 - back] = rows
    return out


def gather_sequences(features: np.ndarray, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sequences float32 [B, K, F] and mask bool [B, K] from rows' history indices [B, K]."""
    mask = index >= 0
    x = features[np.where(mask, index, 0)]
    x[~mask] = 0.0
    return x, mask
