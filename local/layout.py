"""Where the local platform keeps its state, which ports it uses, and who holds the state dir.

Everything lives under one state directory (``FRAUDOPS_HOME``, ``.fraudops/demo`` by default):
process logs, generated data, the MLflow database and artifacts, the decision store, drift
reports, pipeline outputs. Ports are picked fresh on every start, so a rerun never collides with
a previous run or another program. A small ``run.json`` records the supervising process and a run id that every
child carries in its environment (``FRAUDOPS_RUN_ID``): a second run refuses a state dir in use,
and a run that was killed hard (SIGKILL) has its leftover children stopped by the next one.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from local.exceptions import LocalPlatformError
from local.health import free_port

DEFAULT_HOME = Path(".fraudops/demo")


@dataclass(frozen=True)
class Ports:
    """Loopback ports of the platform's services, chosen fresh for each run."""

    kafka: int
    mlflow: int
    predictor: int
    gateway: int
    consumer_metrics: int
    drift_metrics: int
    #: Apache Kafka's KRaft controller listener (unused with tansu).
    kafka_controller: int
    #: /metrics of the entity stages (router, merchant, device), when they run.
    stage_metrics: tuple[int, int, int]

    @classmethod
    def pick(cls) -> Ports:
        """Distinct free ports (asked of the OS one after another)."""
        chosen: list[int] = []
        while len(chosen) < 10:
            port = free_port()
            if port not in chosen:
                chosen.append(port)
        return cls(*chosen[:7], tuple(chosen[7:]))


@dataclass(frozen=True)
class Layout:
    """Paths under the state directory and the run's ports."""

    home: Path
    ports: Ports = field(default_factory=Ports.pick)

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def mlflow_db(self) -> Path:
        return self.home / "mlflow.db"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.home / "mlartifacts"

    @property
    def store_db(self) -> Path:
        return self.home / "fraudops.db"

    @property
    def drift_reports(self) -> Path:
        return self.home / "drift-reports"

    @property
    def pipeline_root(self) -> Path:
        return self.home / "pipeline-root"

    @property
    def run_file(self) -> Path:
        return self.home / "run.json"

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.ports.kafka}"

    @property
    def mlflow_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.mlflow}"

    @property
    def predictor_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.predictor}"

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.gateway}"

    @property
    def store_url(self) -> str:
        return f"sqlite:///{self.store_db.resolve()}"

    def create(self) -> None:
        for directory in (self.home, self.logs, self.data, self.mlflow_artifacts,
                          self.drift_reports, self.pipeline_root):
            directory.mkdir(parents=True, exist_ok=True)


#: Environment variable that marks every process of one run (to find leftovers safely).
RUN_ID_ENV = "FRAUDOPS_RUN_ID"


@dataclass(frozen=True)
class RunRecord:
    """Who holds the state dir: the supervising process and the run id its children carry."""

    pid: int
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: Path) -> RunRecord | None:
        try:
            data = json.loads(path.read_text())
            return cls(pid=int(data["pid"]), run_id=str(data["run_id"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None


def claim(layout: Layout, *, clean: bool) -> RunRecord:
    """Take the state dir for this process, cleaning it first if asked.

    Refuses a state dir held by a live run; stops the leftovers of a run that died hard.
    """
    previous = RunRecord.load(layout.run_file)
    if previous is not None and previous.pid != os.getpid():
        if pid_alive(previous.pid):
            raise LocalPlatformError(
                f"{layout.home} is in use by a running fraudops process (pid {previous.pid}); "
                "stop it or choose another FRAUDOPS_HOME")
        stop_leftovers(previous)
    if clean and layout.home.exists():
        shutil.rmtree(layout.home)
    layout.create()
    record = RunRecord(pid=os.getpid())
    record.save(layout.run_file)
    return record


def release(layout: Layout) -> None:
    """Give the state dir back (the run file goes; the state stays for inspection or reuse)."""
    layout.run_file.unlink(missing_ok=True)


def stop_leftovers(record: RunRecord) -> list[int]:
    """SIGKILL the processes a dead run left behind (found by their run id); returns their pids."""
    leftovers = run_members(record.run_id)
    for pid in leftovers:
        _kill(pid, signal.SIGKILL)
    return leftovers


def sweep(run_id: str, grace_s: float = 5.0) -> list[int]:
    """Stop every process still carrying `run_id`, also those that left our process groups
    (a launcher may start retraining in a session of its own): SIGTERM, then SIGKILL."""
    found = run_members(run_id)
    for pid in found:
        _kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while run_members(run_id) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in run_members(run_id):
        _kill(pid, signal.SIGKILL)
    return found


def _kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def run_members(run_id: str) -> list[int]:
    """Live processes whose environment carries `run_id` (those this user may read)."""
    members = []
    for process in psutil.process_iter():
        if process.pid == os.getpid():
            continue
        try:
            if (process.environ().get(RUN_ID_ENV) == run_id
                    and process.status() != psutil.STATUS_ZOMBIE):
                members.append(process.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):  # gone, a zombie, or not ours
            continue
    return members


def pid_alive(pid: int) -> bool:
    """True while `pid` runs and is not a zombie (works for processes that are not our children)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # another user's process: it exists
        return True
