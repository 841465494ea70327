"""Lists (Wazuh's CDB lists): `key:value` text files that rules look values up in.

The file format is Wazuh's (`lists_make.c`): one `key:value` per line, split at the first
`:`; a key or value in double quotes may hold `:` (`"2001:db8::1":bad`, `"a:b":"c:d"`); the
value may be empty (`203.0.113.5:`). Blank lines and lines starting with `#` are skipped. A
line with no `:` is an error naming the file and line (Wazuh drops it silently).

Each list is read once when the ruleset is loaded (at start and on every reload) into a dict
of its keys, and the keys that are networks into one dict per prefix length, so a lookup is
one dict probe, and an address lookup one more per prefix length the list has. Networks are
written as CIDRs (`10.0.0.0/8`, `2001:db8::/32`) or as Wazuh writes them, a dotted IPv4 prefix
ending with `.` (`192.168.` is 192.168.0.0/16).

Lookups (Wazuh's `lookup=` values), each on the value of one event field:
`match_key` (the value is a key), `not_match_key`, `match_key_value` (a key whose value the
`check_value` pattern finds), `address_match_key` (the value is an address that is a key or
inside a network key; the most specific network wins), `not_address_match_key` and
`address_match_key_value`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from arguard.decode.decoders import normalise_address
from arguard.errors import Problem
from arguard.patterns import Pattern

LOOKUPS = ("match_key", "not_match_key", "match_key_value", "address_match_key",
           "not_address_match_key", "address_match_key_value")
#: the lookups that also test the key's value with `check_value`
VALUE_LOOKUPS = ("match_key_value", "address_match_key_value")
_ADDRESS_LOOKUPS = ("address_match_key", "not_address_match_key", "address_match_key_value")
_NEGATED = ("not_match_key", "not_address_match_key")
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ListFile:
    """One list, read into its lookup tables."""

    def __init__(self, path: Path, entries: dict[str, str]):
        self.path = path
        self.keys = entries
        #: per IP version, per prefix length (longest first), network address → value
        self._networks: dict[int, list[tuple[int, dict[int, str]]]] = {4: [], 6: []}
        by_length: dict[tuple[int, int], dict[int, str]] = {}
        for key, value in entries.items():
            network = _network_key(key)
            if network is not None:
                table = by_length.setdefault((network.version, network.prefixlen), {})
                table.setdefault(int(network.network_address), value)
        for (version, length), table in sorted(by_length.items(), key=lambda item: -item[0][1]):
            self._networks[version].append((length, table))

    def __len__(self) -> int:
        return len(self.keys)

    def address_value(self, value: str) -> str | None:
        """The value of the key that is `value` itself, or of the most specific network key
        holding the address `value`; None if there is none."""
        found = self.keys.get(value)
        if found is not None:
            return found
        networks = self._networks
        if not (networks[4] or networks[6]):
            return None
        try:
            address = ipaddress.ip_address(normalise_address(value))
        except ValueError:
            return None
        bits = 32 if address.version == 4 else 128
        number = int(address)
        for length, table in networks[address.version]:
            found = table.get(number >> (bits - length) << (bits - length))
            if found is not None:
                return found
        return None


def _network_key(key: str) -> _Network | None:
    if key.endswith(".") and key[:-1].replace(".", "").isdigit():
        octets = key[:-1].split(".")
        if len(octets) < 4 and all(o.isdigit() and int(o) < 256 for o in octets):
            padded = octets + ["0"] * (4 - len(octets))
            return ipaddress.ip_network(f"{'.'.join(padded)}/{8 * len(octets)}")
        return None
    if "/" not in key:
        return None
    try:
        return ipaddress.ip_network(key, strict=False)
    except ValueError:
        return None


def split_line(text: str) -> tuple[str, str] | None:
    """(key, value) of one line, as Wazuh's list compiler splits it; None if it has no `:`."""
    key_quote = text.find('"')
    colon = text.find(":")
    if colon < 0:
        return None
    if 0 <= key_quote < colon:
        end = text.find('"', key_quote + 1)
        if end < 0:
            return None
        key, rest = text[key_quote + 1:end], text[end + 1:]
        colon = rest.find(":")
        if colon < 0:
            return None
        value = rest[colon + 1:]
    else:
        key, value = text[:colon], text[colon + 1:]
    value_quote = value.find('"')
    if value_quote >= 0:
        end = value.find('"', value_quote + 1)
        if end < 0:
            return None
        value = value[value_quote + 1:end]
    return key, value


def read_list(path: Path, problems: list[Problem]) -> ListFile | None:
    """Read one list file; its problems (unreadable, a line without `:`) go to `problems`."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        problems.append(Problem(path, None, f"cannot read list: {exc.strerror}"))
        return None
    entries: dict[str, str] = {}
    before = len(problems)
    text = raw.decode("utf-8", errors="replace")
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parsed = split_line(line)
        if parsed is None:
            problems.append(Problem(path, number, "a list line is KEY:VALUE (a key holding ':' "
                                    "is written in double quotes)"))
            continue
        key, value = parsed
        entries.setdefault(normalise_address(key), value)
    if len(problems) > before:
        return None
    return ListFile(path, entries)


class ListFiles:
    """The lists of one ruleset load: each file read once, however many rules use it."""

    def __init__(self, directory: Path | None):
        self.directory = directory
        self.loaded: dict[Path, ListFile | None] = {}

    def resolve(self, name: str) -> Path:
        path = Path(name)
        if path.is_absolute() or self.directory is None:
            return path
        return self.directory / path

    def get(self, name: str, problems: list[Problem]) -> ListFile | None:
        path = self.resolve(name)
        if path not in self.loaded:
            self.loaded[path] = read_list(path, problems) if path.is_file() else None
        return self.loaded[path]


@dataclass(frozen=True, eq=False)
class ListLookup:
    """One `list` condition of a rule: a lookup of one field's value in a list."""

    field: str
    lookup: str
    list: ListFile
    check_value: Pattern | None = None

    def holds(self, value: str | None) -> bool:
        """Whether the lookup holds for the field's value; as in Wazuh, an event without the
        field fails every lookup, the negated ones included."""
        if value is None:
            return False
        lookup = self.lookup
        if lookup in _ADDRESS_LOOKUPS:
            found = self.list.address_value(value)
        else:
            found = self.list.keys.get(value)
        if lookup in _NEGATED:
            return found is None
        if found is None:
            return False
        if self.check_value is not None:
            return self.check_value.search(found) is not None
        return True
