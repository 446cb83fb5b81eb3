"""Supervisor of local processes: start, wait until ready, watch, and stop without orphans.

Every process starts in its own session (so its own process group): a Ctrl-C in the terminal
reaches only the supervising command, which then stops the children in reverse start order,
each with SIGTERM to its whole group, then SIGKILL after a grace period. Output goes to one log
file per process under the log directory, so a failure can be diagnosed afterwards.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Self

import psutil

from local.exceptions import JobFailedError, ProcessFailedError
from local.health import HealthCheck

POLL_S = 0.1


@dataclass(frozen=True)
class ProcessSpec:
    """How to run one process: command line, extra environment, readiness check, links."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    health: HealthCheck | None = None
    ready_timeout_s: float = 60.0
    grace_s: float = 10.0
    #: What to show the user (a UI or API address), if anything.
    url: str | None = None
    #: Keep stdout apart from the log (`<name>.out`), for commands whose output is data.
    separate_stdout: bool = False


class ProcessState(StrEnum):
    """Life cycle of a supervised process."""

    STARTING = "starting"
    READY = "ready"
    EXITED = "exited"  # a job that finished with status 0
    FAILED = "failed"
    STOPPED = "stopped"
    PAUSED = "paused"  # SIGSTOP'ed to give the CPU to something else for a while


@dataclass
class ManagedProcess:
    """A running (or finished) supervised process."""

    spec: ProcessSpec
    popen: subprocess.Popen
    log_path: Path
    started_at: float
    state: ProcessState = ProcessState.STARTING
    ready_at: float | None = None
    finished_at: float | None = None
    stdout_path: Path | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    @property
    def running(self) -> bool:
        return self.popen.poll() is None

    @property
    def startup_s(self) -> float | None:
        return None if self.ready_at is None else self.ready_at - self.started_at

    def log_tail(self, lines: int = 25) -> str:
        """The last `lines` lines of the process log (empty if unreadable)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class Supervisor:
    """Starts and stops local processes; use as a context manager so that exit stops them all."""

    def __init__(self, log_dir: Path, base_env: Mapping[str, str] | None = None) -> None:
        self.log_dir = log_dir
        self.base_env = dict(os.environ if base_env is None else base_env)
        self.processes: list[ManagedProcess] = []
        self._lock = threading.Lock()
        self._log_names: set[str] = set()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop_all()

    # -- starting ------------------------------------------------------------------------------

    def start(self, spec: ProcessSpec, *, wait: bool = True) -> ManagedProcess:
        """Start `spec` in a new process group; with `wait`, block until its health check passes."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / self._log_name(spec.name)
        stdout_path = log_path.with_suffix(".out") if spec.separate_stdout else None
        env = {**self.base_env, **spec.env}
        with open(log_path, "ab") as log, open(stdout_path or os.devnull, "wb") as out:
            popen = subprocess.Popen(
                spec.argv, env=env, cwd=spec.cwd, stdin=subprocess.DEVNULL,
                stdout=out if stdout_path else log, stderr=log, start_new_session=True)
        process = ManagedProcess(spec, popen, log_path, time.monotonic(), stdout_path=stdout_path)
        with self._lock:
            self.processes.append(process)
        if wait:
            self.wait_ready(process)
        return process

    def wait_ready(self, process: ManagedProcess) -> None:
        """Block until `process` passes its health check; raise if it exits or times out."""
        spec = process.spec
        deadline = process.started_at + spec.ready_timeout_s
        while True:
            if not process.running:
                process.state = ProcessState.FAILED
                raise ProcessFailedError(
                    spec.name, f"exited with status {process.returncode} while starting",
                    process.log_path, process.log_tail())
            if spec.health is None or spec.health():
                break
            if time.monotonic() > deadline:
                process.state = ProcessState.FAILED
                raise ProcessFailedError(
                    spec.name, f"not ready at {spec.health.describe()} after "
                    f"{spec.ready_timeout_s:.0f} s", process.log_path, process.log_tail())
            time.sleep(POLL_S)
        process.state, process.ready_at = ProcessState.READY, time.monotonic()

    def poll_ready(self, process: ManagedProcess) -> bool:
        """Non-blocking readiness: True once healthy; raises if it exited or timed out."""
        if process.state is ProcessState.READY:
            return True
        spec = process.spec
        if not process.running:
            process.state = ProcessState.FAILED
            raise ProcessFailedError(spec.name, f"exited with status {process.returncode} "
                                     "while starting", process.log_path, process.log_tail())
        if spec.health is None or spec.health():
            process.state, process.ready_at = ProcessState.READY, time.monotonic()
            return True
        if time.monotonic() > process.started_at + spec.ready_timeout_s:
            process.state = ProcessState.FAILED
            raise ProcessFailedError(spec.name, f"not ready at {spec.health.describe()} after "
                                     f"{spec.ready_timeout_s:.0f} s", process.log_path,
                                     process.log_tail())
        return False

    def run_job(self, spec: ProcessSpec, timeout_s: float) -> ManagedProcess:
        """Run a one-shot command to completion; raise `JobFailedError` unless it exits 0."""
        process = self.start(spec, wait=False)
        try:
            process.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.stop(process)
            process.state = ProcessState.FAILED
            raise JobFailedError(spec.name, f"still running after {timeout_s:.0f} s",
                                 process.log_path, process.log_tail()) from None
        return self.finish_job(process)

    def finish_job(self, process: ManagedProcess) -> ManagedProcess:
        """Record the outcome of a job that has exited; raise `JobFailedError` on failure."""
        process.finished_at = time.monotonic()
        self._reap_group(process, grace_s=process.spec.grace_s)
        if process.returncode != 0:
            process.state = ProcessState.FAILED
            raise JobFailedError(process.name, f"exited with status {process.returncode}",
                                 process.log_path, process.log_tail())
        process.state = ProcessState.EXITED
        return process

    # -- watching ------------------------------------------------------------------------------

    def check_alive(self) -> None:
        """Raise `ProcessFailedError` if a service that was ready has exited on its own."""
        for process in list(self.processes):
            if process.state in (ProcessState.READY, ProcessState.PAUSED) and \
                    not process.running:
                process.state = ProcessState.FAILED
                raise ProcessFailedError(
                    process.name, f"exited unexpectedly with status {process.returncode}",
                    process.log_path, process.log_tail())

    def process_groups(self) -> list[int]:
        """Process group ids of every process started (for orphan checks)."""
        return [process.pid for process in self.processes]

    def pause(self, process: ManagedProcess) -> None:
        """SIGSTOP a ready service's group (it keeps its state; `resume` continues it)."""
        if process.state is ProcessState.READY and process.running:
            _signal_group(process.pid, signal.SIGSTOP)
            process.state = ProcessState.PAUSED

    def resume(self, process: ManagedProcess) -> None:
        if process.state is ProcessState.PAUSED:
            _signal_group(process.pid, signal.SIGCONT)
            process.state = ProcessState.READY

    # -- stopping ------------------------------------------------------------------------------

    def stop(self, process: ManagedProcess) -> None:
        """SIGTERM the process group, SIGKILL it after the spec's grace period, reap it."""
        if process.running:
            _signal_group(process.pid, signal.SIGTERM)
            _signal_group(process.pid, signal.SIGCONT)  # a paused group gets it only now
            try:
                process.popen.wait(timeout=process.spec.grace_s)
            except subprocess.TimeoutExpired:
                _signal_group(process.pid, signal.SIGKILL)
                process.popen.wait()
        self._reap_group(process, grace_s=process.spec.grace_s)
        if process.state in (ProcessState.STARTING, ProcessState.READY, ProcessState.PAUSED):
            process.state = ProcessState.STOPPED
        process.finished_at = process.finished_at or time.monotonic()

    def stop_all(self) -> None:
        """Stop every process, newest first (consumers before the broker they talk to)."""
        with _interrupts_deferred():
            for process in reversed(list(self.processes)):
                self.stop(process)

    def _reap_group(self, process: ManagedProcess, grace_s: float) -> None:
        """Children the leader left behind in its group get SIGTERM, then SIGKILL."""
        if not group_alive(process.pid):
            return
        _signal_group(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while group_alive(process.pid) and time.monotonic() < deadline:
            time.sleep(POLL_S)
        _signal_group(process.pid, signal.SIGKILL)

    def _log_name(self, name: str) -> str:
        candidate, n = f"{name}.log", 1
        while candidate in self._log_names:
            n += 1
            candidate = f"{name}-{n}.log"
        self._log_names.add(candidate)
        return candidate


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group `pgid`."""
    members = []
    for process in psutil.process_iter(["status"]):
        if process.info["status"] == psutil.STATUS_ZOMBIE:  # already dead, only not reaped
            continue
        try:
            if os.getpgid(process.pid) == pgid:  # psutil has no process group; the OS tells
                members.append(process.pid)
        except OSError:  # gone since the listing
            continue
    return members


def group_alive(pgid: int) -> bool:
    """True while any live process remains in group `pgid`."""
    return bool(group_members(pgid))


@contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Ignore a second Ctrl-C while stopping, so the shutdown itself cannot be cut short."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
