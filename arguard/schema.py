"""The vocabulary of configuration keys: a key's name, type, default and meaning, and the
tables they make up. The configuration loader validates every table with these
descriptions (arguard/config.py: TABLES), each action declares its [[command]] options with
them (arguard/respond/actions/base.py), and the configuration reference
(docs/configuration.md) is generated from the same descriptions (arguard/configdoc.py), so
that a key the loader accepts is a key the reference documents.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from arguard.durations import EXAMPLES


@dataclass(frozen=True)
class OptionType:
    """A type an option value may have, named as the configuration reference names it."""

    name: str
    accepts: Callable[[Any], bool]
    #: a path, made absolute relative to the configuration file's directory
    path: bool = False


def _plain(*kinds: type) -> Callable[[Any], bool]:
    def accepts(value: Any) -> bool:
        return isinstance(value, kinds) and (bool in kinds or not isinstance(value, bool))
    return accepts


STRING = OptionType("a string", _plain(str))
PATH = OptionType("a path", _plain(str), path=True)
INTEGER = OptionType("an integer", _plain(int))
NUMBER = OptionType("a number", _plain(int, float))
BOOLEAN = OptionType("true or false", _plain(bool))
STRINGS = OptionType("a list of strings",
                     lambda value: isinstance(value, list) and all(isinstance(v, str)
                                                                   for v in value))
#: seconds, or units: checked by arguard.durations
DURATION = OptionType(f"a duration ({EXAMPLES})", _plain(int, str))
TABLE = OptionType("a table", _plain(dict))
RULE_IDS = OptionType("a rule id or a list of rule ids",
                      lambda value: _plain(int)(value) or (
                          isinstance(value, list) and all(_plain(int)(v) for v in value)))
#: integers are minutes (as in Wazuh); strings are durations of whole minutes
MINUTES = OptionType('a list of minutes (30) or durations ("30m", "2h")',
                     lambda value: isinstance(value, list)
                     and all(_plain(int, str)(v) for v in value))


class _Required(enum.Enum):
    REQUIRED = "required"


#: the default of an option that must be given
REQUIRED = _Required.REQUIRED


@dataclass(frozen=True)
class Option:
    """One key of a table (for actions: of a [[command]] table, that the action reads)."""

    name: str
    type: OptionType
    default: Any
    #: one line for the configuration reference
    meaning: str
    #: the only values allowed (empty: any value of the type)
    choices: tuple[Any, ...] = ()
    #: what is wrong with a value of the right type ("must be …", "is not …"), or None
    check: Callable[[Any], str | None] | None = None

    def problem(self, value: Any) -> str | None:
        if not self.type.accepts(value):
            return f"{self.name} must be {self.type.name}"
        if self.choices and value not in self.choices:
            return f"{self.name} must be {self.choices_text}"
        if self.check is not None:
            problem = self.check(value)
            if problem is not None:
                return f"{self.name} {value!r} {problem}"
        return None



    @property
    def choices_text(self) -> str:
        names = [f'"{c}"' for c in self.choices]
        return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


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
