"""Deterministic benchmark workloads: a mixed BSD-syslog auth.log and a combined web access log.

    python benchmarks/workload.py auth -n 1000000 -o /tmp/auth.log
    python benchmarks/workload.py web  -n 200000  -o /tmp/access.log

The same seed and line count always give the same bytes. Besides FILE, the generator writes
FILE.truth.json: how many lines of each kind it wrote, and how many of them belong to attacks
(the sanity figure the detection benchmark compares each tool's count against).

Auth mix (by line, approximately): ~36 % sshd lines of attacks (invalid users, failed passwords,
preauth disconnects, maximum-attempts errors, PAM failures of sshd) from thousands of IPv4 and a
few hundred IPv6 addresses, then accepted logins with their PAM sessions, cron, sudo,
systemd/logind and kernel lines. A quarter of the ssh connections log as `sshd-session[pid]`
(OpenSSH >= 9.8 splits the per-connection process out), the rest as `sshd[pid]`.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

DEFAULT_SEED = 20250310
START = datetime(2025, 3, 10, 0, 0, 0, tzinfo=timezone.utc)
HOST = "web01"

INVALID_USERS = ("admin", "test", "user", "oracle", "postgres", "ubuntu", "git", "guest", "ftpuser",
                 "pi", "support", "deploy1", "minecraft", "hadoop", "jenkins", "www", "mysql",
                 "nagios", "steam", "ansible", "dev", "test1", "administrator", "tomcat", "odoo")
VALID_USERS = ("alice", "bob", "deploy", "backup")
TARGETED_USERS = ("root", "alice", "bob")
CRON_COMMANDS = ("command -v debian-sa1 > /dev/null && debian-sa1 1 1",
                 "cd / && run-parts --report /etc/cron.hourly",
                 "/usr/local/bin/backup.sh >/dev/null 2>&1",
                 "[ -x /usr/lib/php/sessionclean ] && /usr/lib/php/sessionclean")
SUDO_COMMANDS = ("/usr/bin/apt update", "/usr/bin/systemctl restart nginx",
                 "/usr/bin/journalctl -u ssh", "/usr/bin/tail -f /var/log/auth.log")
SYSTEMD_UNITS = ("apt-daily.service", "logrotate.service", "man-db.service",
                 "systemd-tmpfiles-clean.service", "phpsessionclean.service")
UFW_PORTS = (23, 445, 3389, 1433, 5900, 8080, 6379, 2375)


def _public_ipv4(rng: random.Random) -> str:
    while True:
        first = rng.randint(1, 223)
        if first not in (10, 100, 127, 169, 172, 192, 198, 203):
            return f"{first}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def _public_ipv6(rng: random.Random) -> str:
    prefix = rng.choice(("2a01:4f8", "2a03:b0c0", "2604:a880", "2001:41d0", "2400:6180"))
    groups = (rng.randint(0, 0xffff), rng.randint(0, 0xffff), rng.randint(1, 0xfff))
    return f"{prefix}:{groups[0]:x}:{groups[1]:x}::{groups[2]:x}"


class AuthLog:
    """Generates auth.log lines; each generator method yields (kind, message-with-program)."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.attackers = [_public_ipv4(rng) for _ in range(6000)]
        self.attackers += [_public_ipv6(rng) for _ in range(300)]
        self.clients = [_public_ipv4(rng) for _ in range(40)] + ["2001:db8:100::20"]
        self.pid = 1000
        self.session = 100
        self.uptime = 86_400.0

    def _next_pid(self) -> int:
        self.pid = self.pid + self.rng.randint(1, 40)
        if self.pid > 4_000_000:
            self.pid = 1000
        return self.pid

    def _sshd(self) -> str:
        name = "sshd-session" if self.rng.random() < 0.25 else "sshd"
        return f"{name}[{self._next_pid()}]"

    def _port(self) -> int:
        return self.rng.randint(1024, 65535)

    def invalid_user_attempt(self) -> Iterator[tuple[str, str, bool]]:
        rng = self.rng
        ip = rng.choice(self.attackers)
        user = rng.choice(INVALID_USERS)
        sshd, port = self._sshd(), self._port()
        yield "ssh_invalid_user", f"{sshd}: Invalid user {user} from {ip} port {port}", True
        yield ("ssh_pam_unknown_user",
               f"{sshd}: pam_unix(sshd:auth): check pass; user unknown", False)
        yield ("ssh_pam_auth_failure",
               f"{sshd}: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 "
               f"tty=ssh ruser= rhost={ip}", True)
        yield ("ssh_failed_password_invalid",
               f"{sshd}: Failed password for invalid user {user} from {ip} port {port} ssh2", True)
        if rng.random() < 0.5:
            yield ("ssh_closed_invalid_preauth",
                   f"{sshd}: Connection closed by invalid user {user} {ip} port {port} [preauth]",
                   True)
        else:
            yield ("ssh_received_disconnect",
                   f"{sshd}: Received disconnect from {ip} port {port}:11: Bye Bye [preauth]",
                   False)
            yield ("ssh_disconnected_invalid_preauth",
                   f"{sshd}: Disconnected from invalid user {user} {ip} port {port} [preauth]",
                   True)

    def password_guessing(self) -> Iterator[tuple[str, str, bool]]:
        rng = self.rng
        ip = rng.choice(self.attackers)
        user = rng.choice(TARGETED_USERS)
        sshd, port = self._sshd(), self._port()
        yield ("ssh_pam_auth_failure",
               f"{sshd}: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 "
               f"tty=ssh ruser= rhost={ip}  user={user}", True)
        tries = rng.choice((1, 2, 3, 6))
        for _ in range(tries):
            yield ("ssh_failed_password",
                   f"{sshd}: Failed password for {user} from {ip} port {port} ssh2", True)
        if tries == 6:
            yield ("ssh_max_auth_attempts",
                   f"{sshd}: error: maximum authentication attempts exceeded for {user} from {ip} "
                   f"port {port} ssh2 [preauth]", True)
            yield ("ssh_disconnecting_too_many",
                   f"{sshd}: Disconnecting authenticating user {user} {ip} port {port}: "
                   f"Too many authentication failures [preauth]", True)
        else:
            yield ("ssh_disconnected_authenticating_preauth",
                   f"{sshd}: Disconnected from authenticating user {user} {ip} port {port} "
                   f"[preauth]", True)
        if tries > 1:
            plural = "s" if tries > 2 else ""
            yield ("ssh_pam_more_failures",
                   f"{sshd}: PAM {tries - 1} more authentication failure{plural}; "
                   f"logname= uid=0 euid=0 tty=ssh ruser= rhost={ip}  user={user}", True)

    def scanner_probe(self) -> Iterator[tuple[str, str, bool]]:
        rng = self.rng
        ip = rng.choice(self.attackers)
        sshd, port = self._sshd(), self._port()
        choice = rng.random()
        if choice < 0.5:
            yield ("ssh_closed_preauth",
                   f"{sshd}: Connection closed by {ip} port {port} [preauth]", False)
        elif choice < 0.8:
            yield ("ssh_no_identification",
                   f"{sshd}: error: kex_exchange_identification: Connection closed by remote host",
                   False)
            yield ("ssh_closed_banner",
                   f"{sshd}: Connection closed by {ip} port {port}", False)
        else:
            yield ("ssh_bad_protocol",
                   f"{sshd}: banner exchange: Connection from {ip} port {port}: invalid format",
                   False)

    def accepted_login(self) -> Iterator[tuple[str, str, bool]]:
        rng = self.rng
        ip = rng.choice(self.clients)
        user = rng.choice(VALID_USERS)
        uid = 1000 + VALID_USERS.index(user)
        sshd, port = self._sshd(), self._port()
        self.session += 1
        method = rng.choice(("publickey", "publickey", "password"))
        tail = ": ED25519 SHA256:Vq0yWd3bH8kzqXvQz3nS3+7eFv9a8b0d1JcM2Yp4QkE" \
            if method == "publickey" else ""
        yield ("ssh_accepted",
               f"{sshd}: Accepted {method} for {user} from {ip} port {port} ssh2{tail}", False)
        yield ("ssh_session_opened",
               f"{sshd}: pam_unix(sshd:session): session opened for user {user}(uid={uid}) "
               f"by (uid=0)", False)
        yield ("logind_new_session",
               f"systemd-logind[612]: New session {self.session} of user {user}.", False)
        yield ("systemd_started_session",
               f"systemd[1]: Started session-{self.session}.scope - Session {self.session} "
               f"of User {user}.", False)
        yield ("ssh_received_disconnect",
               f"{sshd}: Received disconnect from {ip} port {port}:11: disconnected by user",
               False)
        yield ("ssh_disconnected_user",
               f"{sshd}: Disconnected from user {user} {ip} port {port}", False)
        yield ("ssh_session_closed",
               f"{sshd}: pam_unix(sshd:session): session closed for user {user}", False)
        yield ("logind_removed_session",
               f"systemd-logind[612]: Session {self.session} logged out. "
               f"Waiting for processes to exit.", False)
        yield ("logind_removed_session",
               f"systemd-logind[612]: Removed session {self.session}.", False)

    def cron_job(self) -> Iterator[tuple[str, str, bool]]:
        pid = self._next_pid()
        yield ("cron_session_opened",
               f"CRON[{pid}]: pam_unix(cron:session): session opened for user root(uid=0) "
               f"by (uid=0)", False)
        yield "cron_cmd", f"CRON[{pid}]: (root) CMD ({self.rng.choice(CRON_COMMANDS)})", False
        yield ("cron_session_closed",
               f"CRON[{pid}]: pam_unix(cron:session): session closed for user root", False)

    def sudo(self) -> Iterator[tuple[str, str, bool]]:
        rng = self.rng
        user = rng.choice(VALID_USERS[:2])
        uid = 1000 + VALID_USERS.index(user)
        if rng.random() < 0.1:
            yield ("sudo_auth_failure",
                   f"sudo: pam_unix(sudo:auth): authentication failure; logname={user} uid={uid} "
                   f"euid=0 tty=/dev/pts/0 ruser={user} rhost=  user={user}", False)
        yield ("sudo_command",
               f"sudo:    {user} : TTY=pts/0 ; PWD=/home/{user} ; USER=root ; "
               f"COMMAND={rng.choice(SUDO_COMMANDS)}", False)
        yield ("sudo_session_opened",
               f"sudo: pam_unix(sudo:session): session opened for user root(uid=0) "
               f"by {user}(uid={uid})", False)
        yield "sudo_session_closed", "sudo: pam_unix(sudo:session): session closed for user root", \
            False

    def systemd(self) -> Iterator[tuple[str, str, bool]]:
        unit = self.rng.choice(SYSTEMD_UNITS)
        yield "systemd_starting", f"systemd[1]: Starting {unit} - Daily job...", False
        yield "systemd_deactivated", f"systemd[1]: {unit}: Deactivated successfully.", False
        yield "systemd_finished", f"systemd[1]: Finished {unit} - Daily job.", False

    def kernel(self) -> Iterator[tuple[str, str, bool]]:
        rng = self.rng
        self.uptime += rng.random() * 30
        src = _public_ipv4(rng)
        yield ("kernel_ufw_block",
               f"kernel: [{self.uptime:.6f}] [UFW BLOCK] IN=eth0 OUT= "
               f"MAC=52:54:00:12:34:56:fe:54:00:ab:cd:ef:08:00 SRC={src} DST=203.0.113.10 LEN=44 "
               f"TOS=0x00 PREC=0x00 TTL=243 ID={rng.randint(1, 65535)} PROTO=TCP "
               f"SPT={self._port()} DPT={rng.choice(UFW_PORTS)} WINDOW=1024 RES=0x00 SYN URGP=0",
               False)


AUTH_MIX: tuple[tuple[str, float], ...] = (
    ("invalid_user_attempt", 0.15), ("password_guessing", 0.09), ("scanner_probe", 0.10),
    ("accepted_login", 0.06), ("cron_job", 0.33), ("sudo", 0.05), ("systemd", 0.10),
    ("kernel", 0.12))


def _syslog_stamp(when: datetime) -> str:
    return f"{when:%b} {when.day:>2} {when:%H:%M:%S}"


def generate_auth(lines: int, seed: int) -> Iterator[tuple[str, str, bool]]:
    """Yield (kind, line, is_attack) for `lines` auth.log lines."""
    rng = random.Random(seed)
    log = AuthLog(rng)
    names = [name for name, _ in AUTH_MIX]
    weights = [weight for _, weight in AUTH_MIX]
    makers: dict[str, Callable[[], Iterator[tuple[str, str, bool]]]] = {
        name: getattr(log, name) for name in names}
    now = START
    written = 0
    while written < lines:
        name = rng.choices(names, weights)[0]
        now += timedelta(milliseconds=rng.randint(0, 900))
        stamp = _syslog_stamp(now)
        for kind, message, attack in makers[name]():
            yield kind, f"{stamp} {HOST} {message}", attack
            written += 1
            if written >= lines:
                return


NORMAL_PATHS = ("/", "/index.html", "/about", "/blog/", "/blog/2024/11/backups-that-work",
                "/blog/2025/01/ssh-hardening", "/contact", "/static/css/site.css",
                "/static/js/app.js", "/static/img/logo.png", "/favicon.ico", "/robots.txt",
                "/feed.xml", "/products.php?id=12", "/search?q=ssh+keys", "/api/v1/status")
BROWSER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/122.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_3) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.3 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:123.0) Gecko/20100101 Firefox/123.0",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_3 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.3 Mobile/15E148 Safari/604.1")
PROBE_PATHS = ("/wp-login.php", "/xmlrpc.php", "/.env", "/.git/config", "/phpmyadmin/",
               "/pma/index.php", "/admin.php", "/wp-admin/setup-config.php", "/cgi-bin/luci",
               "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php", "/actuator/health",
               "/server-status", "/config.json", "/backup.sql", "/.aws/credentials",
               "/solr/admin/info/system", "/boaform/admin/formLogin", "/HNAP1/")
SQLI_PATHS = ("/products.php?id=1%27%20OR%20%271%27=%271",
              "/products.php?id=12%20UNION%20SELECT%201,2,concat(user,0x3a,password)"
              "%20FROM%20users--",
              "/search?q=%27%3B%20DROP%20TABLE%20users%3B--",
              "/index.php?page=1%20AND%20SLEEP(5)",
              "/products.php?id=-1'%20union%20select%20null,version(),null--+")
TRAVERSAL_PATHS = ("/../../../../etc/passwd", "/static/..%2f..%2f..%2fetc%2fpasswd",
                   "/index.php?file=../../../../etc/shadow",
                   "/cgi-bin/.%2e/.%2e/.%2e/.%2e/bin/sh", "/download?path=....//....//etc/hosts")
BAD_AGENTS = ("sqlmap/1.7.2#stable (https://sqlmap.org)",
              "Mozilla/5.00 (Nikto/2.5.0) (Evasions:None)",
              "masscan/1.3 (https://github.com/robertdavidgraham/masscan)",
              "Mozilla/5.0 zgrab/0.x", "Go-http-client/1.1", "ZmEu", "python-requests/2.31.0",
              "Mozilla/5.0 (compatible; MJ12bot/v1.4.8; http://mj12bot.com/)")


def _web_stamp(when: datetime) -> str:
    return when.strftime("%d/%b/%Y:%H:%M:%S +0000")


def generate_web(lines: int, seed: int) -> Iterator[tuple[str, str, bool]]:
    """Yield (kind, line, is_attack) for `lines` combined-format access log lines."""
    rng = random.Random(seed)
    visitors = [_public_ipv4(rng) for _ in range(3000)] + [_public_ipv6(rng) for _ in range(200)]
    scanners = [_public_ipv4(rng) for _ in range(800)] + [_public_ipv6(rng) for _ in range(40)]
    now = START
    written = 0

    def line(ip: str, method: str, path: str, status: int, size: int, referer: str,
             agent: str) -> str:
        return (f'{ip} - - [{_web_stamp(now)}] "{method} {path} HTTP/1.1" {status} {size} '
                f'"{referer}" "{agent}"')

    while written < lines:
        now += timedelta(milliseconds=rng.randint(0, 300))
        pick = rng.random()
        batch: list[tuple[str, str, bool]]
        if pick < 0.85:
            path = rng.choice(NORMAL_PATHS)
            status = rng.choices((200, 304, 301, 404), (85, 9, 3, 3))[0]
            size = 0 if status == 304 else rng.randint(200, 60_000)
            method = "POST" if path == "/contact" and rng.random() < 0.2 else "GET"
            referer = rng.choice(("-", "https://www.google.com/", f"https://{HOST}.example/"))
            batch = [("web_normal", line(rng.choice(visitors), method, path, status, size,
                                         referer, rng.choice(BROWSER_AGENTS)), False)]
        elif pick < 0.92:
            ip = rng.choice(scanners)
            agent = rng.choice(BAD_AGENTS + BROWSER_AGENTS[:1])
            batch = [("web_404_probe", line(ip, "GET", path, 404, rng.randint(150, 500), "-",
                                            agent), True)
                     for path in rng.sample(PROBE_PATHS, rng.randint(3, 10))]
        elif pick < 0.95:
            ip = rng.choice(scanners)
            batch = [("web_sql_injection", line(ip, "GET", rng.choice(SQLI_PATHS),
                                                rng.choice((200, 500, 403)), rng.randint(150, 9000),
                                                "-", rng.choice(BAD_AGENTS[:1] + BROWSER_AGENTS)),
                      True) for _ in range(rng.randint(1, 5))]
        elif pick < 0.97:
            ip = rng.choice(scanners)
            batch = [("web_path_traversal", line(ip, "GET", rng.choice(TRAVERSAL_PATHS),
                                                 rng.choice((400, 404, 403)), rng.randint(150, 600),
                                                 "-", rng.choice(BAD_AGENTS)), True)
                     for _ in range(rng.randint(1, 4))]
        else:
            ip = rng.choice(scanners)
            batch = [("web_bad_bot", line(ip, "GET", rng.choice(NORMAL_PATHS), 200,
                                          rng.randint(200, 60_000), "-", rng.choice(BAD_AGENTS)),
                      True)]
        for item in batch:
            yield item
            written += 1
            if written >= lines:
                return


GENERATORS = {"auth": generate_auth, "web": generate_web}


def write_workload(kind: str, lines: int, output: Path, seed: int = DEFAULT_SEED) -> dict:
    """Write the workload to `output` and its truth file; return the truth dict."""
    kinds: Counter[str] = Counter()
    attack_lines = 0
    with open(output, "w", encoding="utf-8", newline="\n") as out:
        write = out.write
        for line_kind, text, attack in GENERATORS[kind](lines, seed):
            write(text + "\n")
            kinds[line_kind] += 1
            attack_lines += attack
    truth = {"workload": kind, "seed": seed, "lines": lines, "attack_lines": attack_lines,
             "kinds": dict(sorted(kinds.items()))}
    Path(f"{output}.truth.json").write_text(json.dumps(truth, indent=2) + "\n", encoding="utf-8")
    return truth


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workload", choices=sorted(GENERATORS))
    parser.add_argument("-n", "--lines", type=int, default=1_000_000, metavar="LINES")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="FILE")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args(argv)
    if args.lines < 1:
        parser.error("LINES must be at least 1")
    truth = write_workload(args.workload, args.lines, args.output, args.seed)
    print(f"{args.output}: {truth['lines']} lines, {truth['attack_lines']} attack lines "
          f"(truth in {args.output}.truth.json)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
