"""The `webhook` action: tell an HTTP(S) endpoint about each response.

`format = "json"` posts the same message a custom script gets on stdin (Wazuh's 4.x
active-response message), plus the command name, target and timeout:

    {"version":1,"origin":{"name":"<host>","module":"arguard"},"command":"add"|"delete",
     "parameters":{"name":"<command>","target":"203.0.113.5","timeout":600,
                   "extra_args":[…],"alert":{…alerts.json form…}|null}}

`format = "slack"` posts `{"text": "…"}`, which Slack, Mattermost and Rocket.Chat
incoming webhooks accept.

Each request has its own timeout (`request_timeout`). Connection errors, timeouts, 5xx
and 429 answers are retried up to `retries` times with exponential backoff; other answers
(4xx, redirects, which are not followed) fail at once. Only http and https URLs are
accepted. Webhooks keep no state: `check` is False and `list_targets` None.

`add`/`delete` block for up to (retries + 1) × request_timeout plus the backoff: the caller
runs them in a worker thread (the responder uses asyncio.to_thread), so the daemon's event
loop never waits on the network.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from arguard.alerts import alert_to_dict
from arguard.respond.actions.base import INTEGER, NUMBER, REQUIRED, STRING, ActionError, \
    ActionType, Option

if TYPE_CHECKING:
    from arguard.config import Command
    from arguard.model import Alert

log = logging.getLogger(__name__)

USER_AGENT = "arguard-webhook/1"
RESPONSE_LIMIT = 4096


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect would turn the POST into a GET without body: report it instead."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[override]
        return None


class WebhookAction:
    def __init__(self, command: Command, backoff: float = 1.0):
        """`backoff`: seconds before the first retry, doubled for each further one."""
        options = ACTION.options_of(command)
        self.name = command.name
        self.url: str = options["url"]
        self.format: str = options["format"]
        self.retries = max(0, options["retries"])
        self.request_timeout = float(options["request_timeout"])
        self.backoff = backoff
        self.extra_args = list(command.extra_args)
        self._opener = urllib.request.build_opener(_NoRedirect)

    def add(self, target: str, timeout: int | None, alert: Alert | None) -> None:
        self.post(self.body("add", target, timeout, alert))

    def delete(self, target: str) -> None:
        self.post(self.body("delete", target, None, None))

    def check(self, target: str) -> bool:
        return False

    def list_targets(self) -> set[str] | None:
        return None

    def body(self, verb: Literal["add", "delete"], target: str, timeout: int | None,
             alert: Alert | None) -> dict[str, Any]:
        if self.format == "slack":
            return {"text": self._slack_text(verb, target, timeout, alert)}
        return {"version": 1, "origin": {"name": socket.gethostname(), "module": "arguard"},
                "command": verb,
                "parameters": {"name": self.name, "target": target, "timeout": timeout,
                               "extra_args": self.extra_args,
                               "alert": alert_to_dict(alert) if alert else None}}

    def post(self, body: dict[str, Any]) -> None:
        """POST `body` as JSON; ActionError when every attempt failed."""
        data = json.dumps(body, ensure_ascii=False).encode()
        problem = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            request = urllib.request.Request(
                self.url, data=data, method="POST",
                headers={"Content-Type": "application/json", "User-Agent": USER_AGENT})
            try:
                with self._opener.open(request, timeout=self.request_timeout) as response:
                    response.read(RESPONSE_LIMIT)
                    return
            except urllib.error.HTTPError as error:
                problem = f"HTTP {error.code} {error.reason}"
                if error.code < 500 and error.code != 429:
                    break
            except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
                reason = getattr(error, "reason", None) or error
                problem = f"{type(reason).__name__}: {reason}" if str(reason) else \
                    type(reason).__name__
            log.warning("webhook %s: attempt %d of %d failed: %s", self.name, attempt + 1,
                        self.retries + 1, problem)
        raise ActionError(f"webhook {self.name} ({_safe_url(self.url)}): {problem}")

    def _slack_text(self, verb: str, target: str, timeout: int | None,
                    alert: Alert | None) -> str:
        host = socket.gethostname()
        if verb == "add":
            duration = f"for {timeout} s" if timeout else "until lifted"
            text = f"arguard on {host}: {self.name} {target} {duration}"
            if alert is not None:
                text += (f" (rule {alert.rule.id}, level {alert.rule.level}: "
                         f"{alert.rule.description})")
        else:
            text = f"arguard on {host}: {self.name} lifted for {target}"
        return _slack_escape(text)


def _is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        parts.port  # raises ValueError for a malformed port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _slack_escape(text: str) -> str:
    """Slack's three control characters; user-derived text must not inject links or
    mentions."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _safe_url(url: str) -> str:
    """The URL without credentials, path or query (tokens live there) for error messages."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}"


def _url_problem(url: str) -> str | None:
    return None if _is_http_url(url) else "must be an http:// or https:// URL with a host"


ACTION = ActionType(
    summary="tell an HTTP(S) endpoint about each response (Wazuh's 4.x message as JSON, or a "
            "Slack-style text)",
    kinds=("ip", "user"),
    build=lambda command, context: WebhookAction(command),
    options=(Option("url", STRING, REQUIRED, "where to POST", check=_url_problem),
             Option("format", STRING, "json", "the body: Wazuh's message, or Slack's "
                    "{\"text\": …}", choices=("json", "slack")),
             Option("retries", INTEGER, 3, "attempts after the first on connection errors, "
                    "timeouts, 5xx and 429"),
             Option("request_timeout", NUMBER, 5, "seconds each request may take")),
    detached=True,
)
