"""Several commands in one [[active_response]] (a chain: lock, then terminate), and actions
that act once (stateless): no block, every alert acts again, calls in binding order."""

from __future__ import annotations

import asyncio
import threading
import time

from arguard.model import Response
from arguard.respond.policy import Policy
from arguard.respond.stage import build_respond_stage
from arguard.store import Store
from tests.respond.test_policy import decided, make_alert, make_config
from tests.respond.test_responder import FakeAction

TERMINATE = """
    [[command]]
    name = "end-sessions"
    action = "terminate-sessions"
    passwd = "passwd"
"""


def test_a_list_of_commands_is_one_binding_each_in_order_the_timeout_for_those_that_keep_one(
        tmp_path):
    config = make_config(tmp_path, TERMINATE + """
        [[active_response]]
        command = ["lock-user", "end-sessions"]
        rules_id = [5763]
        timeout = 600
        repeated_offenders = [30]
        """)
    assert [(b.command, b.rules_id, b.timeout, b.repeated_offenders)
            for b in config.active_responses] == [("lock-user", (5763,), 600, (30,)),
                                                  ("end-sessions", (5763,), None, ())]
    assert decided(Policy(config), make_alert(5763, dstuser="alice")) == [
        ("lock-user", "alice", 600, None), ("end-sessions", "alice", None, None)]


def test_a_stateless_action_keeps_no_block_and_acts_on_every_alert(tmp_path):
    config = make_config(tmp_path, TERMINATE + """
        [[active_response]]
        command = "end-sessions"
        rules_id = [5763]
        """)
    store = Store(config.paths.database)
    terminate = FakeAction(store, "end-sessions")
    stage = build_respond_stage(config, store, actions={"end-sessions": terminate})
    for second in (1, 2):
        [response] = stage.policy.decide(make_alert(5763, time=1000.0 + second,
                                                    dstuser="alice"))
        assert [a.verb for a in stage.responder.apply([response])] == ["add"]
    assert terminate.calls == [("add", "alice", None), ("add", "alice", None)]
    assert store.active_blocks() == []
    assert stage.responder.detached("end-sessions"), "it may wait: off the loop"


def test_one_alerts_calls_run_one_after_another_in_worker_threads(tmp_path):
    """Two detached commands bound to one rule: the second starts when the first is done;
    another alert's calls do not wait for them."""
    config = make_config(tmp_path, """
        [[command]]
        name = "first"
        action = "webhook"
        url = "http://192.0.2.1/one"
        expect = "srcip"

        [[command]]
        name = "second"
        action = "webhook"
        url = "http://192.0.2.1/two"
        expect = "srcip"

        [[active_response]]
        command = ["first", "second"]
        rules_id = [5763]
        """)
    events: list[str] = []
    other_alert_ran = threading.Event()

    class Step(FakeAction):
        def __init__(self, name: str):
            super().__init__()
            self.name = name

        def add(self, target, timeout, alert):
            events.append(f"{self.name} {target} start")
            if (self.name, target) == ("first", "203.0.113.5"):
                other_alert_ran.wait(5)
                time.sleep(0.05)
            else:
                other_alert_ran.set()
            events.append(f"{self.name} {target} end")

    store = Store(config.paths.database)
    stage = build_respond_stage(config, store, actions={"first": Step("first"),
                                                        "second": Step("second")})
    responses: list[Response] = []
    for number, address in enumerate(("203.0.113.5", "203.0.113.6")):
        responses += stage.policy.decide(make_alert(5763, alert_id=f"1.{number}",
                                                    srcip=address))
    applied = asyncio.run(stage.responder.apply_async(responses))
    assert [a.verb for a in applied] == ["add"] * 4
    mine = [e for e in events if "203.0.113.5" in e]
    assert mine == ["first 203.0.113.5 start", "first 203.0.113.5 end",
                    "second 203.0.113.5 start", "second 203.0.113.5 end"]
    assert events.index("first 203.0.113.6 start") < events.index("first 203.0.113.5 end")
