"""Durations as the operator writes them, the same in the configuration and on the command
line: a number of seconds (`600`, `"600"`) or a string of units (`"90s"`, `"10m"`, `"1h30m"`,
`"7d"`, `"2w"`)."""

from __future__ import annotations

from typing import Any

import regex

UNITS = {"s": 1, "m": 60, "h": 3_600, "d": 86_400, "w": 604_800}
_PART = regex.compile(r"\s*(\d+)\s*([smhdw])")
_WHOLE = regex.compile(r"(?:\s*\d+\s*[smhdw])+\s*")
EXAMPLES = '600, "10m", "1h30m", "7d"'


def parse_duration(value: Any) -> int:
    """Positive whole seconds; ValueError with what is wrong (for `must be …` messages)."""
    if isinstance(value, bool):
        raise ValueError(f"a duration ({EXAMPLES})")
    if isinstance(value, int):
        seconds = value
    elif isinstance(value, str) and value.strip().isdigit():
        seconds = int(value)
    elif isinstance(value, str) and _WHOLE.fullmatch(value):
        seconds = sum(int(number) * UNITS[unit] for number, unit in _PART.findall(value))
    else:
        raise ValueError(f"a duration ({EXAMPLES})")
    if seconds <= 0:
        raise ValueError("a positive duration")
    return seconds


def format_duration(seconds: float) -> str:
    """`5400` → `"1h30m"`: the largest units first, seconds only when there are some."""
    remaining = round(seconds)
    if remaining <= 0:
        return "0s"
    parts = []
    for unit in ("d", "h", "m", "s"):
        count, remaining = divmod(remaining, UNITS[unit])
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
