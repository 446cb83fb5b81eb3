"""The entity stages' Prometheus metrics (`consumers.metrics.StageMetrics`): each outcome
counted once, the state's size and snapshots without a broker; then stage processes
(`fraudops consume --stage ...`) on the real broker serve /metrics with values that move: records
per stage and topic, batch steps, lag that grows while a stage is behind and returns to zero,
entities tracked."""

from __future__ import annotations

import json

import httpx
import pytest
from consumer_helpers import produce
from e2e_helpers import Service, consumer_env
from prometheus_client.parser import text_string_to_metric_families
from stage_helpers import Log, encode, phased_stream, stage_topics

from consumers.metrics import StageMetrics
from consumers.stages import StageConfig, StageProcessor
from fraudops.settings import TopicSettings
from fraudops.store import Store
from fraudops.testing import free_port, wait_until

TOPICS = TopicSettings()


def outcomes(metrics: StageMetrics, stage: str) -> dict[str, float]:
    return {what: metrics.registry.get_sample_value(
                "fraud_stage_records_total", {"stage": stage, "outcome": what}) or 0.0
            for what in ("applied", "passed", "repeat", "label", "replayed", "dead_letter")}


def test_a_stage_counts_each_outcome_and_its_state(tmp_path) -> None:
    store = Store.from_url(f"sqlite:///{tmp_path / 'store.db'}")
    tx = {"transaction_id": "t1", "account_id": "a", "amount": 1.0, "merchant_id": "m1",
          "timestamp": "2026-03-01T12:00:00+00:00"}
    log = Log(TOPICS.by_merchant, 1)
    for doc in (tx, {**tx, "transaction_id": "t2", "merchant_id": "m2"},
                {**tx, "transaction_id": "t3", "merchant_id": None}, tx):
        log.append(b"k", encode(doc))
    log.append(b"k", b"{not json")
    log.append(b"k", json.dumps({"transaction_id": "t1", "label": 1, "source": "analyst",
                                 "labelled_at": "2026-03-01T13:00:00+00:00",
                                 "merchant_id": "m1", "account_id": "a"}).encode(),
               (("fraudops.kind", b"label"),))
    metrics = StageMetrics()
    stage = StageProcessor(StageConfig("merchant", "g", TOPICS, snapshot_interval_s=0.0),
                           store=store, metrics=metrics)
    stage.assign(TOPICS.by_merchant, [0])
    stage.persist(stage.process(log.parts[0]))
    assert outcomes(metrics, "merchant") == {"applied": 2, "passed": 1, "repeat": 1, "label": 1,
                                             "replayed": 0, "dead_letter": 1}
    sample = metrics.registry.get_sample_value
    assert sample("fraud_stage_dead_letters_total",
                  {"stage": "merchant", "reason": "invalid_json"}) == 1
    assert sample("fraud_stage_entities", {"stage": "merchant"}) == 2
    assert sample("fraud_stage_remembered_ids", {"stage": "merchant"}) == 2
    assert sample("fraud_stage_partitions_assigned", {"stage": "merchant"}) == 1
    assert sample("fraud_stage_snapshot_seconds_count", {"stage": "merchant"}) == 1
    # restarted from its snapshot at offset 6, a member told the position is further on
    # re-applies without producing: replayed
    log.append(b"k", encode({**tx, "transaction_id": "t4"}))
    later = StageMetrics()
    again = StageProcessor(StageConfig("merchant", "g", TOPICS), store=store, metrics=later)
    again.assign(TOPICS.by_merchant, [0])
    again.partitions[(TOPICS.by_merchant, 0)].replay_until = 7
    assert again.process(log.parts[0][6:]).outgoing == []
    assert outcomes(later, "merchant")["replayed"] == 1
    assert later.registry.get_sample_value("fraud_stage_entities", {"stage": "merchant"}) == 2
    store.close()


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    """Every sample of a /metrics page: (name, sorted labels) -> value."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def total(samples: dict, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    return sum(v for (n, ls), v in samples.items()
               if n == name and set(labels.items()) <= set(ls))


def lags(samples: dict, stage: str) -> dict[tuple[str, str], float]:
    return {(dict(ls)["topic"], dict(ls)["partition"]): v for (n, ls), v in samples.items()
            if n == "fraud_stage_lag_messages" and dict(ls)["stage"] == stage}


@pytest.mark.integration
def test_stage_processes_serve_metrics_that_move(kafka_broker, tmp_path, group_id_factory) -> None:
    topics = stage_topics(kafka_broker)
    db_url = f"sqlite:///{tmp_path / 'store.db'}"
    Store.from_url(db_url).close()
    ports = {"router": free_port(), "merchant": free_port()}
    env = consumer_env(kafka_broker.bootstrap, topics, db_url, group_id_factory("stagemetrics"),
                       "http://127.0.0.1:9", FRAUDOPS_CONSUMER__ENTITY_STAGES="true",
                       FRAUDOPS_CONSUMER__ALLOWED_LATENESS_S="inf",
                       FRAUDOPS_CONSUMER__BATCH_SIZE="20")
    stream = phased_stream(41, phases=2, per_phase=400, accounts=50, merchants=12, devices=30)
    (first, labels), (second, _) = stream.phases
    services: dict[str, Service] = {}

    def start(stage: str) -> None:
        services[stage] = Service(["consume", "--stage", stage],
                                  {**env, "FRAUDOPS_CONSUMER__METRICS_PORT": str(ports[stage])},
                                  tmp_path / f"{stage}.log").start()
        services[stage].wait_http(f"http://127.0.0.1:{ports[stage]}/metrics")

    def produced(stage: str) -> float:
        return total(scrape(ports[stage]), "fraud_stage_records_produced_total", stage=stage)

    def wait_produced(stage: str, count: int) -> None:
        try:
            wait_until(lambda: produced(stage) >= count, timeout=120, interval=0.2)
        except TimeoutError:
            raise AssertionError(f"{stage}: {produced(stage)} of {count} produced\n"
                                 f"{services[stage].log()[-3000:]}") from None

    try:
        start("router")
        produce(kafka_broker, topics.transactions, first)
        produce(kafka_broker, topics.labels, labels)
        routed = len(first) + len(labels)
        wait_produced("router", routed)
        router = scrape(ports["router"])
        # Records read count re-fetches too (a rejoin under load re-reads an uncommitted batch,
        # which the stage then skips: CI read 449 of 429 once); the outcomes count each once.
        assert total(router, "fraud_stage_records_consumed_total",
                     topic=topics.transactions) >= len(first)
        assert total(router, "fraud_stage_records_consumed_total", topic=topics.labels) >= len(
            labels)
        distinct = len({d["transaction_id"] for d in first})
        assert total(router, "fraud_stage_records_total", outcome="applied") == distinct
        assert total(router, "fraud_stage_records_total", outcome="repeat") == len(first) - distinct
        assert total(router, "fraud_stage_records_total", outcome="label") == len(labels)
        assert total(router, "fraud_stage_entities") == len({d["account_id"] for d in first})
        assert total(router, "fraud_stage_batch_seconds_count", step="process") > 0
        assert total(router, "fraud_stage_batch_seconds_count", step="persist") > 0
        assert total(router, "fraud_stage_snapshot_seconds_count") > 0
        wait_until(lambda: lags(scrape(ports["router"]), "router") and not any(
            lags(scrape(ports["router"]), "router").values()), timeout=30)
        assert {t for t, _ in lags(scrape(ports["router"]), "router")} == {
            topics.transactions, topics.labels}

        # the merchant stage starts behind: its lag grows from zero, then returns to zero
        start("merchant")
        # The last scrape counts too: on librdkafka the stage may take the whole backlog
        # between two scrapes, and its lag gauge (set every 2 s) still holds the first value.
        seen_lag, scrapes = 0.0, 0
        while True:
            samples = scrape(ports["merchant"])
            seen_lag = max(seen_lag, sum(lags(samples, "merchant").values()))
            if total(samples, "fraud_stage_records_produced_total", stage="merchant") >= routed:
                break
            scrapes += 1
            assert scrapes < 3000, services["merchant"].log()[-3000:]
        assert seen_lag > 0
        wait_until(lambda: lags(scrape(ports["merchant"]), "merchant") and not any(
            lags(scrape(ports["merchant"]), "merchant").values()), timeout=30)
        merchant = scrape(ports["merchant"])
        merchants = {d["merchant_id"] for d in first}
        assert total(merchant, "fraud_stage_entities", stage="merchant") == len(merchants - {None})
        assert total(merchant, "fraud_stage_records_total", outcome="passed") == sum(
            d["merchant_id"] is None for d in first)
        assert total(merchant, "fraud_stage_records_total", outcome="applied") == len(
            {d["transaction_id"] for d in first if d["merchant_id"]})

        # more traffic: the counters and the state move on
        produce(kafka_broker, topics.transactions, second)
        wait_produced("router", routed + len(second))
        wait_produced("merchant", routed + len(second))
        router_after, merchant_after = scrape(ports["router"]), scrape(ports["merchant"])
        assert total(router_after, "fraud_stage_records_consumed_total",
                     topic=topics.transactions) >= len(first) + len(second)
        for before, after, stage in ((router, router_after, "router"),
                                     (merchant, merchant_after, "merchant")):
            for name in ("fraud_stage_records_total", "fraud_stage_batch_seconds_count",
                         "fraud_stage_remembered_ids"):
                assert total(after, name, stage=stage) > total(before, name, stage=stage), name
        assert total(router_after, "fraud_stage_entities") >= total(router, "fraud_stage_entities")
    finally:
        for service in services.values():
            service.stop()
