"""The supervisor on real, simple processes: readiness, logs, failures, clean stop, no orphans."""

from __future__ import annotations

import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from local.exceptions import JobFailedError, ProcessFailedError
from local.health import HttpCheck, TcpCheck, free_port
from local.supervisor import ProcessSpec, ProcessState, Supervisor, group_alive

PY = sys.executable


def python(code: str) -> tuple[str, ...]:
    return (PY, "-c", textwrap.dedent(code))


def http_server(port: int, name: str = "web") -> ProcessSpec:
    return ProcessSpec(name, (PY, "-m", "http.server", str(port), "--bind", "127.0.0.1"),
                       health=HttpCheck(f"http://127.0.0.1:{port}/"), ready_timeout_s=15)


def test_start_waits_until_ready_and_stop_all_leaves_nothing(tmp_path: Path) -> None:
    port = free_port()
    with Supervisor(tmp_path / "logs") as supervisor:
        web = supervisor.start(http_server(port))
        assert web.state is ProcessState.READY
        assert httpx.get(f"http://127.0.0.1:{port}/").status_code == 200
    assert web.state is ProcessState.STOPPED
    assert not group_alive(web.pid)
    assert "GET / HTTP" in web.log_path.read_text()


def test_children_and_term_ignoring_processes_are_killed_after_grace(tmp_path: Path) -> None:
    # A leader that ignores SIGTERM and forks a grandchild that ignores it too.
    stubborn = python("""
        import os, signal, subprocess, sys, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        subprocess.Popen([sys.executable, "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)"])
        print("started", flush=True)
        time.sleep(300)
    """)
    supervisor = Supervisor(tmp_path / "logs")
    process = supervisor.start(ProcessSpec("stubborn", stubborn, grace_s=0.5))
    time.sleep(0.5)
    began = time.monotonic()
    supervisor.stop_all()
    assert time.monotonic() - began < 5
    assert not group_alive(process.pid)


def test_process_exiting_during_startup_reports_its_log(tmp_path: Path) -> None:
    crash = python("import sys; print('cannot bind: boom', flush=True); sys.exit(3)")
    with Supervisor(tmp_path / "logs") as supervisor, \
            pytest.raises(ProcessFailedError) as error:
        supervisor.start(ProcessSpec("crash", crash, health=TcpCheck(free_port())))
    assert "status 3" in str(error.value)
    assert "cannot bind: boom" in error.value.log_tail


def test_health_check_timeout_is_an_error(tmp_path: Path) -> None:
    sleeper = python("import time; time.sleep(60)")
    spec = ProcessSpec("silent", sleeper, health=TcpCheck(free_port()), ready_timeout_s=0.5)
    with Supervisor(tmp_path / "logs") as supervisor:
        with pytest.raises(ProcessFailedError, match="not ready"):
            supervisor.start(spec)
        process = supervisor.processes[0]
    assert not group_alive(process.pid)


def test_jobs_report_success_and_failure_and_get_separate_logs(tmp_path: Path) -> None:
    with Supervisor(tmp_path / "logs", base_env={"PATH": "/usr/bin:/bin"}) as supervisor:
        ok = supervisor.run_job(
            ProcessSpec("job", python("import os; print(os.environ['GREETING'])"),
                        env={"GREETING": "hello"}), timeout_s=30)
        assert ok.state is ProcessState.EXITED
        assert ok.log_path.read_text().strip() == "hello"
        with pytest.raises(JobFailedError, match="status 1"):
            supervisor.run_job(ProcessSpec("job", python("raise SystemExit(1)")), timeout_s=30)
        with pytest.raises(JobFailedError, match="still running"):
            supervisor.run_job(ProcessSpec("job", python("import time; time.sleep(60)"),
                                           grace_s=0.5), timeout_s=0.5)
        data = supervisor.run_job(ProcessSpec(
            "data", python("import sys; print('{}'); print('noise', file=sys.stderr)"),
            separate_stdout=True), timeout_s=30)
        assert data.stdout_path.read_text() == "{}\n"
        assert data.log_path.read_text() == "noise\n"
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == [
        "data.log", "data.out", "job-2.log", "job-3.log", "job.log"]


def test_check_alive_notices_a_service_that_died(tmp_path: Path) -> None:
    port = free_port()
    with Supervisor(tmp_path / "logs") as supervisor:
        web = supervisor.start(http_server(port))
        supervisor.check_alive()
        web.popen.kill()
        web.popen.wait()
        with pytest.raises(ProcessFailedError, match="exited unexpectedly"):
            supervisor.check_alive()


def test_paused_service_is_resumed_and_still_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    supervisor = Supervisor(tmp_path / "logs")
    web = supervisor.start(http_server(port))
    supervisor.pause(web)
    assert web.state is ProcessState.PAUSED
    with pytest.raises(httpx.TimeoutException):
        httpx.get(f"http://127.0.0.1:{port}/", timeout=0.5)
    supervisor.resume(web)
    assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 200
    supervisor.pause(web)
    began = time.monotonic()
    supervisor.stop_all()  # SIGTERM reaches a stopped process only with SIGCONT
    assert time.monotonic() - began < web.spec.grace_s
    assert web.state is ProcessState.STOPPED and not group_alive(web.pid)
