"""Which arguard instance the kernel objects belong to.

Every set rule, firewall rule, route and hosts.deny block arguard creates carries the
instance that made it, so that reconciliation touches only its own instance's objects and
two instances in one network namespace never undo each other's blocks (docs/actions.md
says how each backend carries it). The owner is a tag of the instance's state directory,
kept in its database:

- untagged ("") for the packaged state directory /var/lib/arguard, and for a database older
  than owner tags. The untagged form is exactly what arguard always wrote, so a standard
  install makes the same kernel objects as before and recognises the ones it made before
  the upgrade as its own;
- otherwise 8 hex digits of the CRC-32 of the state directory's real path, taken when the
  database is created and kept in it (moving the directory keeps the identity). CRC-32
  rather than a cryptographic hash: the tag only has to differ between a host's few state
  directories, and zlib is loaded anyway where OpenSSL's hashlib would cost the daemon
  megabytes of resident memory.

Two running daemons with the same tag in one network namespace (two instances whose
databases predate owner tags, or a copied state directory) would still undo each other's
blocks; `claim_namespace` makes the second one refuse to start.
"""

from __future__ import annotations

import errno
import os
import re
import socket
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from arguard.respond.actions.base import OwnerConflict

if TYPE_CHECKING:
    from arguard.store import Store

#: the state directory the package installs (the untagged instance's)
PACKAGED_STATE_DIR = Path("/var/lib/arguard")
_LABEL = re.compile(r"arguard(?::(?P<tag>[0-9a-f]{8}))?")


@dataclass(frozen=True)
class Owner:
    #: "" (untagged) or 8 hex digits
    tag: str = ""

    @property
    def label(self) -> str:
        """How kernel objects name their owner: `arguard` or `arguard:<tag>`."""
        return f"arguard:{self.tag}" if self.tag else "arguard"

    def describe(self) -> str:
        return describe_tag(self.tag)


UNTAGGED = Owner()


def describe_tag(tag: str) -> str:
    """An owner as an error message names it."""
    if not tag:
        return ("the untagged instance (state directory /var/lib/arguard, or one whose "
                "database predates owner tags)")
    return f"the instance tagged {tag} (another state directory)"


def tag_of_label(text: str) -> str | None:
    """The tag in an owner label (`arguard` → ""), None when the text is not one."""
    match = _LABEL.fullmatch(text)
    return None if match is None else match["tag"] or ""


def instance_owner(store: Store, state_dir: Path) -> Owner:
    """The owner of the instance whose database this is (recorded on first use)."""
    tag = store.owner_tag()
    if tag is None:
        real = Path(os.path.realpath(state_dir))
        tag = "" if real == PACKAGED_STATE_DIR else f"{zlib.crc32(os.fsencode(real)):08x}"
        tag = store.record_owner_tag(tag)
    return Owner(tag)


def claim_namespace(owner: Owner) -> socket.socket:
    """Claim the owner in this network namespace for as long as the returned socket stays
    open: an abstract unix socket, which the kernel keeps per network namespace and drops
    when the process ends. OwnerConflict when a running daemon holds it already."""
    claim = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    name = f"\0arguard-owner {owner.label}"
    try:
        claim.bind(name)
        claim.listen(8)
    except OSError as error:
        claim.close()
        if error.errno != errno.EADDRINUSE:
            raise
        raise OwnerConflict(
            f"another arguard daemon of the same owner ({owner.describe()}) runs in this "
            f"network namespace{_holder(name)}; two daemons with one owner would undo each "
            "other's blocks. Give this one its own state directory") from None
    return claim


def _holder(name: str) -> str:
    """`: pid N` for the daemon holding the claim, when it can be asked."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(name)
            pid = struct.unpack("3i", probe.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                       struct.calcsize("3i")))[0]
        except OSError:
            return ""
    return f" (pid {pid})"
