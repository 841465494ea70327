"""Source progress not yet committed to SQLite: gathered while a batch is read, committed
after the batch has been delivered."""

from __future__ import annotations

from dataclasses import dataclass, field

from arguard.store import Store


@dataclass(slots=True)
class PendingPositions:
    offsets: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    forget: set[str] = field(default_factory=set)
    cursors: dict[str, str | None] = field(default_factory=dict)

    def set_offset(self, key: str, file_id: tuple[int, int], offset: int) -> None:
        self.forget.discard(key)
        self.offsets[key] = (file_id[0], file_id[1], offset)

    def forget_offset(self, key: str) -> None:
        self.offsets.pop(key, None)
        self.forget.add(key)

    def set_cursor(self, source: str, cursor: str | None) -> None:
        self.cursors[source] = cursor

    def __bool__(self) -> bool:
        return bool(self.offsets or self.forget or self.cursors)

    def commit(self, store: Store, now: float) -> None:
        """Write everything in one transaction; on failure nothing is dropped (the caller
        retries later) and the exception propagates."""
        store.save_positions(self.offsets, self.forget, self.cursors, now)
        self.offsets.clear()
        self.forget.clear()
        self.cursors.clear()
