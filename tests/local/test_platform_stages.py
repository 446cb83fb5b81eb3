"""The local platform runs the entity stages where one consumer would not see every
merchant's traffic: on by default with Apache Kafka, off with tansu, either way on request;
their topics are created with the platform's."""

from __future__ import annotations

import pytest

from fraudops.settings import TopicSettings
from local import services
from local.layout import Layout
from local.platform import LocalPlatform
from local.timeline import Timeline


@pytest.mark.parametrize(("kafka", "requested", "expected"), [
    ("tansu", None, False), ("apache", None, True), ("tansu", True, True),
    ("apache", False, False)])
def test_the_stages_run_by_default_with_apache_kafka(tmp_path, kafka, requested, expected):
    platform = LocalPlatform(tmp_path, clean=True, timeline=Timeline.of("platform"),
                             kafka=kafka, entity_stages=requested)
    assert platform.entity_stages is expected


def test_stage_and_consumer_processes_agree_on_the_mode(tmp_path):
    layout = Layout(tmp_path)
    stages = [services.entity_stage(layout, stage) for stage in services.STAGES]
    assert [spec.argv[-1] for spec in stages] == ["router", "merchant", "device"]
    assert all(spec.argv[-3:-1] == ("consume", "--stage") for spec in stages)
    assert {spec.env["FRAUDOPS_CONSUMER__ENTITY_STAGES"] for spec in stages} == {"true"}
    # each serves its metrics on a port of its own, which is also how it is known to be up
    ports = [int(spec.env["FRAUDOPS_CONSUMER__METRICS_PORT"]) for spec in stages]
    assert len({*ports, layout.ports.consumer_metrics}) == 4 and all(ports)
    assert [spec.health.url for spec in stages] == [
        f"http://127.0.0.1:{port}/metrics" for port in ports]
    on = services.consumer(layout, entity_stages=True)
    assert on.env["FRAUDOPS_CONSUMER__ENTITY_STAGES"] == "true"
    assert services.consumer(layout).env["FRAUDOPS_CONSUMER__ENTITY_STAGES"] == "false"


def test_the_internal_topics_are_platform_topics():
    topics = TopicSettings()
    assert {topics.by_merchant, topics.by_device, topics.enriched} <= set(
        services.platform_topics())
