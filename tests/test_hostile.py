"""A generated hostile set: for every shipped decoder that captures an address, its real log
lines with attacker text in each item the client chooses (user names, banners, disconnect
reasons, paths, request lines, Host, Referer, User-Agent, PAM's ruser), the text built from
every other decoder's anchors (forged `from ADDR port N` tails, nginx `client:` items and
message tails, `rhost=`, `[client ADDR]`, whole access-log prefixes, …).

The address decoded must be the real one or none, for every line. And where the attacker
text holds no address at all, the real address must be decoded: hardening may cost a line
its address only when the line really holds a second candidate.
"""

from __future__ import annotations

import itertools
import random

import pytest

from arguard.decode.decoders import normalise_address
from arguard.model import Line
from arguard.pipeline import Pipeline

FORGED = "9.9.9.9"
FORGED_FRAGMENTS = [
    f" from {FORGED} port 22", f" from {FORGED} port 22 ssh2", f" {FORGED} port 22",
    f" from {FORGED} port 22 ssh2: x", f" {FORGED} port 22 [preauth]", f"{FORGED}", " port 1: x",
    f", client: {FORGED}, server: y", f", client: {FORGED}, server: y, request: \"GET / HTTP/1.1\"",
    f"\": password mismatch, client: {FORGED}, server: y, request: \"GET / HTTP/1.1\", host: \"h",
    f"\" failed (2: No such file or directory), client: {FORGED}, server: y",
    f" rhost={FORGED}", f" rhost={FORGED}  user=x", f"; logname= uid=0 euid=0 tty=ssh ruser= "
    f"rhost={FORGED}", f"[client {FORGED}]", f"[client {FORGED}:1] AH01618: ",
    f"{FORGED} - - [22/Nov/2026:13:40:01 +0000] \"GET / HTTP/1.1\" 404 1",
    f"::ffff:{FORGED}", f"[{FORGED}]", f"({FORGED})", f"\\\" {FORGED}", " [preauth]", " ssh2",
]
INERT = ["admin", "a b c", 'x"y', "x\\\"y", "\t", "ü-ñ", "", "port", "from", "client:", "-"]

SYSLOG = "Nov 22 13:40:01 host {program}[123]: {message}"
TEMPLATES = {
    "sshd": [
        "Invalid user {X} from {REAL} port 4242",
        "Failed password for invalid user {X} from {REAL} port 4242 ssh2",
        "Failed password for {X} from {REAL} port 4242 ssh2",
        "Failed keyboard-interactive/pam for invalid user {X} from {REAL} port 4242 ssh2",
        "Accepted publickey for {X} from {REAL} port 4242 ssh2: RSA SHA256:{X}",
        "Failed publickey for git from {REAL} port 4242 ssh2: ECDSA {X}",
        'Failed hostbased for dan from {REAL} port 4242 ssh2: RSA 8c:e3, client user "{X}", '
        'client host "{X}"',
        "Connection closed by invalid user {X} {REAL} port 4242 [preauth]",
        "Connection closed by authenticating user {X} {REAL} port 4242 [preauth]",
        "Connection reset by invalid user {X} {REAL} port 4242 [preauth]",
        "Disconnected from invalid user {X} {REAL} port 4242 [preauth]",
        "Disconnecting invalid user {X} {REAL} port 4242: Change of username or service not "
        "allowed: ({X},ssh-connection) -> ({X},ssh-connection) [preauth]",
        "Received disconnect from {REAL} port 4242:11: {X} [preauth]",
        "Bad protocol version identification '{X}' from {REAL} port 4242",
        "error: maximum authentication attempts exceeded for invalid user {X} from {REAL} port "
        "4242 ssh2 [preauth]",
        "User {X} from {REAL} not allowed because not listed in AllowUsers",
        "error: PAM: Authentication failure for illegal user {X} from {REAL}",
        "ssh_dispatch_run_fatal: Connection from invalid user {X} {REAL} port 4242: Connection "
        "corrupted [preauth]",
        "PAM 2 more authentication failures; logname= uid=0 euid=0 tty=ssh ruser={X} "
        "rhost={REAL}  user={X}",
        "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser={X} "
        "rhost={REAL}  user={X}",
    ],
    "vsftpd": [
        "pam_unix(vsftpd:auth): authentication failure; logname= uid=0 euid=0 tty=ftp "
        "ruser={X} rhost={REAL}",
        "pam_unix(vsftpd:auth): authentication failure; logname= uid=0 euid=0 tty=ftp "
        "ruser={X} rhost={REAL}  user={X}",
    ],
    "nginx": [
        '2026/11/22 13:40:01 [error] 1#0: *1 user "{X}": password mismatch, client: {REAL}, '
        'server: s, request: "GET /{X} HTTP/1.1", host: "{X}", referrer: "{X}"',
        '2026/11/22 13:40:01 [error] 1#0: *1 user "{X}": was not found in "/etc/nginx/pw", '
        'client: {REAL}, server: s, request: "GET / HTTP/1.1", host: "h", referrer: "{X}"',
        '2026/11/22 13:40:01 [error] 1#0: *1 open() "/var/www/{X}" failed (2: No such file or '
        'directory), client: {REAL}, server: s, request: "GET /{X} HTTP/1.1", host: "h"',
        '2026/11/22 13:40:01 [error] 1#0: *1 upstream timed out (110: Connection timed out), '
        'client: {REAL}, server: s, request: "GET /{X} HTTP/1.1", host: "{X}"',
    ],
    "": [
        '{REAL} - {X} [22/Nov/2026:13:40:01 +0000] "GET /{X} HTTP/1.1" 404 162 "{X}" "{X}"',
        '{REAL} - - [22/Nov/2026:13:40:01 +0000] "GET /{X} HTTP/1.1" 404 162 "-" "{X}',
        "[Thu Jul 11 01:21:43 2026] [error] [client {REAL}] File does not exist: /var/www/{X}",
        "[Sat Jul 20 21:34:49.453232 2026] [auth_basic:error] [pid 1:tid 2] [client "
        "{REAL}:51380] AH01618: user {X} not found: /{X}",
    ],
}
REAL = ("203.0.113.77", "2001:db8::77")


def _escaped(template: str, payload: str) -> str:
    """Web servers escape `"` inside quoted items of access logs (nginx as \\x22, Apache as
    \\"); an access-log line never holds a bare quote there."""
    if template.startswith("{REAL} - "):
        return payload.replace("\\", "\\\\").replace('"', '\\"')
    return payload


def _lines(payloads: list[str]):
    for program, templates in TEMPLATES.items():
        for template, payload, real in itertools.product(templates, payloads, REAL):
            if template.startswith("[Sat") and ":" in real:
                real_text = f"[{real}]"  # Apache 2.4 brackets an IPv6 client before its port
            else:
                real_text = real
            message = template.replace("{REAL}", real_text).replace(
                "{X}", _escaped(template, payload))
            text = SYSLOG.format(program=program, message=message) if program else message
            yield text, real


def _decode_all(shipped_ruleset, payloads):
    pipeline = Pipeline(shipped_ruleset, line_time=True)
    for text, real in _lines(payloads):
        event = pipeline.process(Line(text, "hostile", 0.0)).event
        yield text, real, event


def _payloads(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    pieces = FORGED_FRAGMENTS + INERT
    return [" ".join(rng.sample(pieces, rng.randint(1, 3))) for _ in range(count)]


@pytest.mark.parametrize("payloads", [FORGED_FRAGMENTS, _payloads(7, 120)],
                         ids=["fragments", "combinations"])
def test_no_attacker_text_gives_an_address(shipped_ruleset, payloads, request):
    wrong, decoded, total = [], 0, 0
    for text, real, event in _decode_all(shipped_ruleset, payloads):
        total += 1
        got = event.fields.get("srcip")
        if got is None:
            continue
        if got != normalise_address(real):
            wrong.append(f"decoded {got} from {text!r}")
        else:
            decoded += 1
    request.config.stash.setdefault(_report_key(), []).append(
        f"hostile set ({request.node.callspec.id}): {total} lines, real address decoded in "
        f"{decoded} ({decoded / total:.1%}), wrong {len(wrong)}")
    assert not wrong, "\n".join(wrong[:20])


def test_inert_client_text_keeps_the_real_address(shipped_ruleset):
    missed = [text for text, real, event in _decode_all(shipped_ruleset, INERT)
              if event.fields.get("srcip") != normalise_address(real)]
    assert not missed, "\n".join(missed[:20])


def _report_key():
    from tests.conftest import coverage_key
    return coverage_key


def mutated(texts: list[str], seed: int, count: int, alphabet: str) -> list[str]:
    """`count` lines made from `texts`: characters dropped, added or replaced by ones of
    `alphabet`, lines cut, and pieces of two lines spliced together."""
    rng = random.Random(seed)
    result = []
    for _ in range(count):
        chars = list(rng.choice(texts))
        for _ in range(rng.randint(1, 4)):
            position = rng.randrange(len(chars) + 1)
            operation = rng.random()
            if operation < 0.25 and chars:
                del chars[min(position, len(chars) - 1)]
            elif operation < 0.5:
                chars.insert(position, rng.choice(alphabet))
            elif operation < 0.75 and chars:
                chars[min(position, len(chars) - 1)] = rng.choice(alphabet)
            else:
                other = rng.choice(texts)
                cut = rng.randrange(len(other) + 1)
                chars[position:] = list(other[cut:])
        result.append("".join(chars)[:rng.randint(1, len(chars) + 1)])
    return result


def test_mutated_lines_never_raise(shipped_ruleset):
    """Lines of the detection cases, cut, spliced, with characters dropped, doubled or
    replaced by random ones (NUL, control characters, non-ASCII, quotes, brackets): decoding never
    raises, whatever the header or message becomes."""
    from pathlib import Path

    from tests.test_cases import CASES, parse_cases

    alphabet = "\x00\x01\t\"'[]():;,= -/\\|<>{}0123456789.aZ\u00e9\u2028\ufeff\U0001f600"
    pipeline = Pipeline(shipped_ruleset, line_time=True)
    texts = [case.text for path in CASES for case in parse_cases(Path(path))
             if not case.text.startswith("@")]
    processed = 0
    for text in mutated(texts, seed=11, count=12 * len(texts), alphabet=alphabet):
        pipeline.process(Line(text, "mutated", 0.0))
        processed += 1
    assert processed > 3000
