"""OS_Match / OS_Regex / PCRE2 translation: each Wazuh behaviour, checked by matching text with
the pattern compiled exactly as arguard compiles decoder and rule patterns."""

from __future__ import annotations

import pytest

from arguard.importers.ospatterns import PatternError, os_match, os_regex, pcre2, translate
from arguard.patterns import compile_pattern


def search(translated, text, pos=0):
    match = compile_pattern(translated.pattern).search(text, pos)
    return (match is not None) != translated.negate


def groups(translated, text, pos=0):
    match = compile_pattern(translated.pattern).search(text, pos)
    return None if match is None else match.groupdict()


# --- OS_Match ------------------------------------------------------------------------------

def test_match_is_case_insensitive_literal():
    pattern = os_match("Failed password")
    assert search(pattern, "sshd: FAILED PASSWORD for root")
    assert not search(pattern, "Failed  password")


def test_match_special_characters_are_literal():
    pattern = os_match("a.b*c(d)[e]?")
    assert search(pattern, "xx a.b*c(d)[e]? yy")
    assert not search(pattern, "axbbbcde")


def test_match_alternatives_with_their_own_anchors():
    pattern = os_match("^start|end$|middle")
    assert search(pattern, "start of line")
    assert not search(pattern, "not start")
    assert search(pattern, "at the end")
    assert not search(pattern, "end here")
    assert search(pattern, "in the middle of it")


def test_match_both_anchors_compare_the_whole_string():
    pattern = os_match("^exact$")
    assert search(pattern, "EXACT")
    assert not search(pattern, "exact ")


def test_match_empty_alternative_matches_everything():
    assert search(os_match("never|"), "anything at all")
    assert search(os_match(""), "")


def test_match_leading_bang_negates():
    pattern = os_match("!root|admin")
    assert pattern.negate
    assert search(pattern, "user alice")
    assert not search(pattern, "user ROOT")


def test_match_at_offset_anchors_at_the_search_start():
    pattern = os_match("^user ", at_offset=True)
    assert search(pattern, "prefix: user x", pos=8)
    assert not search(pattern, "prefix: user x", pos=0)


# --- OS_Regex ------------------------------------------------------------------------------

def test_regex_is_case_insensitive():
    assert search(os_regex(r"^Accepted \w+ for"), "accepted PASSWORD FOR root")


def test_regex_w_includes_dash_at_underscore_but_not_dot():
    pattern = os_regex(r"^user (\w+)$", ["dstuser"])
    assert groups(pattern, "user a-b@c_d")["dstuser"] == "a-b@c_d"
    assert groups(pattern, "user a.b") is None


def test_regex_s_is_the_space_only():
    assert search(os_regex(r"a\sb"), "a b")
    assert not search(os_regex(r"a\sb"), "a\tb")
    assert search(os_regex(r"a\tb"), "a\tb")


def test_regex_p_is_wazuh_punctuation_set():
    pattern = os_regex(r"^\p+$")
    assert search(pattern, "()*+,-.:;<=>?[]!\"'#$%&|{}")
    for char in "/@_\\^`~":
        assert not search(pattern, char), char


def test_regex_backslash_dot_is_any_character_and_bare_dot_is_literal():
    assert search(os_regex(r"^a\.c$"), "abc")
    assert search(os_regex(r"^a.c$"), "a.c")
    assert not search(os_regex(r"^a.c$"), "abc")


def test_regex_complement_classes():
    assert search(os_regex(r"^\D\W\S$"), "x.y")
    assert not search(os_regex(r"^\D$"), "5")
    assert not search(os_regex(r"^\W$"), "@")
    assert not search(os_regex(r"^\S$"), " ")


def test_regex_escaped_specials_are_literal():
    assert search(os_regex(r"^\$\(x\)\\\|<$"), "$(x)\\|<")
    assert search(os_regex(r"cost \$5"), "cost $5")


def test_regex_quantifiers_are_lazy_inside_and_run_to_the_end_at_the_end():
    pattern = os_regex(r"user (\S+) from (\S+)", ["srcuser", "srcip"])
    fields = groups(pattern, "user bob from 10.0.0.1 from 10.0.0.2")
    assert fields == {"srcuser": "bob", "srcip": "10.0.0.1"}
    assert groups(os_regex(r"id=(\d*)x", ["id"]), "id=12x34x")["id"] == "12"


def test_regex_plus_after_a_literal_is_literal():
    assert search(os_regex("a+b"), "a+b")
    assert not search(os_regex("a+b"), "aab")


def test_regex_anchors_and_literal_dollar_caret_inside():
    assert search(os_regex(r"^a^b$c$"), "a^b$c")
    assert not search(os_regex(r"^b"), "ab")
    assert not search(os_regex(r"a$"), "ab")


def test_regex_alternatives_tried_in_order_for_decoders():
    ordered = os_regex(r"port (\d+)|from (\S+)", ["value"], ordered=True)
    # Python would take the leftmost match ("from"); Wazuh tries "port" first.
    assert groups(ordered, "from 1.2.3.4 port 22")["value"] == "22"
    assert groups(ordered, "from 1.2.3.4")["value"] == "1.2.3.4"
    # for a plain condition only whether something matches counts
    assert search(os_regex("port|from"), "from x")


def test_regex_groups_beyond_order_do_not_capture():
    pattern = os_regex(r"^(\w+) (\w+)$", ["first"])
    assert groups(pattern, "a b") == {"first": "a"}


def test_regex_offset_anchor():
    pattern = os_regex(r"^(\d+)$", ["id"], at_offset=True)
    assert groups(pattern, "pid 42", pos=4) == {"id": "42"}


@pytest.mark.parametrize("bad", [r"\x", r"((a))", "(a", "a)", r"(a|b)", "a\\"])
def test_regex_that_wazuh_rejects_is_reported(bad):
    with pytest.raises(PatternError):
        os_regex(bad)


# --- PCRE2 ---------------------------------------------------------------------------------

def test_pcre2_is_passed_through_case_sensitive_with_named_groups():
    pattern = pcre2(r"^user ([a-z]+) from (\d+\.\d+\.\d+\.\d+)(?: port \d+)?$",
                    ["dstuser", "srcip"])
    assert groups(pattern, "user bob from 10.0.0.1 port 2") == {"dstuser": "bob",
                                                                 "srcip": "10.0.0.1"}
    assert groups(pattern, "USER bob from 10.0.0.1") is None


def test_translate_rejects_unknown_types_and_captures_in_osmatch():
    with pytest.raises(PatternError):
        translate("glob", "*")
    with pytest.raises(PatternError):
        translate("osmatch", "x", ["srcip"])
