"""JSON log lines: Wazuh's JSON_Decoder (`src/analysisd/decoders/plugins/json_decoder.c`).

The first JSON value at the start of the text (leading blanks skipped, anything after it
ignored, as cJSON_ParseWithOpts does) must be an object; its members become fields:

- nested objects are flattened with dots: `{"user": {"name": "x"}}` gives `user.name`;
- strings as they are, `true`/`false`, numbers as Wazuh prints them (`%i` for an integer
  that fits 32 bits, else `%f`: `1.5` gives `1.500000`);
- `null` gives the text `null` (`json_null_field = "string"`, Wazuh's default) or nothing
  (`"discard"`);
- arrays give their JSON text as cJSON prints it (`json_array_structure = "array"`, the
  default: `[1, "a"]`) or their scalar items joined with commas (`"csv"`: `1,a`);
- Wazuh's static fields keep their place: `srcip`, `dstip`, `srcport`, `dstport`,
  `protocol`, `action`, `srcuser`, `dstuser`, `id`, `status`, `url`, `extra_data`, and
  `user` (dstuser, when no dstuser is set), `data` (extra_data), `systemname` (system_name).

Addresses come only from the member the decoder names: `srcip`/`dstip` at the top level, or
the keys `json_fields` maps to them (`{ srcip = "client.ip" }`); never from text inside a
value. A line where that member appears twice (a second `"srcip"` key, or two keys that
flatten to the same name) gives no address and is ambiguous.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

NULL_FIELDS = ("string", "discard")
ARRAY_STRUCTURES = ("array", "csv")
# Wazuh's fillData names, as arguard's fields
_STATIC = {"srcip": "srcip", "dstip": "dstip", "srcport": "srcport", "dstport": "dstport",
           "protocol": "protocol", "action": "action", "srcuser": "srcuser",
           "dstuser": "dstuser", "id": "id", "status": "status", "url": "url",
           "data": "extra_data", "extra_data": "extra_data", "systemname": "system_name"}
_ADDRESSES = ("srcip", "dstip")
_INT_MIN, _INT_MAX = -(2 ** 31), 2 ** 31 - 1
_BLANKS = " \t\r\n"


class _Object(list):
    """A JSON object as its members in order, duplicates kept (cJSON keeps them too)."""

    __slots__ = ()


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not JSON")   # NaN, Infinity: cJSON refuses them too


_DECODER = json.JSONDecoder(object_pairs_hook=_Object, parse_constant=_no_constants)


@dataclass(frozen=True)
class JsonDecoding:
    """A decoder's JSON options."""

    null_field: str = "string"
    array_structure: str = "array"
    #: arguard field → flattened key it is taken from (`srcip = "client.ip"`)
    fields: dict[str, str] = field(default_factory=dict)

    def decode(self, text: str, start: int) -> tuple[dict[str, str], int, bool] | None:
        """(fields, end of the JSON value, ambiguous address) of the object at `start`, or
        None when no JSON object starts there."""
        position = start
        length = len(text)
        while position < length and text[position] in _BLANKS:
            position += 1
        if position >= length or text[position] != "{":
            return None
        try:
            members, end = _DECODER.raw_decode(text, position)
        except (ValueError, RecursionError):
            return None   # not JSON, or nested deeper than Python's stack
        flat: list[tuple[str, str]] = []
        self._flatten(members, None, flat)
        fields, ambiguous = self._fields(flat)
        return fields, end, ambiguous

    def _flatten(self, members: _Object, parent: str | None,
                 out: list[tuple[str, str]]) -> None:
        for key, value in members:
            name = key if parent is None else f"{parent}.{key}"
            if isinstance(value, _Object):
                self._flatten(value, name, out)
            elif isinstance(value, list):
                text = self._array(value)
                if text:
                    out.append((name, text))
            elif value is None:
                if self.null_field == "string":
                    out.append((name, "null"))
            else:
                out.append((name, _scalar(value)))

    def _array(self, items: list) -> str:
        if self.array_structure == "array":
            return _cjson_print(items, 0)
        parts: list[str] = []
        for index, item in enumerate(items):
            if isinstance(item, list):
                continue   # objects and arrays inside an array: left out, as Wazuh does
            parts.append("null" if item is None else _scalar(item))
            if index + 1 < len(items):
                parts.append(",")
        return "".join(parts)

    def _fields(self, flat: list[tuple[str, str]]) -> tuple[dict[str, str], bool]:
        fields: dict[str, str] = {}
        sources = {source: target for target, source in self.fields.items()}
        counts: dict[str, int] = {}
        for name, _ in flat:
            counts[name] = counts.get(name, 0) + 1
        ambiguous = False
        for name, value in flat:
            target = sources.get(name)
            if target is None:
                target = _STATIC.get(name, name)
                if target in _ADDRESSES and target in self.fields:
                    continue   # the decoder takes this address from another member
                if name == "user":
                    target = "dstuser" if "dstuser" not in fields else "user"
            if target in _ADDRESSES and counts[name] > 1:
                ambiguous = True
                continue
            fields[target] = value
        return fields, ambiguous


def _scalar(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return value
    number = float(value)
    if number.is_integer() and _INT_MIN <= number <= _INT_MAX:
        return "%d" % int(number)
    return "%f" % number


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
            "\t": "\\t"}


def _cjson_string(text: str) -> str:
    out = []
    for char in text:
        escaped = _ESCAPES.get(char)
        if escaped is not None:
            out.append(escaped)
        elif char < " ":
            out.append("\\u%04x" % ord(char))
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _cjson_number(value: int | float) -> str:
    number = float(value)
    if math.isnan(number) or math.isinf(number):
        return "null"
    if number.is_integer() and _INT_MIN <= number <= _INT_MAX:
        return "%d" % int(number)
    text = "%1.15g" % number
    return text if float(text) == number else "%1.17g" % number


def _cjson_print(value: Any, depth: int) -> str:
    """cJSON_Print's formatted text of a value (what Wazuh stores for an array)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return _cjson_string(value)
    if isinstance(value, _Object):
        inner = "\t" * (depth + 1)
        members = [f"{inner}{_cjson_string(key)}:\t{_cjson_print(item, depth + 1)}"
                   for key, item in value]
        return "{\n" + ",\n".join(members) + ("\n" if members else "") + "\t" * depth + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_cjson_print(item, depth + 1) for item in value) + "]"
    return _cjson_number(value)
