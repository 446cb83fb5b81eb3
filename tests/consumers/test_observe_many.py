"""`observe_many` counts what `observe` one value at a time counts (it reaches into
prometheus-client's bucket values: this is the test that a new version of the client must
pass)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from consumers.metrics import ConsumerMetrics, observe_many

BUCKETS = (0.005, 0.01, 0.025, 0.1, 1.0)


def samples(registry: CollectorRegistry) -> dict:
    text = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples
            if not s.name.endswith("_created")}


def histograms(labelled: bool = False):
    registries = CollectorRegistry(), CollectorRegistry()
    names = ["stage"] if labelled else []
    one, many = (Histogram("h", "test", names, buckets=BUCKETS, registry=r) for r in registries)
    if labelled:
        one, many = one.labels(stage="x"), many.labels(stage="x")
    return registries, one, many


#: Values on and beside the bounds, zero, huge, negative (allowed, as in `observe`).
values = st.lists(st.one_of(st.sampled_from([*BUCKETS, 0.0, math.inf, -1.0, 1e308]),
                            st.floats(-10, 1e6, allow_nan=False)), max_size=200)


@given(values=values, labelled=st.booleans())
def test_observe_many_counts_what_observe_counts(values, labelled):
    (r_one, r_many), one, many = histograms(labelled)
    for value in values:
        one.observe(value)
    observe_many(many, values)
    expected, got = samples(r_one), samples(r_many)
    assert expected.keys() == got.keys()
    for key, value in expected.items():
        if key[0] == "h_sum":  # one addition against many: rounding may differ
            assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-9) or (
                math.isinf(value) and got[key] == value)
        else:
            assert got[key] == value, key


def test_observe_many_ignores_nan_in_the_buckets_as_observe_does():
    (r_one, r_many), one, many = histograms()
    one.observe(math.nan)
    one.observe(0.02)
    observe_many(many, [math.nan, 0.02])
    count = {k: v for k, v in samples(r_many).items() if k[0] != "h_sum"}
    assert count == {k: v for k, v in samples(r_one).items() if k[0] != "h_sum"}
    assert count[("h_count", ())] == 1


def test_the_consumer_observes_event_to_decision_in_batches():
    metrics = ConsumerMetrics()
    observe_many(metrics.event_to_decision, [0.001, 0.02, 0.02, 120.0])
    got = samples(metrics.registry)
    name = "fraud_consumer_event_to_decision_seconds"
    assert got[(f"{name}_count", ())] == 4
    assert got[(f"{name}_bucket", (("le", "0.0025"),))] == 1
    assert got[(f"{name}_bucket", (("le", "0.02"),))] == 3
    assert got[(f"{name}_bucket", (("le", "60.0"),))] == 3
    assert got[(f"{name}_sum", ())] == pytest.approx(120.041)
