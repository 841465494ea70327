"""The action contract: an action module describes itself and is registered in one line.

A test action (tests/respond/recording_action.py) registered at run time is validated by the
loader, decided on, applied, lifted and reconciled, in process and in a real daemon, with no
change anywhere else; config.py, daemon.py and scheduler.py name no action; describing the
actions (what check-config and logtest do) loads no kernel library.
"""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from arguard.config import load_config
from arguard.errors import ConfigError
from arguard.respond.actions import ACTIONS
from arguard.respond.stage import build_respond_stage
from arguard.store import Store
from tests.conftest import REPO, write_config
from tests.daemon_process import ArguardProcess, arguard, failed_password, wait_for
from tests.respond import recording_action
from tests.respond.test_policy import make_alert

LAUNCHER = "tests.respond.recording_action"
RECORDER = """
    [[command]]
    name = "rec"
    action = "recorder"
    timeout_allowed = true
    file = "recorded.json"
    {extra}

    [[active_response]]
    command = "rec"
    rules_id = [5763]
    timeout = 600
    """


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(ACTIONS, recording_action.NAME, recording_action.__name__)


def recorder_config(directory: Path, extra: str = "", sources: str = "") -> Path:
    return write_config(directory, extra=textwrap.dedent(sources)
                        + textwrap.dedent(RECORDER.format(extra=extra)))


def problems(path: Path) -> str:
    """The configuration's problems, one a line (a bad command is reported, and so is the
    active response that names it)."""
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    return "\n".join(str(problem) for problem in raised.value.problems)


def recorded(directory: Path) -> dict:
    path = directory / "recorded.json"
    return json.loads(path.read_text()) if path.exists() else {}


def test_the_loader_validates_a_registered_action_by_its_description(tmp_path, registered):
    config = load_config(recorder_config(tmp_path))
    command = config.commands["rec"]
    assert dict(command.options) == {"file": str(tmp_path / "recorded.json"), "label": "rec"}
    assert command.expect == "srcip"

    assert ("arguard.toml:17: unknown key 'colour' in [command] (action 'recorder' takes: "
            "file, label)") in problems(recorder_config(tmp_path, 'colour = "red"'))
    assert "arguard.toml:17: label must be a string" in problems(
        recorder_config(tmp_path, "label = 5"))
    assert ("arguard.toml:17: expect 'dstuser' gives targets of kind user, but action "
            "'recorder' acts on targets of kind ip") in problems(
        recorder_config(tmp_path, 'expect = "dstuser"'))


def test_without_its_registry_line_the_action_does_not_exist(tmp_path):
    assert "arguard.toml:14: unknown action 'recorder'" in problems(recorder_config(tmp_path))


def test_a_registered_action_is_applied_lifted_and_reconciled(tmp_path, registered):
    config = load_config(recorder_config(tmp_path))
    store = Store(config.paths.database)
    stage = build_respond_stage(config, store)
    [response] = stage.policy.decide(make_alert(5763, srcip="203.0.113.5"))
    [applied] = stage.responder.apply([response])
    assert applied.verb == "add"
    assert recorded(tmp_path)["203.0.113.5"]["timeout"] == 600
    assert recorded(tmp_path)["203.0.113.5"]["label"] == f"rec@{stage.owner.tag}"

    (tmp_path / "recorded.json").write_text(json.dumps({"198.51.100.1": {}}))
    counts = stage.responder.reconcile().counts()
    assert counts == {"lifted": 0, "restored": 1, "removed": 1, "adopted": 0, "failed": 0}
    assert set(recorded(tmp_path)) == {"203.0.113.5"}
    assert [a.verb for a in stage.unblock("203.0.113.5")] == ["delete"]
    assert recorded(tmp_path) == {}


def test_the_responder_asks_the_action_whether_it_runs_detached(tmp_path, registered,
                                                               monkeypatch):
    monkeypatch.setattr(recording_action, "ACTION",
                        dataclasses.replace(recording_action.ACTION, detached=True))
    config = load_config(recorder_config(tmp_path))
    stage = build_respond_stage(config, Store(config.paths.database))
    assert stage.responder.detached("rec")
    [response] = stage.policy.decide(make_alert(5763, srcip="203.0.113.5"))
    [applied] = asyncio.run(stage.responder.apply_async([response]))
    assert applied.verb == "add"
    assert recorded(tmp_path)["203.0.113.5"]["thread"] != threading.main_thread().name


def test_a_registered_action_in_a_real_daemon(tmp_path):
    """The daemon and the CLI, started through a launcher that registers the action."""
    (tmp_path / "auth.log").write_text("")
    config = recorder_config(tmp_path, sources="""
        [[source]]
        path = "auth.log"
        """)
    process = ArguardProcess(tmp_path, config, module=LAUNCHER)
    try:
        process.wait_notified("READY=1")
        with open(tmp_path / "auth.log", "a") as log:
            log.write("".join(failed_password("203.0.113.5", 40000 + i) for i in range(8)))
        wait_for(lambda: "203.0.113.5" in recorded(tmp_path), what="the recorded block")
        arguard(config, "block", "198.51.100.7", "--timeout", "1h", module=LAUNCHER, check=True)
        assert set(recorded(tmp_path)) == {"203.0.113.5", "198.51.100.7"}
        assert process.terminate() == 0
    finally:
        process.close()

    (tmp_path / "recorded.json").unlink()  # the backend forgot everything while it was down
    process = ArguardProcess(tmp_path, config, module=LAUNCHER)
    try:
        process.wait_notified("READY=1")
        assert set(recorded(tmp_path)) == {"203.0.113.5", "198.51.100.7"}
        status = json.loads(arguard(config, "status", "--json", module=LAUNCHER).stdout)
        assert status["blocks"]["totals"] == {"rec": 2}
        arguard(config, "unblock", "198.51.100.7", module=LAUNCHER, check=True)
        assert set(recorded(tmp_path)) == {"203.0.113.5"}
    finally:
        process.close()


def _string_constants(path: Path) -> set[str]:
    return {node.value for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)}


@pytest.mark.parametrize("module", ["config.py", "daemon.py", "respond/scheduler.py"])
def test_these_modules_name_no_action(module):
    source = REPO / "arguard" / module
    assert not set(ACTIONS) & _string_constants(source)
    imported = {alias.name for node in ast.walk(ast.parse(source.read_text()))
                if isinstance(node, ast.ImportFrom) for alias in node.names}
    imported |= {node.module for node in ast.walk(ast.parse(source.read_text()))
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert not {name for name in imported
                if name.startswith("arguard.respond.actions.") or name in ACTIONS}


def test_describing_every_action_loads_no_kernel_library():
    """What check-config and logtest do: the shipped configuration is loaded (every command
    validated by its action's description) and every registered action is described."""
    code = textwrap.dedent("""
        import json, sys
        from arguard.config import load_config
        from arguard.respond.actions import ACTIONS, action_type
        load_config(None)
        described = {name: action_type(name).summary for name in ACTIONS}
        print(json.dumps(sorted(m for m in sys.modules
                                if m.split(".")[0] in ("iptc", "pyroute2"))))
        """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, check=True)
    assert json.loads(done.stdout) == []

