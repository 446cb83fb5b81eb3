"""The `fraudops` command line loads only the unit a command names.

Each unit imports its own stack (kfp and the Kubernetes client for `pipeline`, torch and KServe
for `serve`): `fraudops consume` started in 6 s instead of 14 s on a busy 2-core machine once it
stopped importing the others. Run in a fresh interpreter, so that nothing imported by other
tests hides an import.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PROBE = """
import json, sys
sys.argv = ["fraudops", *{args!r}]
from fraudops.cli import app, main
try:
    main()
except SystemExit as stop:
    code = stop.code
print(json.dumps({{"code": code,
                  "groups": sorted(g.name for g in app.registered_groups),
                  "commands": sorted(c.name for c in app.registered_commands),
                  "kfp": "kfp" in sys.modules, "torch": "torch" in sys.modules}}))
"""


def probe(*args: str) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE.format(args=list(args))],
                          capture_output=True, text=True, timeout=120, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_unit_command_loads_that_unit_alone():
    result = probe("-v", "consume", "--help")
    assert result["code"] == 0
    assert "consume" in result["commands"]
    assert not {"serve", "pipeline", "drift"} & set(result["groups"]), result
    assert not result["kfp"] and not result["torch"]


def test_the_root_commands_load_no_unit():
    result = probe("db", "--help")
    assert result["code"] == 0
    assert result["commands"] == [] and "db" in result["groups"]
    assert not result["kfp"] and not result["torch"]


@pytest.mark.parametrize("args", [("--help",), ("no-such-command",)])
def test_help_and_unknown_commands_see_every_unit(args):
    result = probe(*args)
    assert result["code"] == (0 if args == ("--help",) else 2)
    assert {"serve", "pipeline", "drift"} <= set(result["groups"])
    assert {"consume", "demo", "up"} <= set(result["commands"])
