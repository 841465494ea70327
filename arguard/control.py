"""The control socket: a small JSON-lines protocol shared by the daemon and the CLI.

A request is one JSON object on one line, `{"op": "status"}`, `{"op": "block", "target": …,
"command": …, "timeout": …}`, `{"op": "unblock", …}`, `{"op": "list"}`, `{"op": "reload"}`,
`{"op": "integrity-accept", "path": …}`, `{"op": "integrity-scan"}`;
the reply is one line, `{"ok": true, …}` or `{"ok": false, "error": "…"}`. Only root (or the
daemon's own user) may talk to it: the socket is 0600 and peers are checked by SO_PEERCRED.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable

if TYPE_CHECKING:
    from arguard.integrity.baseline import Accepted
    from arguard.respond.responder import Applied

MAX_REQUEST_BYTES = 64 * 1024
Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class ControlError(Exception):
    """The daemon could not be reached or refused the request."""


def peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid


async def serve(path: Path, handler: Handler) -> asyncio.AbstractServer:
    """Listen on `path` (a stale socket file left by a crash is replaced)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() or path.is_symlink():
        if not _is_live(path):
            path.unlink()
        else:
            raise ControlError(f"{path} is in use by a running daemon")
    old_umask = os.umask(0o177)
    try:
        server = await asyncio.start_unix_server(
            lambda r, w: _session(r, w, handler), path=str(path), limit=MAX_REQUEST_BYTES)
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    return server


def _is_live(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


async def _session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                   handler: Handler) -> None:
    try:
        sock = writer.get_extra_info("socket")
        if sock is None or peer_uid(sock) not in (0, os.getuid()):
            await _reply(writer, {"ok": False, "error": "permission denied"})
            return
        while True:
            try:
                line = await reader.readline()
            except (asyncio.LimitOverrunError, ValueError):
                await _reply(writer, {"ok": False, "error": "request too long"})
                return
            if not line:
                return
            try:
                request = json.loads(line)
                if not isinstance(request, dict) or not isinstance(request.get("op"), str):
                    raise ValueError("a request is a JSON object with a string 'op'")
            except ValueError as exc:
                await _reply(writer, {"ok": False, "error": f"malformed request: {exc}"})
                continue
            try:
                reply = await handler(request)
            except Exception as exc:  # a bad request must never take the daemon down
                reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            await _reply(writer, reply)
    except (ConnectionError, OSError):
        return
    finally:
        writer.close()


async def _reply(writer: asyncio.StreamWriter, reply: dict[str, Any]) -> None:
    writer.write(json.dumps(reply, default=str).encode() + b"\n")
    await writer.drain()


def request(path: Path, message: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """Send one request and wait for its reply (used by the CLI)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
            sock.sendall(json.dumps(message).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        except FileNotFoundError:
            raise ControlError(f"no control socket at {path}") from None
        except ConnectionRefusedError:
            raise ControlError(f"nothing listens on {path} (stale socket)") from None
        except PermissionError:
            raise ControlError(f"permission denied on {path} (run as root)") from None
        except OSError as exc:
            raise ControlError(f"{path}: {exc.strerror or exc}") from None
    if not data:
        raise ControlError("the daemon closed the connection without a reply")
    return json.loads(data)


# --- replies to block and unblock, the same from the daemon and from the direct path -------

def applied_record(applied: "Applied") -> dict[str, Any]:
    block = applied.block
    return {"verb": applied.verb, "command": applied.command, "target": applied.target,
            "reason": applied.reason,
            "expires_at": None if block is None else block.expires_at,
            "detail": applied.detail}


def block_reply(applied: "Applied") -> dict[str, Any]:
    ok = applied.verb in ("add", "extend")
    return {"ok": ok, "applied": [applied_record(applied)],
            **({} if ok else {"error": applied.reason or applied.verb})}


def unblock_reply(lifted: list["Applied"], nothing: str | None) -> dict[str, Any]:
    """`nothing`: the error when no block was lifted (None when that is fine, as for --all)."""
    if not lifted and nothing is not None:
        return {"ok": False, "error": nothing}
    failed = [a for a in lifted if a.verb == "fail"]
    return {"ok": not failed, "applied": [applied_record(a) for a in lifted],
            **({"error": "; ".join(a.reason or "failed" for a in failed)} if failed else {})}


def no_block_message(target: str, command: str | None) -> str:
    return f"no active block for {target}" + (f" by {command}" if command else "")


def accept_reply(accepted: "Accepted") -> dict[str, Any]:
    """The reply to `arguard integrity accept`, the same from the daemon and directly."""
    ok = accepted.files > 0
    return {"ok": ok, "files": accepted.files, "copies": accepted.copies,
            "notes": list(accepted.notes),
            **({} if ok else {"error": "; ".join(accepted.notes) or "nothing accepted"})}
