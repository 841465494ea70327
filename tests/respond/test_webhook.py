"""Webhook against real HTTP servers on 127.0.0.1: JSON and Slack bodies, retries on 5xx
and connection errors, no retry on 4xx or redirects, timeouts on a server that never
answers."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from arguard.config import Command
from arguard.model import Alert, Event, Line, Predecoded, RuleInfo
from arguard.respond.actions.base import ActionError
from arguard.respond.actions.webhook import WebhookAction

TARGET = "203.0.113.5"


class Server:
    """An HTTP server answering POSTs with the given statuses in turn (the last repeats)."""

    def __init__(self, statuses: list[int]):
        self.statuses = list(statuses)
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                server.requests.append({"path": self.path, "headers": dict(self.headers),
                                        "body": json.loads(body)})
                status = server.statuses.pop(0) if len(server.statuses) > 1 \
                    else server.statuses[0]
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def do_GET(self) -> None:
                server.requests.append({"path": self.path, "method": "GET"})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hooks/T0KEN-secret"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve() -> Iterator:
    servers: list[Server] = []

    def start(*statuses: int) -> Server:
        servers.append(Server(list(statuses)))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def webhook(url: str, fmt: str = "json", retries: int = 3, request_timeout: float = 5,
            expect: str = "srcip") -> WebhookAction:
    return WebhookAction(Command(name="notify", action="webhook", expect=expect,
                                 extra_args=("team-a",),
                                 options={"url": url, "format": fmt, "retries": retries,
                                          "request_timeout": request_timeout}),
                         backoff=0)


def make_alert() -> Alert:
    text = f"Nov 22 13:40:01 host sshd[1]: Invalid user <@channel> from {TARGET}"
    event = Event(line=Line(text=text, location="/var/log/auth.log", received=0.0),
                  pre=Predecoded(message=text), time=1_700_000_000.0, decoder="sshd",
                  fields={"srcip": TARGET, "srcuser": "<@channel>"})
    rule = RuleInfo(id=5712, level=10, description="sshd: brute force <trying> & failing",
                    groups=("authentication_failures",), mitre=())
    return Alert(id="1700000000.1", rule=rule, event=event, firedtimes=8)


def test_json_add_and_delete(serve):
    server = serve(200)
    hook = webhook(server.url)
    hook.add(TARGET, 600, make_alert())
    hook.delete(TARGET)
    add, delete = (r["body"] for r in server.requests)
    assert server.requests[0]["path"] == "/hooks/T0KEN-secret"
    assert server.requests[0]["headers"]["Content-Type"] == "application/json"
    assert add["version"] == 1 and add["origin"]["module"] == "arguard"
    assert add["command"] == "add"
    assert add["parameters"]["name"] == "notify"
    assert add["parameters"]["target"] == TARGET
    assert add["parameters"]["timeout"] == 600
    assert add["parameters"]["extra_args"] == ["team-a"]
    assert add["parameters"]["alert"]["rule"]["id"] == "5712"
    assert add["parameters"]["alert"]["data"]["srcip"] == TARGET
    assert delete["command"] == "delete"
    assert delete["parameters"]["target"] == TARGET
    assert delete["parameters"]["alert"] is None
    assert hook.check(TARGET) is False
    assert hook.list_targets() is None


def test_slack_format_is_escaped_text(serve):
    server = serve(200)
    hook = webhook(server.url, fmt="slack")
    hook.add(TARGET, 600, make_alert())
    hook.add(TARGET, None, None)
    hook.delete(TARGET)
    texts = [r["body"] for r in server.requests]
    assert all(set(body) == {"text"} for body in texts)
    assert f"notify {TARGET} for 600 s" in texts[0]["text"]
    assert "rule 5712, level 10: sshd: brute force &lt;trying&gt; &amp; failing" in \
        texts[0]["text"]
    assert "<" not in texts[0]["text"]
    assert f"notify {TARGET} until lifted" in texts[1]["text"]
    assert f"notify lifted for {TARGET}" in texts[2]["text"]


def test_server_error_then_success_is_retried(serve):
    server = serve(500, 503, 200)
    webhook(server.url, retries=3).add(TARGET, 60, make_alert())
    assert len(server.requests) == 3
    assert server.requests[0]["body"] == server.requests[2]["body"]


def test_too_many_requests_is_retried(serve):
    server = serve(429, 200)
    webhook(server.url, retries=1).add(TARGET, 60, None)
    assert len(server.requests) == 2


def test_retries_are_bounded(serve):
    server = serve(500)
    with pytest.raises(ActionError, match="HTTP 500"):
        webhook(server.url, retries=2).add(TARGET, 60, make_alert())
    assert len(server.requests) == 3


def test_client_error_is_not_retried(serve):
    server = serve(404)
    with pytest.raises(ActionError, match="HTTP 404"):
        webhook(server.url, retries=3).delete(TARGET)
    assert len(server.requests) == 1


def test_redirect_is_not_followed(serve):
    server = serve(302)
    with pytest.raises(ActionError, match="HTTP 302"):
        webhook(server.url, retries=3).add(TARGET, 60, None)
    assert [r["path"] for r in server.requests] == ["/hooks/T0KEN-secret"]


def test_error_message_does_not_leak_the_url_token(serve):
    server = serve(500)
    with pytest.raises(ActionError) as error:
        webhook(server.url, retries=0).add(TARGET, 60, None)
    assert "T0KEN" not in str(error.value)
    assert "http://127.0.0.1:" in str(error.value)


def test_server_that_never_answers_times_out_and_retries_are_bounded():
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.05)
        while True:
            stopping = stop.is_set()
            try:
                accepted.append(listener.accept()[0])  # read nothing, answer nothing
            except OSError:
                if stopping:  # nothing left in the backlog after the client gave up
                    return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/hook"
        with pytest.raises(ActionError, match="timed out"):
            webhook(url, retries=1, request_timeout=0.3).add(TARGET, 60, None)
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        listener.close()
    assert len(accepted) == 2


def test_connection_refused_is_retried_then_reported():
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()   # nothing listens there now
    with pytest.raises(ActionError, match="Connection refused"):
        webhook(f"http://127.0.0.1:{port}/hook", retries=2).add(TARGET, 60, None)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/x", "not a url",
                                 "http://", "http://127.0.0.1:99999/", "javascript:alert(1)"])
def test_refuses_non_http_urls(url):
    with pytest.raises(ActionError, match="http"):
        webhook(url)


def test_refuses_unknown_format():
    with pytest.raises(ActionError, match="format"):
        webhook("http://127.0.0.1/", fmt="xml")
