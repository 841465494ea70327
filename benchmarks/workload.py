"""Deterministic benchmark workloads: a mixed auth.log and a combined-format web access log.

    python benchmarks/workload.py auth -n 1000000 -o /tmp/auth.log
    python benchmarks/workload.py web  -n 200000  -o /tmp/access.log

auth: BSD syslog lines, about 35 % sshd failures (failed passwords, invalid users, OpenSSH 9
`Connection closed by invalid user`, `Disconnected from authenticating user`, too many
authentication failures) from 5 000 IPv4 and 200 IPv6 attackers, the rest accepted logins,
PAM sessions, cron, sudo, systemd and kernel lines. web: normal traffic plus scanners (404
bursts, SQL injection, path traversal, bad user agents). The same seed gives the same file.
"""

from __future__ import annotations

import argparse
import random
import time

START = time.mktime((2026, 11, 22, 0, 0, 0, 0, 0, -1))
USERS = ["root", "admin", "test", "oracle", "ubuntu", "git", "postgres", "user", "guest", "pi"]


def _stamp(when: float) -> str:
    return time.strftime("%b %e %H:%M:%S", time.localtime(when))


def auth_lines(count: int, seed: int = 7):
    rng = random.Random(seed)
    attackers = [f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}."
                 f"{rng.randrange(1, 255)}" for _ in range(5000)]
    attackers += [f"2001:db8:{rng.randrange(65536):x}::{rng.randrange(1, 65536):x}"
                  for _ in range(200)]
    for number in range(count):
        when = START + number * 0.05
        head = f"{_stamp(when)} server"
        pid = 1000 + number % 30000
        sshd = "sshd" if number % 3 else "sshd-session"
        address = rng.choice(attackers)
        port = rng.randrange(1024, 65536)
        user = rng.choice(USERS)
        roll = rng.random()
        if roll < 0.14:
            yield f"{head} {sshd}[{pid}]: Failed password for {user} from {address} port {port} ssh2"
        elif roll < 0.22:
            yield f"{head} {sshd}[{pid}]: Invalid user {user}{number % 97} from {address} port {port}"
        elif roll < 0.27:
            yield (f"{head} {sshd}[{pid}]: Connection closed by invalid user {user} {address} "
                   f"port {port} [preauth]")
        elif roll < 0.31:
            yield (f"{head} {sshd}[{pid}]: Disconnected from authenticating user root {address} "
                   f"port {port} [preauth]")
        elif roll < 0.35:
            yield (f"{head} {sshd}[{pid}]: Failed password for invalid user {user} from {address}"
                   f" port {port} ssh2")
        elif roll < 0.40:
            yield (f"{head} sshd[{pid}]: Accepted publickey for alice from 192.0.2.10 port {port}"
                   f" ssh2: ED25519 SHA256:abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG")
        elif roll < 0.50:
            yield (f"{head} sshd[{pid}]: pam_unix(sshd:session): session opened for user alice"
                   f"(uid=1000) by (uid=0)")
        elif roll < 0.55:
            yield (f"{head} sshd[{pid}]: pam_unix(sshd:auth): authentication failure; logname= "
                   f"uid=0 euid=0 tty=ssh ruser= rhost={address}  user={user}")
        elif roll < 0.70:
            yield (f"{head} CRON[{pid}]: pam_unix(cron:session): session opened for user root"
                   f"(uid=0) by (uid=0)")
        elif roll < 0.75:
            yield (f"{head} sudo[{pid}]:    alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; "
                   f"COMMAND=/usr/bin/systemctl status nginx")
        elif roll < 0.90:
            yield f"{head} systemd[1]: Started session-{number}.scope - Session {number} of User alice."
        else:
            yield (f"{head} kernel: [{number / 10:.6f}] IN=eth0 OUT= MAC=00:00 SRC={address} "
                   f"DST=192.0.2.1 LEN=60 PROTO=TCP SPT={port} DPT=22")


def web_lines(count: int, seed: int = 11):
    rng = random.Random(seed)
    visitors = [f"198.51.{rng.randrange(256)}.{rng.randrange(1, 255)}" for _ in range(2000)]
    scanners = [f"203.0.{rng.randrange(256)}.{rng.randrange(1, 255)}" for _ in range(100)]
    pages = ["/", "/index.html", "/about", "/blog/post-1", "/static/app.js", "/img/logo.png"]
    probes = ["/wp-login.php", "/phpMyAdmin/scripts/setup.php", "/.env", "/admin.php",
              "/index.php?id=1%20union%20select%201,2", "/../../etc/passwd",
              "/cgi-bin/test.sh", "/.git/config"]
    for number in range(count):
        when = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(START + number * 0.02))
        if rng.random() < 0.2:
            address, path, status = rng.choice(scanners), rng.choice(probes), 404
            agent = rng.choice(["Mozilla/5.0 zgrab/0.x", "ZmEu", "curl/7.88", "Nikto"])
        else:
            address, path = rng.choice(visitors), rng.choice(pages)
            status, agent = rng.choice([200, 200, 200, 304]), "Mozilla/5.0 (X11; Linux x86_64)"
        yield (f'{address} - - [{when}] "GET {path} HTTP/1.1" {status} {rng.randrange(100, 9000)}'
               f' "-" "{agent}"')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["auth", "web"])
    parser.add_argument("-n", "--lines", type=int, default=1_000_000)
    parser.add_argument("-o", "--output", required=True)
    args = parser.parse_args()
    lines = auth_lines(args.lines) if args.kind == "auth" else web_lines(args.lines)
    with open(args.output, "w") as out:
        for line in lines:
            out.write(line + "\n")


if __name__ == "__main__":
    main()
