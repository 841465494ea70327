"""Progress bars of long work: on a terminal (a real pty of the test's) they show the share
done and lines/s on stderr; piped, stderr carries none of it and stdout never does."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from tests.conftest import REPO

WAZUH_FIXTURES = REPO / "tests/importers/fixtures/wazuh"


def auth_log(path: Path) -> Path:
    path.write_text("".join(f"Mar  1 10:{i // 60:02}:{i % 60:02} srv sshd[9]: Failed password "
                            f"for root from 198.51.100.{i % 200} port {40000 + i} ssh2\n"
                            for i in range(3000)))
    return path


def on_terminal(*args: str, stdin: Path | None = None) -> tuple[str, str]:
    """Run the CLI with stderr on a pty of 120 columns; (stdout, what the terminal got)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    with open(stdin or os.devnull, "rb") as source:
        process = subprocess.Popen([sys.executable, "-m", "arguard.cli", *args], stdin=source,
                                   stdout=subprocess.PIPE, stderr=slave,
                                   env={**os.environ, "PYTHONPATH": str(REPO)})
    os.close(slave)
    screen = b""
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:       # EIO: the child closed the terminal
            break
        if not data:
            break
        screen += data
    os.close(master)
    stdout = process.stdout.read().decode()
    assert process.wait(60) in (0, 2), screen.decode()
    return stdout, screen.decode()


def piped(*args: str, stdin: Path | None = None) -> subprocess.CompletedProcess:
    with open(stdin or os.devnull, "rb") as source:
        return subprocess.run([sys.executable, "-m", "arguard.cli", *args], stdin=source,
                              capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.mark.parametrize("command", [["replay"], ["logtest", "--summary"]])
def test_a_bar_with_lines_per_second_on_a_terminal_and_nothing_when_piped(tmp_path, command):
    log = auth_log(tmp_path / "auth.log")
    stdout, screen = on_terminal(*command, str(log))
    assert f"{command[0]}: 100%|" in screen, screen
    assert re.search(r"\| (\S+)/\1 B, 3,000 lines, [\d,]+ lines/s \[", screen), screen
    assert "%|" not in stdout
    result = piped(*command, str(log))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_logtest_summary_from_a_pipe_counts_bytes_and_lines(tmp_path):
    log = auth_log(tmp_path / "auth.log")
    _, screen = on_terminal("logtest", "--summary", stdin=log)
    assert "logtest: " in screen and "3,000 lines, " in screen, screen


def test_import_shows_the_files_done(tmp_path):
    files = [str(WAZUH_FIXTURES / name) for name in ("decoders.xml", "rules.xml")]
    _, screen = on_terminal("import", "wazuh", *files, "-o", str(tmp_path / "a"))
    assert "import wazuh: 100%|" in screen and "2/2 file" in screen, screen
    result = piped("import", "wazuh", *files, "-o", str(tmp_path / "b"))
    assert "import wazuh" not in result.stderr and "\r" not in result.stderr
