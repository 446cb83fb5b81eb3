"""Which processes the local platform still sees: a process group's live members, the processes
carrying a run id, whether a pid is alive. Zombies (exited, not yet reaped) count as gone."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import psutil

from fraudops.testing import wait_until
from local.layout import RUN_ID_ENV, pid_alive, run_members
from local.supervisor import group_alive, group_members

PY = sys.executable


def _is_zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_group_members_are_the_live_processes_of_the_group_only() -> None:
    # A group leader with a sleeping child and an exited child it never reaps (a zombie).
    leader = subprocess.Popen([PY, "-c", textwrap.dedent("""
        import subprocess, sys, time
        exited = subprocess.Popen([sys.executable, "-c", "pass"])
        sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        print(exited.pid, sleeper.pid, flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True, start_new_session=True)
    outsider = subprocess.Popen([PY, "-c", "import time; time.sleep(60)"])
    try:
        exited, sleeper = map(int, leader.stdout.readline().split())
        wait_until(lambda: _is_zombie(exited), timeout=10, what="the unreaped child a zombie")
        assert sorted(group_members(leader.pid)) == sorted([leader.pid, sleeper])
        assert group_alive(leader.pid)
    finally:
        os.killpg(leader.pid, 9)
        leader.wait()
        outsider.kill()
        outsider.wait()
    wait_until(lambda: not group_alive(leader.pid), timeout=10, what="the group gone")
    assert group_members(leader.pid) == []


def test_run_members_carry_the_run_id_and_are_alive() -> None:
    run_id = uuid.uuid4().hex
    env = {**os.environ, RUN_ID_ENV: run_id}
    member = subprocess.Popen([PY, "-c", "import time; time.sleep(60)"], env=env)
    other_run = subprocess.Popen([PY, "-c", "import time; time.sleep(60)"],
                                 env={**os.environ, RUN_ID_ENV: run_id + "0"})
    exited = subprocess.Popen([PY, "-c", "pass"], env=env)  # never waited for: a zombie
    try:
        wait_until(lambda: _is_zombie(exited.pid), timeout=10, what="the exited child a zombie")
        wait_until(lambda: member.pid in run_members(run_id), timeout=10, what="the member seen")
        assert run_members(run_id) == [member.pid]
    finally:
        for process in (member, other_run, exited):
            process.kill()
            process.wait()
    assert run_members(run_id) == []


def test_pid_alive_is_false_for_zombies_and_exited_processes() -> None:
    assert pid_alive(os.getpid())
    process = subprocess.Popen([PY, "-c", "pass"])
    wait_until(lambda: _is_zombie(process.pid), timeout=10, what="the exited child a zombie")
    assert not pid_alive(process.pid)
    process.wait()
    assert not pid_alive(process.pid)
    assert pid_alive(1)  # init: another user's process, alive


def test_the_local_unit_asks_psutil_not_proc() -> None:
    """Process information comes from psutil (portable, one parser), not from reading /proc."""
    import local.supervisor

    readers = [path.name for path in Path(local.supervisor.__file__).parent.rglob("*.py")
               if '"/proc' in path.read_text(encoding="utf-8")]
    assert readers == []
