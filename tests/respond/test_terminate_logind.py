"""terminate-sessions' D-Bus side: the TerminateUser call as logind receives it.

systemd-logind cannot run in a test (it needs systemd as PID 1), so a private dbus-daemon
carries the call to a stand-in that owns logind's bus name, records each call and answers
as logind does (a method return, or org.freedesktop.login1.NoSuchUser for an account
without sessions). The stand-in ends nothing: the processes, in the test's own PID
namespace, are ended by what terminate-sessions does after logind's answer."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading

import pytest

from tests.netns import ActionProcess
from tests.pidns import ProcessLab
from tests.respond.test_terminate import ALICE, passwd_text

pytestmark = pytest.mark.skipif(shutil.which("dbus-daemon") is None and
                                os.environ.get("CI") != "true",
                                reason="needs dbus-daemon (package dbus-daemon)")


class StandInLogind:
    """Owns org.freedesktop.login1 on the bus at `address` and answers TerminateUser."""

    def __init__(self, address: str, answer: str):
        from jeepney.bus_messages import message_bus
        from jeepney.io.blocking import open_dbus_connection

        self.answer = answer
        self.calls: list[tuple[str, str, tuple]] = []
        self.connection = open_dbus_connection(address)
        reply = self.connection.send_and_get_reply(
            message_bus.RequestName("org.freedesktop.login1"), timeout=5)
        assert reply.body == (1,), reply.body  # the primary owner
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        from jeepney import HeaderFields, MessageType, new_error, new_method_return

        while True:
            try:
                message = self.connection.receive()
            except OSError:
                return
            if message.header.message_type != MessageType.method_call:
                continue
            fields = message.header.fields
            self.calls.append((fields[HeaderFields.member], fields.get(HeaderFields.signature),
                               message.body))
            if self.answer == "no session":
                reply = new_error(message, "org.freedesktop.login1.NoSuchUser", "s",
                                  (f"User ID {message.body[0]} is not logged in or lingering",))
            else:
                reply = new_method_return(message)
            self.connection.send(reply)

    def close(self) -> None:
        self.connection.close()


@pytest.fixture
def bus(tmp_path):
    daemon = subprocess.Popen(["dbus-daemon", "--session", "--nofork", "--print-address",
                               f"--address=unix:path={tmp_path / 'bus'}"],
                              stdout=subprocess.PIPE, text=True)
    try:
        yield daemon.stdout.readline().strip()
    finally:
        daemon.kill()
        daemon.wait()


@pytest.mark.parametrize("answer, ended_by", [("asked", "SIGKILL"),
                                              ("no session", "SIGTERM")])
def test_logind_is_asked_first_and_what_is_left_is_ended(bus, tmp_path, monkeypatch, answer,
                                                         ended_by):
    """Asked: logind has had the grace to stop the processes, arguard SIGKILLs what is left
    (here: all, since the stand-in ends nothing). No session: arguard's own SIGTERM."""
    logind = StandInLogind(bus, answer)
    (tmp_path / "passwd").write_text(passwd_text())
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", bus)
    with ProcessLab() as lab:
        running = sorted([lab.spawn(ALICE), lab.spawn(ALICE)])
        with ActionProcess(None, "terminate-sessions", {"passwd": str(tmp_path / "passwd"),
                                                        "grace": 0.3}, expect="user",
                           prefix=lab.enter()) as action:
            detail = action.add("alice")
        assert [lab.ended(pid, wait=5) for pid in running] == [ended_by, ended_by]
    logind.close()
    assert logind.calls == [("TerminateUser", "u", (ALICE,))]
    assert detail == (f"logind: {answer}; ended 2 processes of UID {ALICE}: "
                      f"{running[0]} {running[1]} ({ended_by})")
