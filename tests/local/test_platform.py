"""The local platform's infrastructure for real: broker (tansu and Apache Kafka) + topics, MLflow
server, state dir."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import time

import httpx
import pytest
from confluent_kafka.admin import AdminClient

from fraudops.testing import read_records
from local.dataset import prepare
from local.exceptions import LocalPlatformError
from local.layout import Layout, RunRecord, claim, release, run_members
from local.platform import LocalPlatform
from local.services import platform_topics
from local.stream import StreamProducer, kafka_producer
from local.supervisor import group_alive
from local.timeline import Timeline


@pytest.mark.integration
@pytest.mark.parametrize("kafka", ["tansu", "apache"])
def test_broker_and_topics_then_stream_and_clean_stop(tmp_path, kafka: str) -> None:
    data = prepare(tmp_path / "data", train_rows=3000, stream_rows=1000)
    with LocalPlatform(tmp_path / "home", clean=True, timeline=Timeline.of(),
                       kafka=kafka) as platform:
        platform.start_broker()
        bootstrap = platform.layout.kafka_bootstrap
        producer = StreamProducer(functools.partial(kafka_producer, bootstrap), "transactions",
                                  data.stream.head(300), rate=1000)
        producer.start()
        assert producer.join(timeout=30)
        # A planned stream of 100 rows, extended into its reserve while it runs.
        extended = StreamProducer(functools.partial(kafka_producer, bootstrap), "labels",
                                  data.stream.iloc[300:500], rate=400, limit=100)
        extended.start()
        time.sleep(0.1)
        assert extended.extend()
        assert extended.join(timeout=30) and extended.progress.sent == 200
        assert not extended.extend()  # done: nothing left to extend to
        received = {m.value for m in read_records(bootstrap, "transactions", timeout=60, idle_s=3)}
        topics = set(AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics)
        groups = platform.supervisor.process_groups()
        run_id = platform.record.run_id
    assert len(received) == 300 and producer.progress.failed == 0
    assert set(platform_topics()) <= topics
    assert not any(group_alive(group) for group in groups)
    assert run_members(run_id) == []
    assert not (tmp_path / "home" / "run.json").exists()


@pytest.mark.integration
@pytest.mark.slow
def test_mlflow_server_serves_ui_and_registry(tmp_path) -> None:
    with LocalPlatform(tmp_path / "home", clean=True, timeline=Timeline.of()) as platform:
        platform.start_mlflow()
        platform.wait_mlflow()
        url = platform.layout.mlflow_url
        assert httpx.get(url, timeout=10).is_success  # the UI
        assert platform.has_champion() is False  # nothing registered yet: a clean answer
        groups = platform.supervisor.process_groups()
    assert not any(group_alive(group) for group in groups)
    assert (tmp_path / "home" / "mlflow.db").exists()


def test_state_dir_in_use_is_refused_and_leftovers_of_a_dead_run_are_stopped(tmp_path) -> None:
    layout = Layout(tmp_path / "home")
    layout.create()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        RunRecord(pid=holder.pid).save(layout.run_file)
        with pytest.raises(LocalPlatformError, match="in use"):
            claim(layout, clean=True)
    finally:
        holder.kill()
        holder.wait()
    # A run that died hard: its record names a dead pid and a child still carries its run id.
    dead = RunRecord(pid=holder.pid, run_id="deadbeef")
    dead.save(layout.run_file)
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                              env={**os.environ, "FRAUDOPS_RUN_ID": "deadbeef"})
    (layout.home / "stale.txt").write_text("old")
    # Found by its run id before the claim (a CI run once missed an orphan claimed at once).
    deadline = time.monotonic() + 10
    while orphan.pid not in run_members("deadbeef") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert orphan.pid in run_members("deadbeef"), "the orphan's run id is not visible to run_members"
    record = claim(layout, clean=True)
    assert orphan.wait(timeout=10) != 0
    assert record.pid == os.getpid() and not (layout.home / "stale.txt").exists()
    release(layout)
    assert not layout.run_file.exists()
