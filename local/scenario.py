"""The scripted demo: the whole loop on one machine.

Start Kafka and MLflow; generate a timeline of transactions (the training part is versioned and
trained on by the pipeline through kfp.local); serve the champion (predictor, consumer,
gateway); stream the rest at a steady rate with drift switching on half-way, and the label
stream's verdicts to `labels` as they become known; run drift checks, whose policy starts
retraining (on the labels arrived so far), promotion and the predictor's live switch; summarise
(against the generator's ground truth, which nothing else sees).
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from fraudops.data import tabular
from fraudops.settings import TopicSettings
from local import services
from local.dataset import DemoData, prepare, write_labelled
from local.display import LiveStatus
from local.drift_watch import DriftWatch
from local.platform import LocalPlatform
from local.probe import StoreProbe, StoreSnapshot, served_versions
from local.stream import StreamProducer, kafka_producer
from local.summary import Summary, summarize
from local.supervisor import ManagedProcess
from local.timeline import StepStatus, Timeline

STEPS = ("platform", "data", "training", "serving", "warm-up", "streaming", "drift + retraining",
         "summary")
LOOP_S = 0.5
MIN_DRIFT_WINDOW_S = 86_400.0
MAX_LOOKBACK_S = 7 * 86_400.0
#: How often the labelled data set (what retraining learns from) is extended during the stream.
LABELLED_EVERY_S = 10.0


@dataclass(frozen=True)
class DemoOptions:
    """What the demo does; the defaults finish in a few minutes on a 2-core machine."""

    duration_s: float = 120.0
    rate: float = 200.0
    rows: int = 60_000
    #: Half-way, legitimate spending shifts (a data drift the drift job finds in well under a
    #: minute) while a bust-out fraud wave the champion never saw doubles the fraud rate (a
    #: concept drift a retrained model learns): the gate has a real reason to promote.
    drift: str = "bust_out_wave"
    seed: int = 7
    training_timeout_s: float = 900.0
    #: After the stream ends, how long to wait for a running check / retraining / switch.
    settle_timeout_s: float = 300.0
    #: Seconds to wait for the consumer to catch up with the stream at the end.
    drain_timeout_s: float = 60.0

    #: When the planned stream ends while a new model is on its way, keep drifted traffic
    #: flowing until it has served this long, for at most `max_extension_s` more.
    max_extension_s: float = 180.0
    after_switch_s: float = 20.0
    #: Share of the training rows (their tail, at most `warmup_max_rows`) replayed before the
    #: stream, so the consumer starts with per-account history as a running platform would.
    #: All of it by default: with 40% replayed, accounts' older merchants and devices looked
    #: new to the consumer, and the live recall at 1% FPR fell from 0.87 (offline) to 0.79.
    warmup_share: float = 1.0
    warmup_max_rows: int = 100_000
    warmup_rate: float = 3000.0
    #: Seconds between two drift checks (the drift job sleeps this long after each).
    drift_interval_s: float = 10.0
    #: The drift check's current window, as a share of the stream's event-time span.
    drift_window_share: float = 0.15
    #: After drift is first seen, retraining waits for this many seconds of the stream (as
    #: event time: the policy's `new_regime_wait`), so that it learns from the new regime.
    retrain_wait_s: float = 40.0

    @property
    def stream_rows(self) -> int:
        return max(1000, int(self.duration_s * self.rate))

    @property
    def reserve_rows(self) -> int:
        return int(self.max_extension_s * self.rate)


def timeline() -> Timeline:
    return Timeline.of(*STEPS)


class DemoRun:
    """Runs the scenario on a started `LocalPlatform`, updating `status` for the live view."""

    def __init__(self, options: DemoOptions, platform: LocalPlatform, status: LiveStatus) -> None:
        self.options = options
        self.platform = platform
        self.status = status
        self.timeline = platform.timeline
        self.probe = StoreProbe(platform.layout.store_url)
        self._monitor: ManagedProcess | None = None
        self._monitor_noted = False
        self._labelled_path = platform.layout.data / "labelled.parquet"
        self._labelled_at: float | None = None
        self._baseline = StoreSnapshot()
        self._extended = False

    def run(self) -> Summary:
        """Every step in order; a failing step raises (the caller stops the platform)."""
        try:
            data = self._start_platform_and_data()
            self._step("training", self._train, data)
            self._monitor = self._step("serving", self._serve, data)
            self._step("warm-up", self._warm_up, data)
            producer, watch = self._stream(data)
            return self._summarize(data, producer, watch)
        finally:
            self.probe.close()

    def _step(self, name: str, function, *args):
        self.timeline.start(name)
        try:
            result = function(*args)
        except BaseException as error:
            self.timeline.fail(name, str(error).splitlines()[0][:200] if str(error) else
                               type(error).__name__)
            raise
        if self.timeline.steps[name].status is StepStatus.RUNNING:
            self.timeline.done(name)
        return result

    # -- steps ---------------------------------------------------------------------------------

    def _start_platform_and_data(self) -> DemoData:
        """Broker first, MLflow in the background while the data is generated (both are slow)."""
        self.timeline.start("platform", "Kafka broker, topics, MLflow server")
        self.platform.start_broker()
        self.platform.start_mlflow()
        data = self._step("data", self._data)
        self.platform.wait_mlflow()
        self.timeline.done("platform")
        return data

    def _data(self) -> DemoData:
        """Generate the timeline, write the training part, version it with DVC."""
        options, layout = self.options, self.platform.layout
        data = prepare(layout.data, options.rows, options.stream_rows,
                       reserve_rows=options.reserve_rows, drift=options.drift, seed=options.seed)
        job = self.platform.run_job(services.version_data(layout, data.train_path), 120)
        lines = job.stdout_path.read_text().split() if job.stdout_path else []
        md5 = lines[-1] if lines else "?"  # DVC may print its own lines first
        self.timeline.steps["data"].detail = (
            f"{data.train_rows:,} training rows (DVC md5 {md5[:8]}), {data.planned_rows:,} to "
            f"stream, drift '{data.drift}' from {data.drift_start:%Y-%m-%d %H:%M}")
        return data

    def _train(self, data: DemoData) -> None:
        spec = services.training_job(self.platform.layout, data.train_path)
        self.timeline.steps["training"].detail = f"fraudops pipeline run --local (log: {spec.name}.log)"
        self.platform.run_job(spec, timeout_s=self.options.training_timeout_s)
        self.timeline.done("training", f"champion {self.platform.champion_versions()}")

    def _serve(self, data: DemoData) -> ManagedProcess | None:
        """The units, plus the drift job checking the latest share of the stream's event time."""
        stamps = data.stream["timestamp"]
        span_s = (stamps.iloc[-1] - stamps.iloc[0]).total_seconds()
        # At least a day: a shorter window sees only part of the daily cycle and drifts on it.
        window_s = max(MIN_DRIFT_WINDOW_S, span_s * self.options.drift_window_share)
        event_s_per_s = span_s / len(stamps) * self.options.rate
        drift = services.drift_watch(
            self.platform.layout, reference_path=data.train_path, window_s=window_s,
            interval_s=self.options.drift_interval_s, lookback_s=self._lookback_s(data),
            retrain_params=self._retrain_params(data),
            new_regime_wait_s=self.options.retrain_wait_s * event_s_per_s)
        return self.platform.start_units(drift)

    def _lookback_s(self, data: DemoData) -> float:
        """The drift job's per-account lookback: half of the replayed warm-up's event time, at
        most a week (its default). A window is checked only once the store holds the lookback
        before it, and the store starts with the warm-up: a small demo needs a shorter one."""
        recent = data.warmup(self.options.warmup_share, self.options.warmup_max_rows)
        if recent.empty:
            return MAX_LOOKBACK_S
        span_s = (recent["timestamp"].iloc[-1] - recent["timestamp"].iloc[0]).total_seconds()
        return min(MAX_LOOKBACK_S, span_s / 2)

    def _retrain_params(self, data: DemoData) -> dict[str, str]:
        """Retraining learns from the stream so far: the pipeline splits by time (training,
        then validation, then the test period the gate compares on), so the new regime must be
        a good part of its data to reach the training period at all. With the champion's
        training data in, it fell in the validation and test periods only, and the challenger,
        never trained on it, lost the gate."""
        return {"data_path": str(self._labelled_path.resolve()),
                "window_start": data.stream["timestamp"].iloc[0].isoformat()}

    def _warm_up(self, data: DemoData) -> None:
        """Replay the training period's tail and wait until the consumer has decided it."""
        frame = data.warmup(self.options.warmup_share, self.options.warmup_max_rows)
        if frame.empty:
            self.timeline.skip("warm-up", "nothing to replay")
            return
        # History as it happened: the events without their verdicts, the verdicts on `labels`.
        events = frame.assign(label=tabular.UNKNOWN_LABEL, fraud_scenario=None)
        producer = self._producer(events, self.options.warmup_rate,
                                  labels=data.labels_between(frame, None, data.split))
        producer.start()
        deadline = time.monotonic() + self.options.drain_timeout_s + len(frame) / 500
        while True:
            self.platform.supervisor.check_alive()
            self._check_monitor()
            self._baseline = self.probe.snapshot()
            target = producer.progress.sent - producer.progress.failed
            if producer.done and self._baseline.decided >= target:
                break
            if time.monotonic() > deadline:
                self.timeline.note(f"[yellow]warm-up: {self._baseline.decided:,} of {target:,} "
                                   "decided; going on[/]")
                break
            time.sleep(LOOP_S)
        self.timeline.done("warm-up", f"{len(frame):,} recent training rows replayed: the "
                                      "consumer's account state and the store have history")

    def _producer(self, frame, rate: float, drift_mask=None, limit=None,
                  labels=None) -> StreamProducer:
        layout, topics = self.platform.layout, TopicSettings()
        return StreamProducer(functools.partial(kafka_producer, layout.kafka_bootstrap),
                              topics.transactions, frame, rate, drift_mask, limit,
                              labels=labels, labels_topic=topics.labels)

    def _stream(self, data: DemoData) -> tuple[StreamProducer, DriftWatch]:
        layout, options = self.platform.layout, self.options
        # The verdicts of what the consumer has seen (the warm-up and the stream), as they
        # become known during the stream; the summary alone uses the stream's ground truth.
        seen = pd.concat([data.warmup(options.warmup_share, options.warmup_max_rows),
                          data.stream], ignore_index=True)
        producer = self._producer(data.stream_events(), options.rate, data.after_drift(),
                                  limit=data.planned_rows,
                                  labels=data.labels_between(seen, data.split, None))
        self.timeline.start("streaming",
                            f"{data.planned_rows:,} transactions at {options.rate:g}/s")
        self.timeline.start("drift + retraining", "waiting for drifted traffic")
        write_labelled(data, 0, self._labelled_path)  # retraining data, grown as we stream
        producer.start()
        started = time.monotonic()
        self.status.stream, self.status.stream_started_at = producer.progress, started
        watch = DriftWatch(self.platform, services.decisions_log(layout), started,
                           self.status.drift, self._monitor)
        self._loop(data, producer, watch)
        return producer, watch

    def _loop(self, data: DemoData, producer: StreamProducer, watch: DriftWatch) -> None:
        """Until the stream is sent and decided and the monitoring loop has played out."""
        settle_deadline = drained_at = None
        while True:
            self.platform.supervisor.check_alive()
            self._check_monitor()
            self._refresh()
            self._grow_labelled(data, producer)
            watch.poll(self.status.served)
            self._pace_stream(producer, watch)
            if producer.done and self.timeline.steps["streaming"].status is StepStatus.RUNNING:
                self.timeline.done("streaming", f"{producer.progress.sent:,} sent")
                watch.stream_done = True
                settle_deadline = time.monotonic() + self.options.settle_timeout_s
            if producer.done and drained_at is None and self._drained(producer):
                drained_at = time.monotonic()
            if settle_deadline is not None and (
                    (watch.finished and drained_at) or time.monotonic() > settle_deadline):
                break
            time.sleep(LOOP_S)
        self._close_drift_step(watch)

    def _pace_stream(self, producer: StreamProducer, watch: DriftWatch) -> None:
        """Keep drifted traffic flowing past the plan while a new model is on its way, so that
        the switch happens under load; stop once it has served a while (or will not come)."""
        progress, options = producer.progress, self.options
        if not self._extended and watch.awaiting_new_model and not producer.done and \
                progress.sent >= 0.9 * progress.total and producer.extend():
            self._extended = True
            self.timeline.note("a new model is on its way: the stream goes on (at most "
                               f"{options.max_extension_s:.0f} s more)")
        if not self._extended or producer.done:
            return
        switched = watch.outcome.switched_at_s
        if switched is None:
            if watch.finished:  # the gate kept the champion: no switch to show
                producer.stop()
            return
        # The new model scores drifted traffic for a while, so the summary can show how it does.
        if time.monotonic() - self.status.stream_started_at >= switched + options.after_switch_s:
            producer.stop()

    def _grow_labelled(self, data: DemoData, producer: StreamProducer) -> None:
        """Once drifted events flow, append what was streamed to the retraining data set."""
        now = time.monotonic()
        if producer.progress.drift_sent_at is None or (
                self._labelled_at is not None and now - self._labelled_at < LABELLED_EVERY_S):
            return
        write_labelled(data, producer.progress.sent, self._labelled_path)
        self._labelled_at = now

    def _check_monitor(self) -> None:
        """The drift job starts slowly: note when it is up, fail if it dies."""
        monitor = self._monitor
        if monitor is not None and not self._monitor_noted and \
                self.platform.supervisor.poll_ready(monitor):
            self._monitor_noted = True
            self.timeline.note("drift job watching the stream")

    def _drained(self, producer: StreamProducer) -> bool:
        progress = producer.progress
        done_at = progress.finished_at or time.monotonic()
        caught_up = self.status.store.decided >= progress.sent - progress.failed
        return caught_up or time.monotonic() - done_at > self.options.drain_timeout_s

    def _refresh(self) -> None:
        self.status.store = self.probe.snapshot().since(self._baseline)
        self.status.served = served_versions(self.platform.layout.predictor_url) \
            or self.status.served

    def _close_drift_step(self, watch: DriftWatch) -> None:
        """Done when drift was found and retraining reached the gate (whatever it decided)."""
        o, step = watch.outcome, "drift + retraining"
        if o.switched_at_s is not None:
            self.timeline.done(step, f"new champion {o.final_versions} live "
                                     f"{o.switched_at_s:.0f} s into the stream")
        elif o.detected_at_s is None:
            self.timeline.fail(step, f"no drift found in {o.checks} checks")
        elif o.retraining_started_at_s is None:
            self.timeline.fail(step, "retraining did not start in time (waiting for data)")
        elif not o.retrained:
            self.timeline.fail(step, "retraining did not finish in time")
        elif o.challenger is None:
            self.timeline.fail(step, "retraining registered no model")
        elif o.promoted:
            self.timeline.fail(step, f"champion {o.challenger} promoted but not served")
        else:
            self.timeline.done(step, f"challenger {o.challenger} not better: champion kept")

    def _summarize(self, data: DemoData, producer: StreamProducer, watch: DriftWatch) -> Summary:
        self.timeline.start("summary")
        drift = watch.outcome
        summary = summarize(data.stream, data.after_drift().to_numpy(), producer.sent_at,
                            self.probe.decisions(), producer.progress.elapsed_s, drift)
        summary.steps = {name: step.duration_s for name, step in self.timeline.steps.items()
                         if name != "summary"}
        summary.processes = {
            process.name: {"ready_s": process.startup_s, "state": str(process.state),
                           "log": str(process.log_path)}
            for process in self.platform.processes if not process.name.startswith("topic-")}
        summary.links = {**self.platform.links(), "drift report": _report_link(drift.report)}
        summary.logs = str(self.platform.layout.logs)
        summary.labels_sent = producer.progress.labels_sent
        summary.problems = watch.problems + producer.progress.errors
        summary.write(self.platform.layout.home / "summary.json")
        self.timeline.done("summary")
        return summary


def _report_link(location: str | None) -> str:
    if not location:
        return "none (no drift check completed)"
    path = Path(location)
    html = path / "report.html" if path.is_dir() else path
    return html.resolve().as_uri() if html.exists() else location
