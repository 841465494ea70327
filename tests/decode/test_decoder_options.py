"""Decoder options for logs read the way their own tools read them (fail2ban's filters):
`priority`, `input = "line"`, `cut`, `require_child`, `children_field`, and `join`."""

from __future__ import annotations

from pathlib import Path

from arguard.model import Line
from tests.conftest import pipeline_with

RULES = """
    [[rule]]
    id = 900100
    level = 3
    decoded_as = "app"
    description = "app"
"""


def decode(pipeline, text: str, **journal) -> tuple[str | None, dict]:
    line = Line(text, "test", 0.0, **journal)
    outcome = pipeline.process(line)
    return outcome.event.decoder, outcome.event.fields


def test_priority_input_line_cut_and_require_child(tmp_path: Path):
    pipeline = pipeline_with(tmp_path, decoders="""
        [[decoder]]
        name = "plain"
        program_name = "^app$"

        [[decoder]]
        name = "app"
        priority = 5
        input = "line"
        cut = '\\d\\d:\\d\\d:\\d\\d'
        require_child = true

        [[decoder]]
        name = "app-fail"
        parent = "app"
        regex = '^Mar  1  (?P<hostname_seen>\\S+) app\\[\\d+\\]: fail from (?P<srcip>\\S+)$'

        [[decoder]]
        name = "app-journal-fail"
        parent = "app"
        regex = '^(?P<hostname_seen>\\S+) app\\[7\\]: fail from (?P<srcip>\\S+)$'
        """, rules=RULES)
    # tried before "plain" (priority), on the whole line with the time cut out
    assert decode(pipeline, "Mar  1 10:00:00 srv app[1]: fail from 192.0.2.1") == \
        ("app", {"hostname_seen": "srv", "srcip": "192.0.2.1"})
    # no child matches: the line goes on to the next root decoder
    assert decode(pipeline, "Mar  1 10:00:00 srv app[1]: started")[0] == "plain"
    # a journal entry is seen as journalctl's short format shows it
    assert decode(pipeline, "fail from 192.0.2.2", program_name="app", hostname="srv",
                  pid="7") == ("app", {"hostname_seen": "srv", "srcip": "192.0.2.2"})
    assert decode(pipeline, "Mar  1  srv app[7]: fail from 192.0.2.2", program_name="x",
                  hostname="h")[0] is None


def test_children_field(tmp_path: Path):
    pipeline = pipeline_with(tmp_path, decoders="""
        [[decoder]]
        name = "app"
        prematch = '^app: '
        regex = '^app: \\[(?P<session>\\w+)\\] (?P<content>.*) \\(done\\)$'
        children_field = "content"
        require_child = true

        [[decoder]]
        name = "app-fail"
        parent = "app"
        regex = '^fail from (?P<srcip>\\S+)$'
        """, rules=RULES)
    assert decode(pipeline, "app: [s1] fail from 192.0.2.1 (done)") == \
        ("app", {"session": "s1", "srcip": "192.0.2.1"})
    assert decode(pipeline, "app: [s1] fail from 192.0.2.1")[0] is None, \
        "the root's regex must match"
    assert decode(pipeline, "app: [s1] retry fail from 192.0.2.1 (done)")[0] is None, \
        "children see the field: ^ is its start"


JOINED = """
    [[decoder]]
    name = "app"
    program_name = "^app$"
    regex = '^(?P<conn>c\\d+) '
    regex_offset = "after_prematch"
    join = "conn"
    require_child = true

    [[decoder]]
    name = "app-connect"
    parent = "app"
    regex = ' (?P<helper>connect) from (?P<srcip>\\S+)$'

    [[decoder]]
    name = "app-fail"
    parent = "app"
    regex = ' bad password for (?P<srcuser>\\S+)$'

    [[decoder]]
    name = "app-accepted"
    parent = "app"
    regex = ' (?P<end>(?P<success>accepted)) for (?P<srcuser>\\S+)$'

    [[decoder]]
    name = "app-close"
    parent = "app"
    regex = ' (?P<helper>(?P<end>closed))$'
"""


def joined(pipeline, message: str) -> dict:
    return decode(pipeline, f"Mar  1 10:00:00 srv app[1]: {message}")[1]


def test_join_carries_fields_and_ends(tmp_path: Path):
    pipeline = pipeline_with(tmp_path, decoders=JOINED, rules=RULES)
    assert joined(pipeline, "c1 connect from 192.0.2.1") == \
        {"conn": "c1", "helper": "connect", "srcip": "192.0.2.1"}
    assert joined(pipeline, "c1 bad password for bob") == \
        {"conn": "c1", "srcip": "192.0.2.1", "srcuser": "bob"}, "the address of c1"
    assert joined(pipeline, "c2 bad password for eve") == {"conn": "c2", "srcuser": "eve"}
    assert joined(pipeline, "c1 closed") == \
        {"conn": "c1", "srcip": "192.0.2.1", "srcuser": "bob", "helper": "closed"}
    assert joined(pipeline, "c1 bad password for bob") == {"conn": "c1", "srcuser": "bob"}, \
        "c1 ended"


def test_join_waiting_failure_several_users_and_success(tmp_path: Path):
    pipeline = pipeline_with(tmp_path, decoders=JOINED, rules=RULES)
    # a failure without an address waits; the next line bringing one is the failure
    assert "srcip" not in joined(pipeline, "c3 bad password for bob")
    assert joined(pipeline, "c3 connect from 192.0.2.3") == \
        {"conn": "c3", "srcip": "192.0.2.3", "srcuser": "bob"}, "no longer a helper"
    # success after failures of one user forgets them; after several users it does not
    joined(pipeline, "c4 connect from 192.0.2.4")
    joined(pipeline, "c4 bad password for bob")
    assert "helper" in joined(pipeline, "c4 accepted for bob")
    joined(pipeline, "c5 connect from 192.0.2.5")
    joined(pipeline, "c5 bad password for bob")
    assert "helper" not in joined(pipeline, "c5 accepted for alice")
    # a success clears a failure waiting for an address
    joined(pipeline, "c6 bad password for bob")
    joined(pipeline, "c6 accepted for bob")
    assert "helper" in joined(pipeline, "c6 connect from 192.0.2.6"), "c6 ended: new sequence"


def test_join_forgets_old_sequences(tmp_path: Path):
    pipeline = pipeline_with(tmp_path, decoders=JOINED, rules=RULES)
    decode(pipeline, "Mar  1 10:00:00 srv app[1]: c7 connect from 192.0.2.7")
    assert decode(pipeline, "Mar  1 10:04:59 srv app[1]: c7 bad password for x")[1].get(
        "srcip") == "192.0.2.7"
    assert "srcip" not in decode(pipeline, "Mar  1 10:10:00 srv app[1]: c7 bad password "
                                           "for x")[1], "more than 5 minutes later"
