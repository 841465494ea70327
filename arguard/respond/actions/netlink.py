"""Netfilter netlink (NETLINK_NETFILTER) for the ipset and nftables actions: attribute
encoding and decoding with `struct`, and a socket that sends one request or one nf_tables
transaction (a batch) and reads the kernel's answers.

Not an action: light (standard library only), imported by the actions that talk to the
kernel's netfilter subsystems. Message layout: linux/netlink.h, linux/netfilter/nfnetlink.h.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import threading
from collections.abc import Callable, Iterator, Sequence

from arguard.respond.actions.base import ActionError

NETLINK_NETFILTER = 12
NLM_F_REQUEST = 1
NLM_F_ACK = 4
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_APPEND = 0x800
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLA_F_NESTED = 1 << 15
NLA_F_NET_BYTEORDER = 1 << 14
NLA_TYPE_MASK = 0x3FFF   # an attribute's type without the NESTED / NET_BYTEORDER flags
NFNL_MSG_BATCH_BEGIN = 0x10
NFNL_MSG_BATCH_END = 0x11
NFNL_SUBSYS_NFTABLES = 10
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10     # errors come back without a copy of the request
#: seconds to wait for the kernel's answer to one request
REPLY_TIMEOUT = 5.0

#: (payload span after the nfgenmsg header) of one data message of a dump
OnData = Callable[[bytes, int, int], None]


def attr(kind: int, value: bytes) -> bytes:
    """One netlink attribute: length, type, value, padding to 4 bytes."""
    length = 4 + len(value)
    return struct.pack("=HH", length, kind) + value + b"\0" * (-length % 4)


def spans(data: bytes, start: int, end: int, *kinds: int) -> Iterator[tuple[int, int]]:
    """Value spans of the attributes of the given types in data[start:end]."""
    while start + 4 <= end:
        length, kind = struct.unpack_from("=HH", data, start)
        if length < 4:
            return
        if kind & NLA_TYPE_MASK in kinds:
            yield start + 4, start + length
        start += (length + 3) & ~3


def attributes(data: bytes, start: int, end: int) -> dict[int, tuple[int, int]]:
    """Type → value span of every attribute in data[start:end] (the last of each type)."""
    found: dict[int, tuple[int, int]] = {}
    while start + 4 <= end:
        length, kind = struct.unpack_from("=HH", data, start)
        if length < 4:
            break
        found[kind & NLA_TYPE_MASK] = (start + 4, start + length)
        start += (length + 3) & ~3
    return found


def nfgenmsg(family: int, res_id: int = 0) -> bytes:
    """The netfilter header after the netlink header: family, version 0, resource id."""
    return struct.pack("!BBH", family, 0, res_id)


def strerror(code: int) -> str:
    if code == errno.EPERM:
        return "operation not permitted (arguard needs CAP_NET_ADMIN)"
    return f"{errno.errorcode.get(code, code)}: {os.strerror(code)}"


class NetfilterSocket:
    """Requests on a NETLINK_NETFILTER socket, one at a time (a lock: the daemon's loop and
    the worker threads share an action)."""

    def __init__(self, what: str):
        self.what = what
        self._lock = threading.Lock()
        self._sequence = 0
        try:
            self._socket = socket.socket(socket.AF_NETLINK,
                                         socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                         NETLINK_NETFILTER)
            self._socket.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            self._socket.bind((0, 0))
            self._socket.settimeout(REPLY_TIMEOUT)
        except OSError as error:
            raise ActionError(f"cannot open a netfilter netlink socket: {error.strerror}") \
                from error

    def close(self) -> None:
        self._socket.close()

    def request(self, kind: int, flags: int, payload: bytes,
                on_data: OnData | None = None) -> int:
        """One message (kind: subsystem << 8 | command) answered by an ACK, an error or a
        dump; 0 or the (positive) error."""
        with self._lock:
            sequence = self._next(1)
            message = struct.pack("=IHHII", 16 + len(payload), kind, NLM_F_REQUEST | flags,
                                  sequence, 0) + payload
            return self._exchange(message, lambda seq, code: seq == sequence, on_data)

    def transaction(self, messages: Sequence[tuple[int, int, bytes]]) -> list[int]:
        """One nf_tables transaction: the (kind, flags, payload) messages between a batch
        begin and end, each asking for an ACK; the kernel applies all of them or none. The
        answer to each message, 0 or its (positive) error; a batch the kernel refused as a
        whole answers every message with that error."""
        with self._lock:
            first = self._next(len(messages) + 2)
            parts = [self._batch_marker(NFNL_MSG_BATCH_BEGIN, first)]
            for index, (kind, flags, payload) in enumerate(messages):
                parts.append(struct.pack("=IHHII", 16 + len(payload), kind,
                                         NLM_F_REQUEST | NLM_F_ACK | flags, first + 1 + index,
                                         0) + payload)
            parts.append(self._batch_marker(NFNL_MSG_BATCH_END, first + len(messages) + 1))
            answers: dict[int, int] = {}

            def done(sequence: int, code: int) -> bool:
                if sequence == first:  # the batch itself was refused
                    answers.update((first + 1 + i, code) for i in range(len(messages)))
                    return True
                answers[sequence] = code
                return len(answers) >= len(messages)

            self._exchange(b"".join(parts), done, None)
            return [answers.get(first + 1 + i, 0) for i in range(len(messages))]

    def _next(self, count: int) -> int:
        if self._sequence + count >= 0xFFFFFFFF:
            self._sequence = 0
        first = self._sequence + 1
        self._sequence += count
        return first

    @staticmethod
    def _batch_marker(kind: int, sequence: int) -> bytes:
        return struct.pack("=IHHII", 20, kind, NLM_F_REQUEST, sequence, 0) + nfgenmsg(
            socket.AF_UNSPEC, NFNL_SUBSYS_NFTABLES)

    def _exchange(self, message: bytes, answered: Callable[[int, int], bool],
                  on_data: OnData | None) -> int:
        """Send, then read answers until `answered(sequence, code)` says all are in (an
        error or ACK: its code; the end of a dump: 0); data messages go to `on_data`."""
        try:
            self._socket.send(message)
            while True:
                data = self._socket.recv(1 << 20)
                offset = 0
                while offset + 16 <= len(data):
                    length, kind, _, sequence, _ = struct.unpack_from("=IHHII", data, offset)
                    if length < 16:
                        break
                    if kind == NLMSG_ERROR:
                        code = -struct.unpack_from("=i", data, offset + 16)[0]
                        if answered(sequence, code):
                            return code
                    elif kind == NLMSG_DONE:
                        if answered(sequence, 0):
                            return 0
                    elif on_data is not None:
                        on_data(data, offset + 20, offset + length)
                    offset += (length + 3) & ~3
        except TimeoutError:
            raise ActionError(f"no answer from the kernel's {self.what} within "
                              f"{REPLY_TIMEOUT:g} s") from None
        except OSError as error:
            raise ActionError(f"{self.what} netlink request failed: {error.strerror}") \
                from error
