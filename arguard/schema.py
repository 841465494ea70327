"""The configuration's tables as the loader validates them and the reference documents them.

A key is an `Option` (name, type, default, one line of meaning, choices), the same record an
action uses to declare its [[command]] options (arguard/respond/actions/base.py); the
configuration loader validates every table with these descriptions (arguard/config.py:
TABLES), and the configuration reference (docs/configuration.md) is generated from the same
descriptions and the actions' own (arguard/configdoc.py), so that a key the loader accepts is
a key the reference documents. The key types the actions use are here too, so that the
loader names no action module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from arguard.durations import EXAMPLES
from arguard.respond.actions.base import (BOOLEAN, INTEGER, NUMBER, PATH, REQUIRED, STRING,
                                          STRINGS, Option, OptionType)

__all__ = ["BOOLEAN", "COMMANDS", "DURATION", "INTEGER", "MINUTES", "NUMBER", "PATH", "REQUIRED",
           "RULE_IDS", "SIZE", "STRING", "STRINGS", "TABLE", "Option", "OptionType", "Table"]


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


#: seconds, or units: checked by arguard.durations
DURATION = OptionType(f"a duration ({EXAMPLES})",
                      lambda value: _integer(value) or isinstance(value, str))
TABLE = OptionType("a table", lambda value: isinstance(value, dict))
#: bytes, or "512KB", "1MB"
SIZE = OptionType('a size (bytes, "512KB", "1MB")',
                  lambda value: _integer(value) or isinstance(value, str))
RULE_IDS = OptionType("a rule id or a list of rule ids",
                      lambda value: _integer(value) or (
                          isinstance(value, list) and all(_integer(v) for v in value)))
#: one [[command]] name, or a chain of them run in that order
COMMANDS = OptionType("a command name or a list of them",
                      lambda value: isinstance(value, str) or (
                          isinstance(value, list) and all(isinstance(v, str) for v in value)))
#: integers are minutes (as in Wazuh); strings are durations of whole minutes
MINUTES = OptionType('a list of minutes (30) or durations ("30m", "2h")',
                     lambda value: isinstance(value, list)
                     and all(_integer(v) or isinstance(v, str) for v in value))


@dataclass(frozen=True)
class Table:
    """A table of the configuration file: `[name]`, or `[[name]]` when `array`."""

    name: str
    array: bool
    #: a paragraph for the configuration reference
    meaning: str
    keys: tuple[Option, ...]

    def key(self, name: str) -> Option | None:
        return next((option for option in self.keys if option.name == name), None)

    @property
    def header(self) -> str:
        return f"[[{self.name}]]" if self.array else f"[{self.name}]"
