"""Following files: what is delivered, what is held back, what is cut, what is counted."""

from __future__ import annotations

import os

from arguard.config import Source
from tests.sources.helpers import expected_lines, follow, texts, until, write_now


def file_status(status, path):
    return next(s for s in status if s["source"] == str(path))


def test_start_at_end_skips_existing_lines_and_beginning_reads_them(tmp_path):
    old_a, old_b = tmp_path / "a.log", tmp_path / "b.log"
    old_a.write_text("a-before\n")
    old_b.write_text("b-before\n")

    async def scenario(manager, delivered):
        with open(old_a, "a") as f:
            f.write("a-after\n")
        await until(lambda: "a-after" in texts(delivered) and "b-before" in texts(delivered))

    delivered, _, _ = follow([Source(path=str(old_a)),
                              Source(path=str(old_b), start_at="beginning")],
                             tmp_path / "db", scenario)
    assert sorted(texts(delivered)) == ["a-after", "b-before"]


def test_partial_last_line_is_held_until_its_newline(tmp_path):
    log = tmp_path / "app.log"
    log.touch()
    seen = {}

    async def scenario(manager, delivered):
        with open(log, "a") as f:
            f.write("complete\nhalf a li")
        # the bytes counter shows the half line has been read
        await until(lambda: file_status(manager.status(), log)["bytes"] == 18)
        seen["after half"] = texts(delivered)
        with open(log, "a") as f:
            f.write("ne\n")
        await until(lambda: len(delivered) >= 2)

    delivered, _, _ = follow([Source(path=str(log))], tmp_path / "db", scenario)
    assert seen["after half"] == ["complete"]
    assert texts(delivered) == ["complete", "half a line"]


def test_over_long_lines_are_cut_counted_and_their_rest_never_becomes_a_line(tmp_path):
    log = tmp_path / "app.log"
    log.touch()
    forged = " sshd[1]: Invalid user x from 192.0.2.9 port 22"

    async def scenario(manager, delivered):
        with open(log, "a") as f:
            f.write("short 1\n")
            f.write("A" * 300_000 + forged + "\n")   # one write, longer than a read chunk
            f.flush()
            for _ in range(10):                       # and one written in pieces
                f.write("B" * 1000)
                f.flush()
            f.write(forged + "\nshort 2\n")
        await until(lambda: "short 2" in texts(delivered))

    delivered, status, _ = follow([Source(path=str(log), max_line_bytes=1024)],
                                  tmp_path / "db", scenario)
    assert texts(delivered) == ["short 1", "A" * 1024, "B" * 1024, "short 2"]
    counters = file_status(status, log)
    assert counters["lines_cut"] == 2
    assert counters["lines"] == 4


def test_invalid_utf8_nul_bytes_and_empty_lines_are_repaired_and_counted(tmp_path):
    log = tmp_path / "app.log"
    log.touch()

    async def scenario(manager, delivered):
        with open(log, "ab") as f:
            f.write(b"caf\xe9 \xff\n" b"nul\x00inside\n" b"\n" b"   \n" b"crlf\r\n" b"end\n")
        await until(lambda: "end" in texts(delivered))

    delivered, status, _ = follow([Source(path=str(log))], tmp_path / "db", scenario)
    assert texts(delivered) == ["caf\ufffd \ufffd", "nul inside", "crlf", "end"]
    counters = file_status(status, log)
    assert (counters["invalid_utf8"], counters["nul_bytes"], counters["empty_lines"]) == (1, 1, 2)


def test_file_and_directory_that_do_not_exist_yet_are_picked_up(tmp_path):
    log = tmp_path / "later" / "app.log"

    async def scenario(manager, delivered):
        log.parent.mkdir()
        log.write_text("first line of a new file\n")
        await until(lambda: len(delivered) >= 1)

    # start_at = "end" concerns files that exist at startup; a new file is read whole
    delivered, status, _ = follow([Source(path=str(log))], tmp_path / "db", scenario)
    assert texts(delivered) == ["first line of a new file"]
    assert file_status(status, log)["errors"] == 0


def test_glob_picks_up_files_that_appear_later(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "a.log").write_text("a existing\n")
    (logs / "skip.txt").write_text("not matched\n")

    async def scenario(manager, delivered):
        with open(logs / "a.log", "a") as f:
            f.write("a new\n")
        (logs / "b.log").write_text("b 1\nb 2\n")
        await until(lambda: len(delivered) >= 3)

    pattern = str(logs / "*.log")
    delivered, status, _ = follow([Source(path=pattern)], tmp_path / "db", scenario)
    assert sorted((os.path.basename(line.location), line.text) for line in delivered) == [
        ("a.log", "a new"), ("b.log", "b 1"), ("b.log", "b 2")]
    assert {entry["path"] for entry in status[0]["files"]} == {
        str(logs / "a.log"), str(logs / "b.log")}


def test_a_burst_in_one_file_does_not_starve_another(tmp_path):
    big, small = tmp_path / "big.log", tmp_path / "small.log"
    big.touch()
    small.touch()
    burst = 300_000

    async def scenario(manager, delivered):
        write_now(big, burst, rate=1e9, tag="B")
        with open(small, "a") as f:
            f.write("small line\n")
        await until(lambda: len(delivered) >= burst + 1)

    delivered, status, batches = follow([Source(path=str(big)), Source(path=str(small))],
                                        tmp_path / "db", scenario)
    got = texts(delivered)
    assert sorted(got) == sorted(expected_lines("B", burst) + ["small line"])
    # the small file's line came out long before the burst was through
    assert got.index("small line") < burst // 2
    assert max(batches) <= 6000


def test_start_at_end_begins_at_the_start_of_an_unfinished_last_line(tmp_path):
    log = tmp_path / "app.log"
    log.write_text("old complete\nbeing writ")

    async def scenario(manager, delivered):
        with open(log, "a") as f:
            f.write("ten\nnext\n")
        await until(lambda: len(delivered) >= 2)

    delivered, _, _ = follow([Source(path=str(log))], tmp_path / "db", scenario)
    assert texts(delivered) == ["being written", "next"]


def test_a_file_renamed_to_another_match_of_the_glob_is_not_read_again(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    log = logs / "app.log"
    log.touch()

    async def scenario(manager, delivered):
        with open(log, "a") as f:
            f.write("one\ntwo\n")
        await until(lambda: len(delivered) >= 2)
        os.rename(log, logs / "app-20260101.log")     # dateext rotation inside the glob
        with open(logs / "app-20260101.log", "a") as f:
            f.write("three\n")
        log.write_text("four\n")
        await until(lambda: len(delivered) >= 4)

    delivered, _, _ = follow([Source(path=str(logs / "*.log"))], tmp_path / "db", scenario)
    assert sorted(texts(delivered)) == ["four", "one", "three", "two"]
