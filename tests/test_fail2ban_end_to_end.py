"""Moving from fail2ban in one command, end to end on real kernels: fail2ban's own
configuration tree (../shared/corpus/fail2ban-tree/config) as /etc/fail2ban of a test root,
with a jail.local enabling sshd and nginx-http-auth (maxretry 3, findtime 60, bantime 20),
is imported and copied into the root's /etc/arguard unchanged; check-config passes, and a
real `arguard run` in a "server" namespace drops each client after its 3rd failure on its
jail's ports (sshd: `port = ssh`, nginx-http-auth: `port = http,https`), as fail2ban's
iptables-multiport does, and lets it back in after 20 s.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, SHARED, require_corpus, write_config
from tests.daemon_process import failed_password, running_in, status, wait_for
from tests.netns import connect, namespace_pair, require_netns, run_in, tcp_listener

TREE = SHARED / "corpus" / "fail2ban-tree" / "config"
SERVER, SSH_CLIENT, WEB_CLIENT = "10.214.0.1", "10.214.0.2", "10.214.0.3"
SSH, WEB = 22, 80
BANTIME = 20


def connect_from(ns: str, source: str, port: int) -> str:
    return connect(ns, SERVER, port, timeout=0.5, source=source)


def nginx_auth_failure(address: str, user: str) -> str:
    stamp = time.strftime("%Y/%m/%d %H:%M:%S")
    return (f'{stamp} [error] 2865#0: *66647 user "{user}": password mismatch, client: '
            f'{address}, server: www.example.org, request: "GET /admin HTTP/1.1", host: '
            f'"www.example.org"\n')


def arguard(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "arguard.cli", *args], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.fixture
def root(request, tmp_path: Path) -> Path:
    """The test root: etc/fail2ban (fail2ban's tree and our jail.local), the logs, and
    etc/arguard with its own arguard.toml (shipped rules on) and the import copied in."""
    require_corpus(request, TREE)
    etc = tmp_path / "etc"
    shutil.copytree(TREE, etc / "fail2ban")
    logs = tmp_path / "var/log"
    (logs / "nginx").mkdir(parents=True)
    (logs / "auth.log").write_text("")
    (logs / "nginx/error.log").write_text("")
    (etc / "fail2ban/jail.local").write_text(f"""\
[DEFAULT]
maxretry = 3
findtime = 60
bantime = {BANTIME}

[sshd]
enabled = true
backend = auto
logpath = {logs}/auth.log

[nginx-http-auth]
enabled = true
logpath = {logs}/nginx/*error.log
""")
    out = tmp_path / "imported"
    result = arguard("import", "fail2ban", str(etc / "fail2ban"), "-o", str(out))
    assert result.returncode in (0, 2), result.stderr   # 2: mongodb-auth & co. reported
    assert "2 jails" in result.stderr
    (etc / "arguard").mkdir()
    config = write_config(etc / "arguard", extra="""
        [global]
        white_list = ["127.0.0.0/8", "::1"]
        """)
    shutil.copytree(out, etc / "arguard", dirs_exist_ok=True)     # cp -r OUT/. /etc/arguard/
    checked = arguard("check-config", "-c", str(config))
    assert checked.returncode == 0, checked.stderr
    assert "2 sources, 2 commands, 2 active responses" in checked.stdout
    return tmp_path


def blocked_targets(config: Path) -> dict[str, str]:
    return {b["target"]: b["command"] for b in status(config)["blocks"]["active"]}


def test_imported_jails_ban_after_three_failures_for_twenty_seconds(root: Path):
    require_netns()
    config = root / "etc/arguard/arguard.toml"
    with namespace_pair([f"{SERVER}/24"], [f"{SSH_CLIENT}/24", f"{WEB_CLIENT}/24"]) \
            as (server, client), tcp_listener(server, SSH), tcp_listener(server, WEB), \
            running_in(server, root, config) as process:
        assert connect_from(client, SSH_CLIENT, SSH) == "connected"
        assert connect_from(client, WEB_CLIENT, WEB) == "connected"
        with open(root / "var/log/auth.log", "a") as auth:
            auth.write("".join(failed_password(SSH_CLIENT, 50000 + i)
                               for i in range(2)))
        with open(root / "var/log/nginx/error.log", "a") as error_log:
            error_log.write("".join(nginx_auth_failure(WEB_CLIENT, f"u{i}")
                                    for i in range(2)))
        time.sleep(1)
        assert blocked_targets(config) == {}, "two failures are not enough"
        with open(root / "var/log/auth.log", "a") as auth:
            auth.write(failed_password(SSH_CLIENT, 50002))
        with open(root / "var/log/nginx/error.log", "a") as error_log:
            error_log.write(nginx_auth_failure(WEB_CLIENT, "u2"))
        wait_for(lambda: len(blocked_targets(config)) == 2, what="both bans")
        banned_at = time.monotonic()
        assert blocked_targets(config) == {SSH_CLIENT: "f2b-sshd",
                                           WEB_CLIENT: "f2b-nginx-http-auth"}
        assert connect_from(client, SSH_CLIENT, SSH) == "timeout"
        assert connect_from(client, SSH_CLIENT, WEB) == "connected", "ssh ports only"
        assert connect_from(client, WEB_CLIENT, WEB) == "timeout"
        assert connect_from(client, WEB_CLIENT, SSH) == "connected", "web ports only"
        ruleset = run_in(server, "nft", "list", "ruleset")
        assert "tcp dport 22 ip saddr @f2b-sshd-ip4" in ruleset
        for port in (80, 443):
            assert f"tcp dport {port} ip saddr @f2b-nginx-http-auth-ip4" in ruleset
        assert SSH_CLIENT in run_in(server, "nft", "list", "set", "inet", "arguard",
                                    "f2b-sshd-ip4")

        wait_for(lambda: connect_from(client, SSH_CLIENT, SSH) == "connected"
                 and connect_from(client, WEB_CLIENT, WEB) == "connected",
                 deadline=BANTIME + 15, what="the bans to be lifted")
        lifted_after = time.monotonic() - banned_at
        assert BANTIME - 3 <= lifted_after, f"lifted after {lifted_after:.1f} s"
        wait_for(lambda: not blocked_targets(config), what="status without blocks")
        assert process.terminate() == 0
