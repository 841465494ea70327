"""The chunked text reader gives exactly the lines and counts of the line-by-line reader."""

from __future__ import annotations

import io
import random

import pytest

from arguard.linetext import TextCounters, iter_raw_lines, iter_text_lines, to_text

PIECES = [b"Nov 22 13:40:01 host sshd[1]: ok", b"\xc3\xa9t\xc3\xa9", b"\xff\xfe", b"\x00",
          b"\r", b"   ", b"", b"x" * 70, b"\xe2\x82", b"\xac", "ünïcødé".encode()]


def careful(data: bytes, max_bytes: int) -> tuple[list[str], TextCounters]:
    counters = TextCounters()
    lines = [t for t in (to_text(raw, max_bytes, counters)
                         for raw in iter_raw_lines(io.BytesIO(data), max_bytes)) if t is not None]
    return lines, counters


@pytest.mark.parametrize("seed", range(40))
def test_chunked_reader_matches_line_by_line_reader(seed):
    rng = random.Random(seed)
    data = b"".join(rng.choice(PIECES) + (b"\n" if rng.random() < 0.4 else b"")
                    for _ in range(rng.randint(0, 400)))
    max_bytes = rng.choice([16, 64, 1000])
    counters = TextCounters()
    lines = list(iter_text_lines(io.BytesIO(data), max_bytes, counters,
                                 chunk_size=rng.choice([7, 64, 4096])))
    expected_lines, expected_counters = careful(data, max_bytes)
    assert lines == expected_lines
    assert counters == expected_counters
