"""The configuration a first install writes (`packaging/install.sh`): the shipped
arguard.toml with its comments, its paths moved under the install root (`--root DIR`), and
the address of the SSH session the installer runs in added to the white list, so that the
admin installing arguard is never the one it blocks.

    python -m arguard.firstinstall [--root DIR] [--ssh-connection "$SSH_CONNECTION"] > FILE

Every path the configuration names, or that a configured action would use by default
(hosts.deny, the shadow and passwd files), is written out under DIR, so an install into a
temp root never points at the host's files.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from pathlib import Path

import regex

from arguard.config import Paths, parse_network, shipped_dir
from arguard.respond.actions import EXECUTABLE_ACTION, action_type
from arguard.tomlfile import TomlFile

_STRING_VALUE = regex.compile(r'^(\s*[A-Za-z0-9_\-]+\s*=\s*)"([^"\\]*)"')
_WHITE_LIST = regex.compile(r"^(\s*white_list\s*=\s*\[)(.*)\](\s*(?:#.*)?)$")


def ssh_client_address(ssh_connection: str | None) -> str | None:
    """The client address of `$SSH_CONNECTION` ("CLIENT PORT SERVER PORT"), or None."""
    fields = (ssh_connection or "").split()
    if len(fields) != 4:
        return None
    network = parse_network(fields[0])
    return None if network is None or network.num_addresses != 1 \
        else str(network.network_address)


def first_config(shipped: TomlFile, root: Path | None, ssh_address: str | None) -> str:
    lines = shipped.text.splitlines()
    inserts: dict[int, list[str]] = {}
    if root is not None:
        for key in Paths.__dataclass_fields__:
            _under_root(lines, shipped.key_line("paths", key), root)
        for index, command in enumerate(shipped.data.get("command", [])):
            for key, default in _path_options(command).items():
                if key in command:
                    _under_root(lines, shipped.key_line("command", key, index), root)
                else:
                    header = shipped.table_line("command", index)
                    inserts.setdefault(header, []).append(f'{key} = "{root}{default}"')
    if ssh_address is not None and not _white_listed(shipped, ssh_address):
        number = shipped.key_line("global", "white_list")
        match = _WHITE_LIST.match(lines[number - 1])
        if match is None:
            raise ValueError("the shipped configuration's white_list is not on one line")
        entries = match.group(2).strip()
        lines[number - 1] = (f'{match.group(1)}{entries}{", " if entries else ""}'
                             f'"{ssh_address}"]{match.group(3)}')
        inserts.setdefault(number - 1, []).append(
            f"# {ssh_address}: the address of the SSH session arguard was installed from\n"
            "# (SSH_CONNECTION), so that the admin who installed it is never blocked.")
    return "\n".join(_placed(lines, inserts)) + "\n"


def _placed(lines: list[str], inserts: dict[int, list[str]]) -> list[str]:
    """The lines with `inserts[n]` after line n (line 0: before the first)."""
    out = list(inserts.get(0, []))
    for number, line in enumerate(lines, start=1):
        out.append(line)
        out.extend(inserts.get(number, []))
    return out


def _under_root(lines: list[str], number: int | None, root: Path) -> None:
    if number is None:
        return
    match = _STRING_VALUE.match(lines[number - 1])
    if match is not None and match.group(2).startswith("/"):
        lines[number - 1] = (f'{match.group(1)}"{root}{match.group(2)}"'
                             + lines[number - 1][match.end():])


def _path_options(command: dict) -> dict[str, str]:
    """The path options of a command's action (as its description declares them), with
    their defaults."""
    described = action_type(EXECUTABLE_ACTION if "executable" in command
                            else command.get("action", ""))
    return {} if described is None else {
        option.name: option.default for option in described.options
        if option.type.path and isinstance(option.default, str)}


def _white_listed(shipped: TomlFile, address: str) -> bool:
    ip = ipaddress.ip_address(address)
    networks = (parse_network(e) for e in shipped.data.get("global", {}).get("white_list", []))
    return any(n is not None and n.version == ip.version and ip in n for n in networks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m arguard.firstinstall",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, help="the install root (paths go under it)")
    parser.add_argument("--ssh-connection", metavar="SSH_CONNECTION",
                        help="the installing session's $SSH_CONNECTION")
    args = parser.parse_args(argv)
    address = ssh_client_address(args.ssh_connection)
    if args.ssh_connection and address is None:
        print(f"arguard: SSH_CONNECTION={args.ssh_connection!r} names no client address; "
              "nothing added to the white list", file=sys.stderr)
    root = args.root.absolute() if args.root is not None else None
    shipped = TomlFile.load(shipped_dir("conf") / "arguard.toml")
    sys.stdout.write(first_config(shipped, root, address))
    if address is not None:
        print(f"arguard: white-listed {address}, the address of this SSH session "
              "(SSH_CONNECTION)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
