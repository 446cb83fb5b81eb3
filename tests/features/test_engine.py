"""The two feature engines (`fraudops.features.engine`): the compiled one (`fraudops_native`,
built from `native/` by `make setup`) and the Python reference give the same floats and the
same snapshot entries on any stream, for the velocity windows and for the accounts, and a state
stored by one restores in the other. The native engine is required here: these tests fail where
it is not installed."""

from __future__ import annotations

import math
import pickle
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.conftest import random_labels
from fraudops.data import tabular
from fraudops.data.labels import normalize_labels, to_labels
from fraudops.features import OnlineFeatureState, build_spec
from fraudops.features.engine import (
    ENGINE_ENV,
    PYTHON,
    PyAccountTable,
    PyVelocityTable,
    table_classes,
)
from fraudops.features.spec import WINDOWS

WIDTHS = tuple(WINDOWS.values())
SLOTS = [[3 * w, 3 * w + 1, 3 * w + 2] for w in range(len(WIDTHS))]
HOUR_US = 3_600 * 1_000_000


def native_table():
    return table_classes("native").velocity(WIDTHS, SLOTS)


#: Events of a few keys: times from the same microsecond to weeks apart, late ones (behind the
#: key's watermark) included, amounts from 0 to the schema's largest (10^7, in cents).
events = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c"]),
              st.integers(min_value=-30 * 24 * HOUR_US, max_value=30 * 24 * HOUR_US),
              st.one_of(st.integers(0, 1_000_000_000), st.sampled_from([0, 1, 100]))),
    min_size=1, max_size=300)


def _run(table, stream, start_us=1_700_000_000_000_000):
    """Apply (key, offset, cents) events in order; every event's vector and clamped time."""
    out = []
    for key, offset, cents in stream:
        vec = [0.0] * (3 * len(WIDTHS))
        ts = table.add(key, start_us + offset, cents, vec)
        out.append((ts, vec))
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=events, cut=st.integers(min_value=0, max_value=300))
def test_native_and_python_windows_agree_and_swap_snapshots(stream, cut):
    assert_engines_agree(lambda: (native_table(), PyVelocityTable(WIDTHS, SLOTS)), _run,
                         stream, cut)


def assert_engines_agree(tables, run, stream, cut) -> None:
    """Both engines' tables (`tables()`: native, python) give the same outputs (`run`) and
    snapshot entries on `stream[:cut]`; then each continues from the other's entries (pickled,
    as stored) exactly as both continue from their own on the rest."""
    native, python = tables()
    cut = min(cut, len(stream))
    assert run(native, stream[:cut]) == run(python, stream[:cut])
    assert sorted(native) == sorted(python) and len(native) == len(python)
    swapped_native, swapped_python = tables()
    keys = list(python)
    # `dump` (the snapshot's path): pickles that load as the entries, whichever engine wrote them
    assert [pickle.loads(b) for b in native.dump(keys)] == [python.entry(k) for k in keys]
    assert [pickle.loads(b) for b in python.dump(keys)] == [native.entry(k) for k in keys]
    for key in python:
        assert native.entry(key) == python.entry(key)
        swapped_native.load(key, pickle.loads(pickle.dumps(python.entry(key))))
        swapped_python.load(key, native.entry(key))
    rest = stream[cut:]
    expected = run(python, rest)
    assert run(swapped_native, rest) == expected == run(swapped_python, rest)
    assert run(native, rest) == expected


def test_windows_count_sum_and_max_over_time():
    table = native_table()
    vec = [0.0] * 9
    table.add("a", 0, 500, vec)
    table.add("a", HOUR_US // 2, 200, vec)
    assert vec[:3] == [math.log1p(2), math.log1p(7.0), math.log1p(5.0)]
    table.add("a", HOUR_US + 1, 100, vec)  # the first event left the hour, not the day
    assert vec[:6] == [math.log1p(2), math.log1p(3.0), math.log1p(2.0),
                       math.log1p(3), math.log1p(8.0), math.log1p(5.0)]
    assert table.add("a", 0, 100, vec) == HOUR_US + 1  # late: counted at the watermark


@pytest.mark.parametrize("entry", [
    ([], [], 0, [0, 0, 0], [0, 0, 0], [[0], [0], [0]]),           # no events
    ([2, 1], [5, 5], 0, [0, 0, 0], [10, 10, 10], [[1], [1], [1]]),  # times not sorted
    ([1], [5], 0, [0, 0], [5, 5], [[0], [0]]),                      # two windows of three
    ([1], [5], 0, [0, 0, 3], [5, 5, 5], [[0], [0], [0]]),            # a head past the end
    ([1], [5], 0, [0, 0, 0], [5, 5, 5], [[0], [], [0]]),             # a window without max
])
def test_native_engine_refuses_a_malformed_entry(entry):
    with pytest.raises(ValueError, match="not a velocity windows entry"):
        native_table().load("a", entry)


# -- accounts ---------------------------------------------------------------------------------

SEQ, DIM = 4, 12
ACCOUNT_SLOTS = list(range(8))
Z_CLIP, Z_FLOOR = 10.0, 0.05


def account_tables():
    args = (SEQ, DIM, ACCOUNT_SLOTS, Z_CLIP, Z_FLOOR)
    return table_classes("native").account(*args), PyAccountTable(*args)


maybe = st.one_of(st.none(), st.sampled_from(["x", "y", "z", "é"]))
account_events = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c"]),
              st.integers(min_value=-30 * 24 * HOUR_US, max_value=30 * 24 * HOUR_US),
              st.one_of(st.floats(0.0, math.log1p(1e7)), st.sampled_from([0.0, 1e-300])),
              st.tuples(maybe, maybe, maybe),
              st.floats(-1e6, 1e6, allow_nan=False)),
    min_size=1, max_size=200)


def _run_accounts(table, stream, start_us=1_700_000_000_000_000):
    out = []
    for key, offset, log_amount, novelty, extra in stream:
        vec = [0.0] * DIM
        table.features(key, start_us + offset, log_amount, novelty, vec)
        vec[-1] = extra  # a value of another feature: the history holds it as float32
        history, filled = table.push(key, vec)
        out.append((vec, bytes(history), filled, table.last_ts(key)))
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=account_events, cut=st.integers(min_value=0, max_value=200))
def test_native_and_python_accounts_agree_and_swap_snapshots(stream, cut):
    assert_engines_agree(account_tables, _run_accounts, stream, cut)


def test_account_features_history_and_mask():
    native, _ = account_tables()
    vec = [0.0] * DIM
    native.features("a", 0, 1.0, ("m", None, "FR"), vec)
    assert vec[:8] == [1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]  # new merchant and country
    history, filled = native.push("a", vec)
    rows = np.frombuffer(history, dtype=np.float32).reshape(SEQ, DIM)
    assert filled == 1 and not rows[:-1].any() and rows[-1].tolist() == vec
    vec = [0.0] * DIM
    native.features("a", 2_000_000, 3.0, ("m", "d", "FR"), vec)  # two seconds later
    assert vec[:8] == [0.0, 1.0, 0.0, 0.0, math.log1p(2.0), math.log1p(1), 0.0, 2.0]
    assert native.last_ts("a") == 2_000_000 and native.last_ts("b") is None
    native.features("a", 0, 3.0, (None, None, None), vec)  # late: a zero gap, the watermark stays
    assert vec[4] == 0.0 and native.last_ts("a") == 2_000_000


@pytest.mark.parametrize("table", ["native", "python"])
@pytest.mark.parametrize("change", [
    {6: (SEQ + 1, DIM)},                 # another shape
    {5: b"\0" * 8},                      # history bytes of another size
    {7: SEQ + 1},                        # more rows filled than there are
    {2: -1},                             # a negative count
])
def test_both_engines_refuse_a_malformed_account_entry(table, change):
    native, python = account_tables()
    python.features("a", 0, 1.0, ("m", "d", "FR"), [0.0] * DIM)
    entry = list(python.entry("a"))
    for i, value in change.items():
        entry[i] = value
    with pytest.raises(ValueError, match="not an account entry"):
        (native if table == "native" else python).load("b", tuple(entry))


def test_engine_choice(monkeypatch):
    monkeypatch.setenv(ENGINE_ENV, "python")
    assert table_classes() == PYTHON == (PyVelocityTable, PyAccountTable)
    native = table_classes("native")
    assert {cls.__module__ for cls in native} == {"fraudops_native"}
    monkeypatch.setenv(ENGINE_ENV, "fast")
    with pytest.raises(ValueError, match="must be one of"):
        table_classes()
    monkeypatch.setitem(sys.modules, "fraudops_native", None)  # not installed
    assert table_classes("auto") == PYTHON
    with pytest.raises(ImportError, match="native feature engine is not installed"):
        table_classes("native")


@pytest.fixture(scope="module")
def labelled_stream(stream):
    """The shared random stream with one in ten events arriving up to 50 places late, and
    its verdicts by transaction id."""
    rng = np.random.default_rng(11)
    position = np.arange(len(stream), dtype=np.float64)
    late = rng.random(len(stream)) < 0.1
    position[late] += rng.integers(1, 50, late.sum()) + 0.5
    arrival = stream.iloc[np.argsort(position, kind="stable")].reset_index(drop=True)
    verdicts = to_labels(normalize_labels(random_labels(stream)))
    return arrival, {label.transaction_id: label for label in verdicts}


def test_states_of_both_engines_compute_the_same_features_and_restore_in_each_other(
        labelled_stream):
    """The whole feature state (the accounts, three velocity tables, labels) over the shared
    random stream, its verdicts applied as they arrive: the same features, bit for bit; a
    snapshot taken halfway by either engine continues in the other."""
    stream, labels = labelled_stream
    spec = build_spec(tabular.passthrough_names(stream))
    transactions = list(tabular.to_transactions(stream))
    half = len(transactions) // 2
    states = {e: OnlineFeatureState(spec, 5, engine=e) for e in ("native", "python")}
    rows: dict[str, list] = {e: [] for e in states}
    deltas, applied = {}, 0
    for i, tx in enumerate(transactions):
        if i == half:
            deltas = {e: s.delta() for e, s in states.items()}
        for engine, state in states.items():
            label = labels.get(tx.transaction_id)
            if label is not None and i % 3 == 0:
                applied += state.apply_label(label)
            rows[engine].append(np.concatenate([*map(np.ravel, state.update(tx))]))
    assert applied > 50
    assert type(states["native"].velocity["merchant"]).__module__ == "fraudops_native"
    assert type(states["native"].accounts).__module__ == "fraudops_native"
    np.testing.assert_array_equal(np.stack(rows["native"]), np.stack(rows["python"]))
    stored = {e: {key: pickle.loads(blob) for key, blob in d.entries.items()}
              for e, d in deltas.items()}
    assert stored["native"] == stored["python"]

    for stored, resumed in (("native", "python"), ("python", "native")):
        delta = deltas[stored]
        state = OnlineFeatureState.restore(
            delta.header, [(*key, blob) for key, blob in delta.entries.items()], engine=resumed)
        again = []
        for i, tx in enumerate(transactions[half:], start=half):
            label = labels.get(tx.transaction_id)
            if label is not None and i % 3 == 0:
                state.apply_label(label)
            again.append(np.concatenate([*map(np.ravel, state.update(tx))]))
        np.testing.assert_array_equal(np.stack(again), np.stack(rows[stored][half:]))


def test_native_tables_count_the_bytes_they_hold():
    """What tracemalloc cannot see (the bench's memory per account adds it): at least every
    account's history and every window's events, growing with the entries."""
    accounts, _ = account_tables()
    velocity = native_table()
    empty = accounts.nbytes(), velocity.nbytes()
    for i in range(100):
        vec = [0.0] * DIM
        accounts.features(f"acc-{i}", i, 1.0, ("m", "d", "FR"), vec)
        accounts.push(f"acc-{i}", vec)
        for j in range(20):
            velocity.add(f"acc-{i}", j * 1_000_000, 100, [0.0] * 9)
    assert accounts.nbytes() >= empty[0] + 100 * (SEQ * DIM * 4 + len("acc-00") + 3)
    assert velocity.nbytes() >= empty[1] + 100 * 20 * 2 * 8


@pytest.mark.parametrize("engine", ["native", "python"])
def test_dump_refuses_a_key_without_state(engine):
    native, python = table_classes("native"), table_classes("python")
    table = (native if engine == "native" else python).velocity([HOUR_US], [[0, 1, 2]])
    table.add("a", 0, 100, [0.0] * 3)
    assert len(table.dump(["a"])) == 1 and table.dump([]) == []
    with pytest.raises(KeyError, match="b"):
        table.dump(["a", "b"])
