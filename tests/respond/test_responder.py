"""Responder: one block per (command, target), row before action, extend, cap, failures, log,
manual control, dry run, and the async path that keeps slow actions off the event loop."""

from __future__ import annotations

import asyncio
import threading

import pytest

from arguard.model import Block, Lift, Response
from arguard.respond.actions import ActionError
from arguard.respond.policy import Policy
from arguard.respond.responder import LIFT_RETRY, Applied
from arguard.respond.stage import RespondStage, build_respond_stage
from arguard.store import Store
from tests.respond.test_policy import make_alert, make_config

BINDINGS = """
    [[command]]
    name = "notify"
    action = "webhook"
    url = "http://192.0.2.1/hook"
    expect = "srcip"
    timeout_allowed = true

    [[active_response]]
    command = "firewall-drop"
    rules_id = [5712]
    timeout = 600
    repeated_offenders = [30, 60]
"""


class Clock:
    def __init__(self, now: float = 1_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeAction:
    """An in-memory backend that records its calls (and the thread they ran in)."""

    kind = "ip"

    def __init__(self, store: Store | None = None, command: str = "firewall-drop"):
        self.entries: dict[str, int | None] = {}
        self.calls: list[tuple] = []
        self.threads: set[int] = set()
        self.fail: Exception | None = None
        self.rows_seen: list[Block | None] = []
        self.store, self.command = store, command

    def add(self, target, timeout, alert):
        self.threads.add(threading.get_ident())
        if self.store is not None:
            self.rows_seen.append(self.store.active_block(self.command, target))
        self.calls.append(("add", target, timeout))
        if self.fail:
            raise self.fail
        self.entries[target] = timeout

    def delete(self, target):
        self.calls.append(("delete", target))
        if self.fail:
            raise self.fail
        self.entries.pop(target, None)

    def check(self, target):
        return target in self.entries

    def list_targets(self):
        return set(self.entries)


@pytest.fixture
def setup(tmp_path):
    def build(global_: str = "", dry_run: bool = False, bindings: str = BINDINGS):
        config = make_config(tmp_path, bindings, global_)
        store = Store(config.paths.database)
        fake = FakeAction(store)
        notify = FakeAction(store, "notify")
        clock = Clock()
        stage = build_respond_stage(config, store, dry_run=dry_run, clock=clock, actions={
            "firewall-drop": fake, "notify": notify, "deny-dst": FakeAction(),
            "lock-user": FakeAction()})
        return stage, fake, notify, clock
    return build


def response(target: str = "203.0.113.5", timeout: int | None = 600, offence: int = 1,
             command: str = "firewall-drop", skipped: str | None = None, **alert) -> Response:
    return Response(command, target, timeout, make_alert(srcip=target, **alert), offence,
                    skipped)


def log_lines(stage: RespondStage) -> list[str]:
    path = stage.responder.config.paths.responses_log
    return path.read_text().splitlines() if path.exists() else []


def apply(stage: RespondStage, request: Response | Lift) -> Applied:
    """One request through the stage's responder."""
    [applied] = stage.responder.apply([request])
    return applied


async def apply_async(stage: RespondStage, request: Response | Lift) -> Applied:
    [applied] = await stage.responder.apply_async([request])
    return applied


def blocks(stage: RespondStage) -> list[Block]:
    return stage.responder.store.active_blocks()


def test_a_new_block_is_recorded_before_the_action_runs(setup):
    stage, fake, _, clock = setup()
    applied = apply(stage, response(alert_id="1000.7"))
    assert applied.verb == "add"
    assert fake.calls == [("add", "203.0.113.5", 600)]
    # the row was already active when the backend was asked
    assert fake.rows_seen[0].state == "active"
    [block] = blocks(stage)
    assert (block.target, block.kind, block.rule_id, block.alert_id, block.expires_at,
            block.offence) == ("203.0.113.5", "ip", 5712, "1000.7", 1600.0, 1)
    [line] = log_lines(stage)
    assert " firewall-drop add 203.0.113.5 rule=5712 alert=1000.7 timeout=600 offence=1 " \
           "reason=-" in line


def test_a_repeat_while_blocked_extends_and_counts_as_an_offence(setup):
    stage, fake, _, clock = setup()
    apply(stage, response())
    clock.now += 100
    applied = apply(stage, response(timeout=1800, offence=2))
    assert applied.verb == "extend"
    [block] = blocks(stage)
    assert (block.expires_at, block.offence) == (1100.0 + 1800, 2)
    # the backend is refreshed with the remaining time (ipset keeps kernel timeouts)
    assert fake.calls == [("add", "203.0.113.5", 600), ("add", "203.0.113.5", 1800)]
    assert "firewall-drop extend 203.0.113.5" in log_lines(stage)[1]
    assert "offence=2" in log_lines(stage)[1]


def test_an_extension_never_shortens_a_block(setup):
    stage, fake, _, clock = setup()
    apply(stage, response(timeout=3600))
    clock.now += 10
    assert apply(stage, response(timeout=600, offence=2)).verb == "extend"
    assert blocks(stage)[0].expires_at == 1000.0 + 3600
    assert len(fake.calls) == 1  # nothing changed, nothing asked of the backend


def test_a_permanent_response_makes_the_block_permanent(setup):
    stage, _, _, _ = setup()
    apply(stage, response(timeout=600))
    apply(stage, response(timeout=None, offence=2))
    assert blocks(stage)[0].expires_at is None


def test_a_failed_add_lifts_the_row_and_is_logged_loudly(setup, caplog):
    stage, fake, _, _ = setup()
    fake.fail = ActionError("kernel said no")
    applied = apply(stage, response())
    assert applied.verb == "fail" and applied.reason == "kernel said no"
    assert blocks(stage) == []
    assert stage.responder.active_count == 0
    assert "firewall-drop fail 203.0.113.5" in log_lines(stage)[0]
    assert 'reason="kernel said no"' in log_lines(stage)[0]
    assert stage.responder.counters[("firewall-drop", "fail")] == 1
    assert any(r.levelname == "ERROR" for r in caplog.records)
    # the next alert tries again
    fake.fail = None
    assert apply(stage, response()).verb == "add"


def test_a_batch_commits_all_its_rows_before_any_action_runs(setup):
    stage, fake, _, _ = setup()
    committed: list[list[str]] = []

    def add(target, timeout, alert):
        reader = Store(stage.responder.config.paths.database)  # sees committed rows only
        committed.append([b.target for b in reader.active_blocks()])
        reader.close()
        if target == "203.0.113.3":
            raise ActionError("no room")
        fake.entries[target] = timeout

    fake.add = add
    batch = [response("203.0.113.1"), response("203.0.113.2"), response("203.0.113.1", offence=2),
             response("203.0.113.3"), response("127.0.0.1", skipped="loopback")]
    assert [a.verb for a in stage.responder.apply(batch)] == [
        "add", "add", "extend", "fail", "skip"]
    assert committed == [["203.0.113.1", "203.0.113.2", "203.0.113.3"]] * 3
    assert [b.target for b in blocks(stage)] == ["203.0.113.1", "203.0.113.2"]
    assert blocks(stage)[0].offence == 2
    assert stage.responder.active_count == 2


def test_a_crashing_action_does_not_take_the_responder_down(setup):
    stage, fake, _, _ = setup()
    fake.fail = TypeError("bug")
    applied = apply(stage, response())
    assert applied.verb == "fail" and "TypeError: bug" in applied.reason
    assert blocks(stage) == []


def test_the_global_cap_skips_new_blocks_but_still_extends(setup, caplog):
    stage, fake, _, clock = setup("""
        [global]
        max_blocks = 2
    """)
    verbs = [apply(stage, response(f"203.0.113.{i}")).verb for i in (1, 2, 3)]
    assert verbs == ["add", "add", "skip"]
    assert "cap of 2 active blocks reached" in log_lines(stage)[2]
    assert "max_blocks (2) active blocks reached" in caplog.text
    assert apply(stage, response("203.0.113.1", offence=2)).verb == "extend"
    # a lifted block makes room
    stage.unblock("203.0.113.1")
    assert apply(stage, response("203.0.113.3")).verb == "add"


def test_skipped_responses_are_logged_with_their_reason(setup):
    stage, fake, _, _ = setup()
    applied = apply(stage, response("127.0.0.1", skipped="loopback"))
    assert applied.verb == "skip"
    assert fake.calls == []
    assert "firewall-drop skip 127.0.0.1 rule=5712" in log_lines(stage)[0]
    assert log_lines(stage)[0].endswith("reason=loopback")


def test_attacker_text_cannot_forge_log_lines(setup):
    stage, _, _, _ = setup()
    apply(stage, response("1.2.3.4\n2026 firewall-drop delete 5.6.7.8",
                             skipped="not an IP address"))
    [line] = log_lines(stage)
    assert '"1.2.3.4\\n2026 firewall-drop delete 5.6.7.8"' in line


def test_the_log_is_reopened_after_rotation(setup):
    stage, _, _, _ = setup()
    path = stage.responder.config.paths.responses_log
    apply(stage, response("203.0.113.1"))
    path.rename(path.with_suffix(".log.1"))
    apply(stage, response("203.0.113.2"))  # still written to the rotated file
    stage.responder.reopen_log()
    apply(stage, response("203.0.113.3"))
    assert "203.0.113.2" in path.with_suffix(".log.1").read_text()
    assert ["203.0.113.3" in line for line in log_lines(stage)] == [True]


def test_lift_deletes_then_marks_the_row_lifted(setup):
    stage, fake, _, clock = setup()
    apply(stage, response())
    [block] = blocks(stage)
    applied = apply(stage, Lift(block))
    assert applied.verb == "delete"
    assert fake.calls[-1] == ("delete", "203.0.113.5")
    assert blocks(stage) == []
    assert "firewall-drop delete 203.0.113.5" in log_lines(stage)[-1]
    assert apply(stage, Lift(block)).verb == "skip"  # already lifted


def test_a_failed_delete_keeps_the_block_and_retries(setup):
    stage, fake, _, clock = setup()
    apply(stage, response())
    [block] = blocks(stage)
    fake.fail = ActionError("busy")
    clock.now = 2_000.0
    assert apply(stage, Lift(block)).verb == "fail"
    [kept] = blocks(stage)
    assert kept.expires_at == 2_000.0 + LIFT_RETRY
    assert f"retrying in {LIFT_RETRY} s" in log_lines(stage)[-1]


def test_manual_block_unblock_and_list(setup):
    stage, fake, _, _ = setup()
    applied = stage.block("::ffff:203.0.113.9", timeout=120)
    assert (applied.verb, applied.command, applied.target) == ("add", "firewall-drop",
                                                               "203.0.113.9")
    assert stage.block("203.0.113.10").block.expires_at is None  # permanent
    assert [b.target for b in blocks(stage)] == ["203.0.113.9", "203.0.113.10"]
    assert blocks(stage)[0].alert_id is None
    [lifted] = stage.unblock("::ffff:203.0.113.10")
    assert lifted.verb == "delete"
    assert stage.unblock("203.0.113.77") == []
    assert "203.0.113.9" in fake.entries and "203.0.113.10" not in fake.entries


@pytest.mark.parametrize("target, command, timeout, reason", [
    ("127.0.0.1", None, 60, "loopback"),
    ("203.0.113.9", "no-such", 60, "no such command"),
    ("203.0.113.9", "firewall-drop", 0, "timeout must be positive"),
    ("evil.example", "firewall-drop", 60, "hostname, not an IP address"),
])
def test_manual_blocks_are_validated(setup, target, command, timeout, reason):
    stage, fake, _, _ = setup()
    applied = stage.block(target, command, timeout)
    assert (applied.verb, applied.reason) == ("skip", reason)
    assert fake.calls == []


def test_manual_block_of_a_user_picks_a_user_command(setup):
    stage, _, _, _ = setup()
    assert stage.block("mallory", timeout=60, kind="user").command == "lock-user"


def test_manual_block_takes_the_kind_of_target_it_is_given(setup):
    """A user name given as an address is not guessed into an account lock, and a name
    that looks like an address ("10.0.0.1" is a valid user name) is locked as a user."""
    stage, fake, _, _ = setup()
    applied = stage.block("mallory", timeout=60)
    assert (applied.verb, applied.reason) == (
        "skip", "hostname, not an IP address (for a user name: --user NAME)")
    refused = stage.block("203.0.113.9", "lock-user", 60)
    assert refused.reason == "command 'lock-user' acts on user names: give the name with --user"
    assert stage.block("10.0.0.1", timeout=60, kind="user").command == "lock-user"
    assert fake.calls == []


def test_dry_run_decides_and_logs_but_never_acts(setup, caplog):
    stage, fake, _, _ = setup(dry_run=True)
    caplog.set_level("INFO")
    assert apply(stage, response()).verb == "add"
    assert apply(stage, response(offence=2, timeout=1800)).verb == "extend"
    assert apply(stage, Lift(blocks(stage)[0])).verb == "delete"
    assert fake.calls == []
    assert not stage.responder.config.paths.responses_log.exists()
    assert "firewall-drop add 203.0.113.5" in caplog.text


def test_policy_and_responder_together(setup):
    """Repeated alerts for one attacker: one block, extended with escalating timeouts."""
    stage, fake, _, clock = setup()
    policy = Policy(stage.responder.config, stage.responder.store)
    verbs = []
    for step in range(3):
        clock.now = 1_000.0 + step
        for decided in policy.decide(make_alert(time=clock.now, srcip="203.0.113.5")):
            verbs.append(apply(stage, decided).verb)
    assert verbs == ["add", "extend", "extend"]
    [block] = blocks(stage)
    assert (block.offence, block.expires_at) == (3, 1_002.0 + 3600)
    assert len(fake.entries) == 1


def test_stateless_detached_responses_run_every_time(setup):
    stage, _, notify, _ = setup()
    for _ in range(2):
        assert apply(stage, response(command="notify", timeout=None)).verb == "add"
    assert len(notify.calls) == 2
    assert blocks(stage) == []


def test_async_runs_detached_actions_in_a_worker_thread(setup):
    stage, fake, notify, _ = setup()

    async def main():
        loop_thread = threading.get_ident()
        native = await apply_async(stage, response())
        detached = await apply_async(stage, response(command="notify", timeout=60))
        lifted = await stage.unblock_async("203.0.113.5", "notify")
        return loop_thread, native, detached, lifted

    loop_thread, native, detached, [lifted] = asyncio.run(main())
    assert (native.verb, detached.verb, lifted.verb) == ("add", "add", "delete")
    assert fake.threads == {loop_thread}
    assert notify.threads and loop_thread not in notify.threads
    assert notify.calls == [("add", "203.0.113.5", 60), ("delete", "203.0.113.5")]


def test_a_slow_detached_action_does_not_block_the_loop(setup):
    stage, _, notify, _ = setup()
    release = threading.Event()
    original_add = notify.add

    def slow_add(target, timeout, alert):
        release.wait()
        original_add(target, timeout, alert)

    notify.add = slow_add

    async def main():
        pending = asyncio.create_task(apply_async(stage, response(command="notify")))
        # the loop keeps working while the action waits: it handles another response
        other = await apply_async(stage, response("203.0.113.6"))
        release.set()
        return other, await pending

    other, slow = asyncio.run(main())
    assert (other.verb, slow.verb) == ("add", "add")


def test_with_a_real_hosts_deny_file(tmp_path):
    """The responder with the real hosts-deny action on a temp file."""
    config = make_config(tmp_path, BINDINGS)
    hosts_deny = tmp_path / "hosts.deny"
    hosts_deny.write_text("# keep me\nALL: 203.0.113.55\n")
    stage = build_respond_stage(config, Store(config.paths.database))
    apply(stage, response("203.0.113.5"))
    assert "ALL: 203.0.113.5\n" in hosts_deny.read_text()
    stage.unblock("203.0.113.5")
    lines = hosts_deny.read_text().splitlines()
    assert lines[:2] == ["# keep me", "ALL: 203.0.113.55"]
    assert "ALL: 203.0.113.5" not in lines


def test_reconfigure_applies_a_new_white_list_and_rebuilds_changed_actions(setup, tmp_path):
    stage, fake, notify, _ = setup()
    apply(stage, response("203.0.113.5"))
    reloaded = make_config(tmp_path, BINDINGS.replace('url = "http://192.0.2.1/hook"',
                                                      'url = "http://192.0.2.2/hook"'), """
        [global]
        white_list = ["203.0.113.0/24"]
    """)
    stage.reconfigure(reloaded)
    assert stage.block("203.0.113.9").reason == "white-listed"
    assert stage.responder.action("firewall-drop") is fake  # unchanged command, same backend
    assert stage.responder.action("notify") is not notify  # changed: built anew
    assert [b.target for b in blocks(stage)] == ["203.0.113.5"]


def test_while_the_table_cannot_be_written_blocking_goes_on_and_lifts_wait(tmp_path):
    """Another process keeps the database locked (as a full disk does, writes fail): a new
    block is applied and kept in memory, an expired one stays in place; both are recorded
    once the table can be written again."""
    import sqlite3

    config = make_config(tmp_path, BINDINGS)
    store = Store(config.paths.database, timeout=0.05)
    fake, clock = FakeAction(), Clock()
    stage = build_respond_stage(config, store, clock=clock, actions={"firewall-drop": fake})
    apply(stage, response("203.0.113.1", timeout=60))
    clock.now += 100                                  # its time has come
    holder = sqlite3.connect(config.paths.database, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        lifted = stage.responder.lift_expired()
        assert [(a.verb, a.target) for a in lifted] == [("fail", "203.0.113.1")]
        assert "not lifted: the blocks table cannot be written" in lifted[0].reason
        added = apply(stage, response("203.0.113.2"))
        assert added.verb == "add" and "not recorded yet" in added.reason
        assert set(fake.entries) == {"203.0.113.1", "203.0.113.2"}
        assert stage.responder.unrecorded == 1
        assert "database is locked" in stage.responder.table.error
    finally:
        holder.close()
    stage.responder.record_unrecorded()
    assert {b.target for b in blocks(stage)} == {"203.0.113.1", "203.0.113.2"}
    assert stage.responder.table.error is None and stage.responder.unrecorded == 0
    assert [a.target for a in stage.responder.lift_expired()] == ["203.0.113.1"]
    assert set(fake.entries) == {"203.0.113.2"}
