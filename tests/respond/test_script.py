"""Custom active-response scripts: real executables in a temp bin directory, Wazuh's 4.x
stdin protocol with check_keys, legacy argv, refusals, timeouts and bounded output."""

from __future__ import annotations

import json
import os
import select
import sys
from pathlib import Path

import pytest

from arguard.config import Command
from arguard.model import Alert, Event, FileChange, Line, Predecoded, RuleInfo
from arguard.respond.actions.base import ActionError
from arguard.respond.actions.script import SAFE_PATH, ScriptAction
from arguard.syscheck import change_event

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="scripts must be owned by root")

TARGET = "203.0.113.5"

# Modelled on Wazuh's documented custom active response (custom-ar.py): one JSON line on
# stdin, check_keys on add, then act on the answer. Results go to the file named by the
# first extra argument; a last read shows that arguard closed stdin after the exchange.
PYTHON_AR = f"""#!{sys.executable}
import json, os, sys

def main():
    message = json.loads(sys.stdin.readline())
    alert = message["parameters"]["alert"]
    out = open(message["parameters"]["extra_args"][0], "a")
    srcip = alert["data"]["srcip"]
    if message["command"] == "add":
        keys = [srcip]
        print(json.dumps({{"version": 1, "origin": {{"name": os.path.basename(sys.argv[0]),
                          "module": "active-response"}}, "command": "check_keys",
                          "parameters": {{"keys": keys}}}}))
        sys.stdout.flush()
        answer = json.loads(sys.stdin.readline())["command"]
        if answer != "continue":
            out.write("aborted " + srcip + "\\n")
        else:
            out.write("add " + srcip + " rule " + alert["rule"]["id"] + "\\n")
    elif message["command"] == "delete":
        out.write("delete " + srcip + "\\n")
    out.write("eof " + repr(sys.stdin.read()) + "\\n")

main()
"""

# The same in POSIX sh, as an admin's existing script would be written (no jq).
SH_AR = """#!/bin/sh
read -r INPUT
COMMAND=$(printf '%s\\n' "$INPUT" | sed -n 's/.*"command":"\\([a-z]*\\)".*/\\1/p')
SRCIP=$(printf '%s\\n' "$INPUT" | sed -n 's/.*"srcip":"\\([0-9a-fA-F.:]*\\)".*/\\1/p')
OUT=$(printf '%s\\n' "$INPUT" | sed -n 's/.*"extra_args":\\["\\([^"]*\\)".*/\\1/p')
if [ "$COMMAND" = add ]; then
    printf '{"version":1,"origin":{"name":"sh-ar","module":"active-response"},'
    printf '"command":"check_keys","parameters":{"keys":["%s"]}}\\n' "$SRCIP"
    read -r REPLY
    case "$REPLY" in
        *'"command":"continue"'*) echo "add $SRCIP" >> "$OUT" ;;
        *'"command":"abort"'*) echo "aborted $SRCIP" >> "$OUT"; exit 0 ;;
        *) echo "bad reply: $REPLY" >&2; exit 1 ;;
    esac
elif [ "$COMMAND" = delete ]; then
    echo "delete $SRCIP" >> "$OUT"
else
    echo "bad command" >&2
    exit 1
fi
"""


def make_alert(srcip: str = TARGET, **fields: str) -> Alert:
    text = f"Nov 22 13:40:01 host sshd[123]: Invalid user admin from {srcip} port 4242"
    line = Line(text=text, location="/var/log/auth.log", received=1_700_000_000.0)
    pre = Predecoded(message=text.split(": ", 1)[1], timestamp="Nov 22 13:40:01",
                     hostname="host", program_name="sshd", pid="123", header=True)
    event = Event(line=line, pre=pre, time=1_700_000_000.0, decoder="sshd",
                  fields={"srcip": srcip, "srcuser": "admin", **fields})
    rule = RuleInfo(id=5712, level=10, description="sshd: brute force",
                    groups=("authentication_failures",), mitre=("T1110",))
    return Alert(id="1700000000.4242", rule=rule, event=event, firedtimes=3)


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "bin"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    return directory


def install(bin_dir: Path, name: str, text: str, mode: int = 0o750) -> Path:
    path = bin_dir / name
    path.write_text(text)
    path.chmod(mode)
    return path


def command(executable: str, *extra: str, legacy: bool = False, expect: str = "srcip",
            exec_timeout: float = 30) -> Command:
    return Command(name="custom-ar", action="script", expect=expect, executable=executable,
                   extra_args=extra, legacy_args=legacy, options={"exec_timeout": exec_timeout})


@pytest.mark.parametrize("name, text", [("custom-ar.py", PYTHON_AR), ("custom-ar.sh", SH_AR)],
                         ids=["python", "sh"])
def test_wazuh_style_script_add_continue_delete(bin_dir, tmp_path, name, text):
    install(bin_dir, name, text)
    out = tmp_path / "result.txt"
    action = ScriptAction(command(name, str(out)), bin_dir)
    result = action.run("add", TARGET, make_alert())
    assert result.ok and result.keys == (TARGET,) and result.answer == "continue"
    action.delete(TARGET)
    lines = out.read_text().splitlines()
    if name.endswith(".py"):
        assert lines == [f"add {TARGET} rule 5712", "eof ''", f"delete {TARGET}", "eof ''"]
    else:
        assert lines == [f"add {TARGET}", f"delete {TARGET}"]
    assert action.check(TARGET) is False
    assert action.list_targets() is None


@pytest.mark.parametrize("name, text", [("custom-ar.py", PYTHON_AR), ("custom-ar.sh", SH_AR)],
                         ids=["python", "sh"])
def test_check_keys_gets_abort_when_already_active(bin_dir, tmp_path, name, text):
    install(bin_dir, name, text)
    out = tmp_path / "result.txt"
    asked = []

    def is_active(keys):
        asked.append(list(keys))
        return True

    action = ScriptAction(command(name, str(out)), bin_dir, is_active=is_active)
    result = action.run("add", TARGET, make_alert())
    assert result.ok and result.answer == "abort"
    action.add(TARGET, 600, make_alert())   # an aborted script is not a failure
    assert asked == [[TARGET], [TARGET]]
    assert out.read_text().splitlines()[0] == f"aborted {TARGET}"


def test_message_on_stdin_is_wazuh_4x_format(bin_dir, tmp_path):
    dump = tmp_path / "message.json"
    install(bin_dir, "dump", f"#!/bin/sh\nhead -n 1 > {dump}\n")
    action = ScriptAction(command("dump", "-x", "--flag"), bin_dir)
    action.add("::ffff:203.0.113.5", 600, make_alert(srcip="::ffff:203.0.113.5"))
    message = json.loads(dump.read_text())
    program = os.path.realpath(bin_dir / "dump")
    assert message["version"] == 1
    assert message["origin"] == {"name": "", "module": "arguard"}
    assert message["command"] == "add"
    assert message["parameters"]["extra_args"] == ["-x", "--flag"]
    assert message["parameters"]["program"] == program
    alert = message["parameters"]["alert"]
    assert alert["rule"]["id"] == "5712" and alert["rule"]["level"] == 10
    assert alert["rule"]["mitre"] == {"id": ["T1110"]}
    assert alert["id"] == "1700000000.4242"
    assert alert["data"]["srcip"] == TARGET      # the validated, normalised target
    assert alert["data"]["srcuser"] == "admin"
    assert alert["location"] == "/var/log/auth.log"
    assert "Invalid user admin" in alert["full_log"]


def test_delete_without_alert_sends_minimal_alert_with_target(bin_dir, tmp_path):
    dump = tmp_path / "message.json"
    install(bin_dir, "dump", f"#!/bin/sh\nhead -n 1 > {dump}\n")
    ScriptAction(command("dump", expect="dstuser"), bin_dir).delete("alice")
    message = json.loads(dump.read_text())
    assert message["command"] == "delete"
    assert message["parameters"]["alert"]["data"] == {"dstuser": "alice"}


def test_argv_and_clean_environment(bin_dir, tmp_path):
    dump = tmp_path / "env.json"
    install(bin_dir, "env.py", f"""#!{sys.executable}
import json, os, sys
sys.stdin.readline()
json.dump({{"argv": sys.argv[1:], "env": dict(os.environ), "cwd": os.getcwd(),
            "session": os.getsid(0) == os.getpid()}}, open({str(dump)!r}, "w"))
""")
    os.environ["ARGUARD_TEST_SECRET"] = "leak"
    try:
        ScriptAction(command("env.py", "one", "two words"), bin_dir).add(TARGET, None, None)
    finally:
        del os.environ["ARGUARD_TEST_SECRET"]
    seen = json.loads(dump.read_text())
    assert seen["argv"] == ["one", "two words"]
    assert seen["env"]["PATH"] == SAFE_PATH
    assert set(seen["env"]) <= {"PATH", "LC_CTYPE"}   # LC_CTYPE: Python's own C-locale coercion
    assert seen["cwd"] == "/"
    assert seen["session"]


def test_legacy_args(bin_dir, tmp_path):
    out = tmp_path / "argv.txt"
    install(bin_dir, "legacy.sh",
            f'#!/bin/sh\nfor a in "$@"; do echo "$a"; done > {out}\n'
            f'if read -r line; then echo "stdin: $line" >> {out}; fi\n')
    action = ScriptAction(command("legacy.sh", legacy=True), bin_dir)
    action.add(TARGET, 600, make_alert(dstuser="bob"))
    assert out.read_text().splitlines() == [
        "add", "bob", TARGET, "1700000000.4242", "5712", "/var/log/auth.log", "-", "-"]
    action = ScriptAction(command("legacy.sh", "extra1", "extra2", legacy=True), bin_dir)
    action.delete(TARGET)
    assert out.read_text().splitlines() == [
        "delete", "-", TARGET, "-", "-", "-", "-", "extra1", "extra2"]


def test_legacy_args_pass_only_valid_alert_fields(bin_dir, tmp_path):
    out = tmp_path / "argv.txt"
    install(bin_dir, "legacy.sh", f'#!/bin/sh\nfor a in "$@"; do echo "$a"; done > {out}\n')
    action = ScriptAction(command("legacy.sh", legacy=True, expect="srcuser"), bin_dir)
    action.add("admin", None, make_alert(srcip="not-an-ip", dstuser="-rf /"))
    assert out.read_text().splitlines()[:3] == ["add", "admin", "-"]


def fim_alert(path: str) -> Alert:
    """A file integrity alert (rule 550) for `path`, as the integrity source makes it."""
    change = FileChange(path, "modified", "realtime", None, None, ("sha256",), 1_700_000_000.0)
    rule = RuleInfo(id=550, level=7, description="Integrity checksum changed.",
                    groups=("ossec", "syscheck"), mitre=("T1565.001",))
    return Alert(id="1700000000.7", rule=rule, event=change_event(change, frozenset()),
                 firedtimes=1)


def test_expect_filename_gives_the_path_as_syscheck_path_and_as_legacy_filename(bin_dir,
                                                                                tmp_path):
    dump = tmp_path / "message.json"
    install(bin_dir, "dump", f"#!/bin/sh\nhead -n 1 > {dump}\n")
    ScriptAction(command("dump", expect="filename"), bin_dir).add(
        "/etc/nginx/nginx.conf", None, fim_alert("/etc/nginx/nginx.conf"))
    alert = json.loads(dump.read_text())["parameters"]["alert"]
    assert alert["syscheck"]["path"] == "/etc/nginx/nginx.conf"
    assert alert["rule"]["id"] == "550" and "data" not in alert

    out = tmp_path / "argv.txt"
    install(bin_dir, "legacy.sh", f'#!/bin/sh\nfor a in "$@"; do echo "$a"; done > {out}\n')
    ScriptAction(command("legacy.sh", legacy=True, expect="filename"), bin_dir).add(
        "/etc/nginx/nginx.conf", None, fim_alert("/etc/nginx/nginx.conf"))
    assert out.read_text().splitlines() == [
        "add", "-", "-", "1700000000.7", "550", "syscheck", "/etc/nginx/nginx.conf", "-"]
    with pytest.raises(ActionError, match="not a file path"):
        ScriptAction(command("dump", expect="filename"), bin_dir).add("etc/x", None, None)


def test_script_that_never_answers_gets_stdin_closed(bin_dir, tmp_path):
    """It waits for a continue/abort line without sending check_keys: arguard closes stdin
    after reply_timeout and the script sees end of file."""
    out = tmp_path / "out.txt"
    install(bin_dir, "silent.sh",
            f"#!/bin/sh\nread -r msg\nif read -r reply; then echo got >> {out}; "
            f"else echo eof >> {out}; fi\n")
    result = ScriptAction(command("silent.sh"), bin_dir, reply_timeout=0.2).run(
        "add", TARGET, make_alert())
    assert result.ok and result.keys is None and result.answer is None
    assert out.read_text() == "eof\n"


def test_script_reading_stdin_to_eof_does_not_hang(bin_dir, tmp_path):
    out = tmp_path / "stdin.txt"
    install(bin_dir, "cat.sh", f"#!/bin/sh\ncat > {out}\n")
    ScriptAction(command("cat.sh"), bin_dir, reply_timeout=0.2).add(TARGET, None, make_alert())
    lines = out.read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["command"] == "add"


def test_script_exiting_without_reading_stdin(bin_dir):
    install(bin_dir, "quick.sh", "#!/bin/sh\necho done\n")
    alert = make_alert()
    result = ScriptAction(command("quick.sh"), bin_dir).run("add", TARGET, alert)
    assert result.ok and result.stdout == "done\n"


def test_slow_script_is_killed_with_its_process_group(bin_dir, tmp_path):
    pids = tmp_path / "pids"
    install(bin_dir, "slow.sh", f"#!/bin/sh\nsleep 300 &\necho $! > {pids}\nwait\n")
    action = ScriptAction(command("slow.sh", exec_timeout=0.5), bin_dir)
    with pytest.raises(ActionError, match="exec_timeout"):
        action.add(TARGET, None, make_alert())
    result = action.run("add", TARGET, make_alert())
    assert result.timed_out and result.returncode is None
    child = int(pids.read_text())
    try:
        pidfd = os.pidfd_open(child)
    except ProcessLookupError:
        return  # already gone
    try:  # readable once the process has exited; the bound only guards against a hang
        assert select.select([pidfd], [], [], 30)[0], f"child {child} survived the kill"
    finally:
        os.close(pidfd)


def test_failure_reports_exit_status_and_stderr(bin_dir):
    install(bin_dir, "fail.sh", "#!/bin/sh\necho 'first' >&2\necho 'iptables: not found' >&2\n"
                                "exit 3\n")
    with pytest.raises(ActionError, match="status 3: iptables: not found"):
        ScriptAction(command("fail.sh"), bin_dir).add(TARGET, None, make_alert())


def test_output_is_bounded(bin_dir):
    install(bin_dir, "loud.sh", "#!/bin/sh\nhead -c 1000000 /dev/zero | tr '\\0' x\n"
                                "head -c 300000 /dev/zero | tr '\\0' y >&2\n")
    result = ScriptAction(command("loud.sh"), bin_dir, output_limit=4096).run(
        "add", TARGET, make_alert())
    assert result.ok
    assert result.stdout.startswith("x" * 4096)
    assert result.stdout.endswith("[995904 more bytes not kept]")
    assert result.stderr.endswith("[295904 more bytes not kept]")


@pytest.mark.parametrize("target", ["", "203.0.113.5; reboot", "example.com", "10.0.0.0/8",
                                    "-rf", "fe80::1%eth0 x", "1.2.3.4\n"])
def test_refuses_bad_ip_targets(bin_dir, tmp_path, target):
    marker = tmp_path / "ran"
    install(bin_dir, "ar.sh", f"#!/bin/sh\ntouch {marker}\n")
    with pytest.raises(ActionError, match="not an IP address"):
        ScriptAction(command("ar.sh"), bin_dir).add(target, None, None)
    assert not marker.exists()


@pytest.mark.parametrize("target", ["../etc", "a/b", "a:b", "a b", "-x", "a\x07"])
def test_refuses_bad_user_targets(bin_dir, tmp_path, target):
    marker = tmp_path / "ran"
    install(bin_dir, "ar.sh", f"#!/bin/sh\ntouch {marker}\n")
    with pytest.raises(ActionError, match="not a valid user name"):
        ScriptAction(command("ar.sh", expect="dstuser"), bin_dir).delete(target)
    assert not marker.exists()


def refused(bin_dir: Path, name: str, match: str) -> None:
    with pytest.raises(ActionError, match=match):
        ScriptAction(command(name), bin_dir).add(TARGET, None, make_alert())


def test_refuses_group_writable_script(bin_dir, tmp_path):
    marker = tmp_path / "ran"
    install(bin_dir, "gw.sh", f"#!/bin/sh\ntouch {marker}\n", mode=0o770)
    refused(bin_dir, "gw.sh", "group- or world-writable")
    assert not marker.exists()


def test_refuses_world_writable_script(bin_dir):
    install(bin_dir, "ww.sh", "#!/bin/sh\n", mode=0o757)
    refused(bin_dir, "ww.sh", "group- or world-writable")


def test_refuses_script_not_owned_by_root(bin_dir):
    os.chown(install(bin_dir, "nobody.sh", "#!/bin/sh\n"), 65534, 65534)
    refused(bin_dir, "nobody.sh", "not owned by root")


def test_refuses_non_executable_and_missing_and_non_regular(bin_dir):
    install(bin_dir, "plain.sh", "#!/bin/sh\n", mode=0o644)
    refused(bin_dir, "plain.sh", "not executable")
    refused(bin_dir, "missing.sh", "No such file")
    (bin_dir / "subdir").mkdir()
    refused(bin_dir, "subdir", "not a regular file")


def test_refuses_writable_bin_directory(bin_dir):
    install(bin_dir, "ok.sh", "#!/bin/sh\n")
    bin_dir.chmod(0o775)
    refused(bin_dir, "ok.sh", "group- or world-writable")
    bin_dir.chmod(0o1777)   # sticky is not enough for the bin directory itself
    refused(bin_dir, "ok.sh", "group- or world-writable")


def test_refuses_writable_parent_directory(tmp_path):
    parent = tmp_path / "shared"
    parent.mkdir()
    parent.chmod(0o777)
    directory = parent / "bin"
    directory.mkdir(mode=0o755)
    install(directory, "ok.sh", "#!/bin/sh\n")
    refused(directory, "ok.sh", f"{parent} is group- or world-writable")


def test_refuses_symlink_escaping_the_directory(bin_dir, tmp_path):
    outside = install(tmp_path, "evil.sh", f"#!/bin/sh\ntouch {tmp_path / 'ran'}\n")
    (bin_dir / "escape.sh").symlink_to(outside)
    (bin_dir / "dotdot.sh").symlink_to("../evil.sh")
    refused(bin_dir, "escape.sh", "outside")
    refused(bin_dir, "dotdot.sh", "outside")
    assert not (tmp_path / "ran").exists()


def test_symlink_inside_the_directory_is_allowed(bin_dir, tmp_path):
    marker = tmp_path / "ran"
    install(bin_dir, "real.sh", f"#!/bin/sh\ntouch {marker}\n")
    (bin_dir / "alias.sh").symlink_to("real.sh")
    ScriptAction(command("alias.sh"), bin_dir).add(TARGET, None, make_alert())
    assert marker.exists()


def test_refuses_path_in_executable_name(bin_dir):
    for name in ("../x", "sub/x", "..", "."):
        with pytest.raises(ActionError):
            ScriptAction(command(name), bin_dir).add(TARGET, None, None)


def test_bad_interpreter_is_an_action_error(bin_dir):
    install(bin_dir, "broken.sh", "#!/nonexistent/interpreter\n")
    refused(bin_dir, "broken.sh", "cannot start")


def test_output_before_check_keys_is_captured_and_the_keys_still_answered(bin_dir):
    keys = '{"version":1,"origin":{},"command":"check_keys","parameters":{"keys":["k"]}}'
    install(bin_dir, "chatty.sh", "#!/bin/sh\nread -r msg\necho 'starting up'\n"
            f"echo '{keys}'\nread -r reply\necho \"$reply\"\n")
    result = ScriptAction(command("chatty.sh"), bin_dir).run("add", TARGET, make_alert())
    assert result.ok and result.keys == ("k",) and result.answer == "continue"
    lines = result.stdout.splitlines()
    assert lines[0] == "starting up"
    assert json.loads(lines[2]) == {"version": 1, "origin": {"name": "", "module": "arguard"},
                                    "command": "continue", "parameters": {}}


def test_long_log_line_is_shortened_to_fit_wazuh_line_buffer(bin_dir, tmp_path):
    dump = tmp_path / "message.json"
    install(bin_dir, "dump", f"#!/bin/sh\nhead -n 1 > {dump}\n")
    alert = make_alert()
    long_line = Line(text="x" * 200_000, location="/var/log/auth.log", received=0.0)
    alert = Alert(id=alert.id, rule=alert.rule, firedtimes=1,
                  event=Event(line=long_line, pre=alert.event.pre, time=0.0,
                              fields=alert.event.fields))
    ScriptAction(command("dump"), bin_dir).add(TARGET, None, alert)
    raw = dump.read_bytes()
    assert len(raw) <= 65536
    message = json.loads(raw)
    assert message["parameters"]["alert"]["full_log"].startswith("xxx")
    assert message["parameters"]["alert"]["data"]["srcip"] == TARGET
