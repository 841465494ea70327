"""Per-source counters, as `arguard status` shows them."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from arguard.linetext import TextCounters

log = logging.getLogger(__name__)


@dataclass(slots=True)
class SourceCounters:
    """What one configured source has read so far in this run.

    `text` counts lines as split and repaired: every line read (`lines` in the status, the
    number of lines written to the file), and of those the empty ones (not handed on), the
    ones cut to max_line_bytes, with invalid UTF-8, with NUL bytes; `undecoded` is counted
    by the daemon (lines no decoder understood), and so is `ambiguous` (lines whose address
    was ambiguous, so none was decoded); `errors` are faults of the source itself
    (unreadable file, journalctl dying), each also logged once.
    """

    name: str
    kind: str
    text: TextCounters = field(default_factory=TextCounters)
    bytes: int = 0
    undecoded: int = 0
    ambiguous: int = 0
    errors: int = 0
    last_error: str | None = None
    last_read: float | None = None

    def fault(self, message: str) -> None:
        """Count and log a fault. Callers report a lasting condition (a file that stays
        unreadable) once when it starts, not on every check."""
        self.errors += 1
        self.last_error = message
        log.warning("%s", message)

    def as_dict(self) -> dict:
        text = self.text
        return {
            "source": self.name, "kind": self.kind, "lines": text.lines,
            "empty_lines": text.empty, "bytes": self.bytes, "lines_cut": text.cut,
            "invalid_utf8": text.invalid_utf8, "nul_bytes": text.nul,
            "undecoded": self.undecoded, "ambiguous": self.ambiguous, "errors": self.errors,
            "last_error": self.last_error,
            "last_read": self.last_read,
        }
