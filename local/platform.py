"""The embedded local platform: a broker, MLflow and the units, as supervised processes.

`LocalPlatform` owns the state dir (claimed for the run), the ports, and a `Supervisor`. It starts
the infrastructure (Kafka broker and topics: tansu by default, Apache Kafka on request; MLflow
server with its UI) and the serving
units (predictor, consumer, gateway); the demo scenario and `fraudops up` build on it. Leaving
the `with` block stops every process, newest first, and releases the state dir.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Self

import httpx

from fraudops.settings import ModelNames
from fraudops.store import create_store_engine, migrate
from local import services
from local.exceptions import LocalPlatformError
from local.kafka import Flavour
from local.layout import Layout, RunRecord, claim, release, sweep
from local.supervisor import ManagedProcess, ProcessSpec, Supervisor
from local.timeline import Timeline


class LocalPlatform:
    """Start/stop the local platform's processes under one state dir."""

    def __init__(self, home: Path, *, clean: bool, timeline: Timeline,
                 base_env: Mapping[str, str] | None = None,
                 kafka: Flavour = Flavour.TANSU, entity_stages: bool | None = None) -> None:
        self.layout = Layout(home)
        self.kafka = Flavour(kafka)
        #: Merchant and device features from the entity stages (`consumers.stages`). Default:
        #: with Apache Kafka; with tansu the one consumer owns every partition, so its own
        #: merchant and device state already sees their whole traffic, and the stages would
        #: cost latency there: tansu's fetches slow down as a topic fills, and the stages add
        #: three topics and hops to each transaction's path (measured: README, "In the local
        #: platform").
        self.entity_stages = self.kafka is Flavour.APACHE if entity_stages is None \
            else entity_stages
        self.timeline = timeline
        self._clean = clean
        self._base_env = dict(os.environ if base_env is None else base_env)
        self.record: RunRecord | None = None
        self.supervisor: Supervisor | None = None
        self._mlflow: ManagedProcess | None = None

    def __enter__(self) -> Self:
        self.record = claim(self.layout, clean=self._clean)
        env = {**self._base_env, **services.platform_env(self.layout, self.record.run_id)}
        self.supervisor = Supervisor(self.layout.logs, env)
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            if self.supervisor is not None:
                self.supervisor.stop_all()
            if self.record is not None:
                sweep(self.record.run_id)
        finally:
            release(self.layout)

    @property
    def processes(self) -> list[ManagedProcess]:
        return self.supervisor.processes if self.supervisor else []

    # -- infrastructure ------------------------------------------------------------------------

    def start_broker(self) -> None:
        """The Kafka broker and every platform topic. Apache Kafka's runtime is fetched through
        Maven on first use, and its storage (``<home>/kafka``) formatted on first start."""
        supervisor = self._require()
        if self.kafka is Flavour.APACHE:
            services.apache_broker(self.layout).prepare()
        supervisor.start(services.broker(self.layout, self.kafka))
        for job in services.create_topics(self.layout, self.kafka, services.platform_topics()):
            supervisor.run_job(job, timeout_s=60)
        self.timeline.note(f"Kafka broker ({self.kafka}) ready on {self.layout.kafka_bootstrap}")

    def start_mlflow(self) -> None:
        """Start the MLflow server without waiting (it takes a while; see `wait_mlflow`)."""
        self._mlflow = self._require().start(services.mlflow_server(self.layout), wait=False)

    def wait_mlflow(self) -> None:
        if self._mlflow is None:
            self.start_mlflow()
        assert self._mlflow is not None
        self._require().wait_ready(self._mlflow)
        self.timeline.note(f"MLflow ready at {self.layout.mlflow_url}")

    # -- units ---------------------------------------------------------------------------------

    def start_units(self, drift: ProcessSpec | None = None,
                    predictor_poll_s: float = 5.0) -> ManagedProcess | None:
        """Predictor first (the others ask it for the model's shape), then consumer and gateway;
        the drift job (`drift`) is started last and not waited for (it is slow to import):
        watch it with `Supervisor.poll_ready`. The store is upgraded to this release's schema
        first (`upgrade_store`): the consumer and the gateway refuse one that is not."""
        supervisor = self._require()
        self.upgrade_store()
        supervisor.start(services.predictor(self.layout, predictor_poll_s))
        self.timeline.note("predictor serving the champion")
        stages = [services.entity_stage(self.layout, stage) for stage in services.STAGES
                  if self.entity_stages]
        consumer = services.consumer(self.layout, entity_stages=self.entity_stages)
        others = [supervisor.start(spec, wait=False)
                  for spec in (*stages, consumer, services.gateway(self.layout))]
        monitor = supervisor.start(drift, wait=False) if drift is not None else None
        for process in others:
            supervisor.wait_ready(process)
            self.timeline.note(f"{process.name} ready")
        return monitor

    def upgrade_store(self) -> None:
        """What `fraudops db upgrade` does, on the platform's store, in this process (the
        command line would first import every unit: seconds on a small machine)."""
        engine = create_store_engine(self.layout.store_url)
        try:
            before, after = migrate.upgrade(engine)
        finally:
            engine.dispose()
        self.timeline.note(f"decision store at schema {after}"
                           + ("" if before == after else f" (was {before or 'empty'})"))

    def run_job(self, spec: ProcessSpec, timeout_s: float) -> ManagedProcess:
        return self._require().run_job(spec, timeout_s)

    def start_job(self, spec: ProcessSpec) -> ManagedProcess:
        return self._require().start(spec, wait=False)

    def has_champion(self) -> bool:
        """True when both registered models have the champion alias (asked over MLflow REST)."""
        return "?" not in self.champion_versions()

    def champion_versions(self) -> str:
        """``"<sequence>/<autoencoder>"`` versions holding the champion alias (``?`` = none)."""
        return self.alias_versions(ModelNames().champion_alias)

    def alias_versions(self, alias: str) -> str:
        """``"<sequence>/<autoencoder>"`` versions holding `alias` (``?`` where none does)."""
        names = ModelNames()
        return "/".join(self._alias_version(name, alias) or "?"
                        for name in (names.sequence, names.autoencoder))

    def links(self) -> dict[str, str]:
        """Addresses worth opening: MLflow UI, the analyst console (log in with the gateway API
        key listed last), gateway API docs, predictor, Kafka."""
        layout = self.layout
        return {"MLflow UI": layout.mlflow_url, "Analyst console": f"{layout.gateway_url}/console",
                "gateway API docs": f"{layout.gateway_url}/docs",
                "predictor (V2)": f"{layout.predictor_url}/v2/models/{services.PREDICTOR_MODEL}",
                "Kafka bootstrap": layout.kafka_bootstrap,
                "decision store": layout.store_url,
                "gateway API key": services.LOCAL_API_KEY}

    def _alias_version(self, name: str, alias: str) -> str | None:
        url = f"{self.layout.mlflow_url}/api/2.0/mlflow/registered-models/alias"
        try:
            response = httpx.get(url, params={"name": name, "alias": alias}, timeout=10)
        except httpx.HTTPError as error:
            raise LocalPlatformError(f"MLflow unreachable at {self.layout.mlflow_url}: {error}") \
                from error
        if not response.is_success:
            return None
        return str(response.json().get("model_version", {}).get("version") or "") or None

    def _require(self) -> Supervisor:
        if self.supervisor is None:
            raise LocalPlatformError("use LocalPlatform as a context manager")
        return self.supervisor
