"""Decoder matching: the one-call child dispatch and the reuse of recent results must give
exactly what trying each child in load order gives."""

from __future__ import annotations

import pytest

from arguard.decode.decoders import ChildPrematches, _anchored
from arguard.model import Line
from arguard.pipeline import Pipeline
from tests.conftest import SHARED, pipeline_with, require_corpus


@pytest.mark.parametrize("pattern, anchored", [
    ("^Failed ", True),
    ("^(?:Failed|Invalid) user ", True),
    ("^Did not receive |^Bad protocol ", False),  # top-level | is not analysed further
    ("^a|b", False),
    ("a", False),
    (r"^a\|b", True),
    ("^[|]x", True),
    ("^[]|]x", True),
    (r"^[\]|]x", True),
    ("^(a|b)c", True),
])
def test_anchored_only_when_every_match_starts_at_the_beginning(pattern, anchored):
    assert _anchored(pattern) is anchored


def _corpus_messages() -> list[str]:
    messages = []
    for path in (SHARED / "corpus").rglob("*"):
        if path.is_file():
            for line in path.read_text(errors="replace").splitlines():
                messages.append(line)
                messages.append(line.split(": ", 1)[-1])
    return messages


def test_one_call_dispatch_finds_the_same_child_as_trying_each(shipped_ruleset, request):
    """For every root decoder shipped and every corpus line, from every start position in the
    children: the combined alternation names the same child, with the same prematch end, as
    searching each child's prematch in load order."""
    require_corpus(request, SHARED / "corpus")
    messages = _corpus_messages() + [
        "Failed password for invalid user admin from 192.0.2.1 port 22 ssh2",
        "Failed password for admin from 192.0.2.1 port 22 ssh2",
        "Connection closed by 192.0.2.1 port 22 [preauth]",
        "fatal: Timeout before authentication for 192.0.2.1 port 22", "", "x" * 3000]
    compared = 0
    for root in shipped_ruleset.decoders.roots:
        combined = ChildPrematches(root)
        sequential = ChildPrematches(root)
        sequential._can_combine = False
        assert combined._can_combine, root.name
        for message in messages:
            for index in range(len(root.children)):
                assert combined.first(message, 0, index) == sequential.first(message, 0, index), \
                    (root.name, index, message)
                compared += 1
    assert compared > 50_000


def test_children_with_group_references_are_tried_one_by_one(tmp_path):
    decoders = """
    [[decoder]]
    name = "app"
    program_name = '^app$'

    [[decoder]]
    name = "app-twice"
    parent = "app"
    prematch = '^(\\w+) \\1 '
    regex = '^(?P<word>\\w+) '

    [[decoder]]
    name = "app-any"
    parent = "app"
    prematch = '^\\w+ '
    """
    pipeline = pipeline_with(tmp_path, decoders, "")
    root = pipeline.decoders.roots[0]
    assert not ChildPrematches(root)._can_combine
    assert _decoded(pipeline, "app[1]: echo echo x") == ("app-twice", {"word": "echo"})
    assert _decoded(pipeline, "app[1]: echo hello x") == ("app-any", {})


RECALL_DECODERS = """
[[decoder]]
name = "daemon"
program_name = '^daemon$'
recall_source = true

[[decoder]]
name = "daemon-peer"
parent = "daemon"
prematch = '^peer '
regex = '^peer (?P<srcip>\\S+)$'
remember_source = true

[[decoder]]
name = "daemon-refused"
parent = "daemon"
prematch = '^refused'
"""


def test_a_repeated_message_still_gets_its_own_process_address(tmp_path):
    """Word-for-word repeated messages reuse the decoding, but the address recalled for a
    process is still that process's own, not the one recalled for the first copy."""
    pipeline = pipeline_with(tmp_path, RECALL_DECODERS, "")
    _decoded(pipeline, "daemon[1]: peer 192.0.2.1")
    _decoded(pipeline, "daemon[2]: peer 198.51.100.2")
    assert _decoded(pipeline, "daemon[1]: refused") == ("daemon-refused", {"srcip": "192.0.2.1"})
    assert _decoded(pipeline, "daemon[2]: refused") == \
        ("daemon-refused", {"srcip": "198.51.100.2"})
    assert _decoded(pipeline, "daemon[3]: refused") == ("daemon-refused", {})
    assert _decoded(pipeline, "daemon[1]: refused") == ("daemon-refused", {"srcip": "192.0.2.1"})


def test_a_rule_on_a_recalled_address_sees_each_repeat_s_own_address(tmp_path):
    rules = """
    [[rule]]
    id = 100
    level = 3
    decoded_as = "daemon"
    match = '^refused'
    description = "refused"

    [[rule]]
    id = 101
    level = 8
    if_sid = 100
    srcip = "192.0.2.0/24"
    description = "refused from the watched network"
    """
    pipeline = pipeline_with(tmp_path, RECALL_DECODERS, rules)
    _decoded(pipeline, "daemon[1]: peer 192.0.2.1")
    _decoded(pipeline, "daemon[2]: peer 198.51.100.2")
    rules_fired = [_rule(pipeline, f"daemon[{pid}]: refused") for pid in (1, 2, 1, 2, 3)]
    assert rules_fired == [101, 100, 101, 100, 100]


def _decoded(pipeline: Pipeline, text: str) -> tuple[str | None, dict[str, str]]:
    event = pipeline.process(Line(f"Nov 22 10:00:00 host {text}", "test", 0.0)).event
    return event.decoder_child, event.fields


def _rule(pipeline: Pipeline, text: str) -> int | None:
    rule = pipeline.process(Line(f"Nov 22 10:00:00 host {text}", "test", 0.0)).evaluation.rule
    return rule.id if rule else None
