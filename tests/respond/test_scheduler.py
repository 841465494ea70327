"""Scheduler: lifting on time (controllable clock), waking early, purging, reconciliation."""

from __future__ import annotations

import asyncio

import pytest

from arguard.respond.actions import ActionError
from arguard.respond.responder import HISTORY
from arguard.respond.scheduler import MAX_SLEEP
from arguard.respond.stage import RespondStage, build_respond_stage
from arguard.store import Store
from tests.respond.test_policy import make_config
from tests.respond.test_responder import BINDINGS, Clock, FakeAction, apply, blocks, response


@pytest.fixture
def setup(tmp_path):
    def build(global_: str = "", dry_run: bool = False, fake: FakeAction | None = None,
              bindings: str = BINDINGS):
        config = make_config(tmp_path, bindings, global_)
        store = Store(config.paths.database)
        fake = fake or FakeAction()
        notify = FakeAction()
        clock = Clock()
        stage = build_respond_stage(config, store, dry_run=dry_run, clock=clock, actions={
            "firewall-drop": fake, "notify": notify, "deny-dst": FakeAction(),
            "lock-user": FakeAction()})
        return stage.scheduler, stage, fake, notify, clock
    return build


def active(stage: RespondStage) -> list[str]:
    return [b.target for b in blocks(stage)]


def test_lift_expired_lifts_exactly_the_expired_blocks(setup):
    scheduler, stage, fake, _, clock = setup()
    apply(stage, response("203.0.113.1", timeout=60))
    apply(stage, response("203.0.113.2", timeout=600))
    apply(stage, response("203.0.113.3", timeout=None))
    clock.now += 59.9
    assert stage.responder.lift_expired() == []
    clock.now += 0.1
    [lifted] = stage.responder.lift_expired()
    assert (lifted.verb, lifted.target) == ("delete", "203.0.113.1")
    assert active(stage) == ["203.0.113.2", "203.0.113.3"]
    assert "203.0.113.1" not in fake.entries
    clock.now += 10**9
    stage.responder.lift_expired()
    assert active(stage) == ["203.0.113.3"]  # permanent until unblocked


def test_the_task_sleeps_until_the_next_expiry(setup):
    scheduler, stage, _, _, clock = setup()
    assert scheduler.next_delay() == MAX_SLEEP
    apply(stage, response("203.0.113.1", timeout=600))
    assert scheduler.next_delay() == MAX_SLEEP
    apply(stage, response("203.0.113.2", timeout=30))
    assert scheduler.next_delay() == 30
    clock.now += 45
    assert scheduler.next_delay() == 0


def test_a_failed_delete_is_retried_later_not_in_a_loop(setup):
    scheduler, stage, fake, _, clock = setup()
    apply(stage, response("203.0.113.1", timeout=60))
    clock.now += 60
    fake.fail = RuntimeError("down")
    [failed] = stage.responder.lift_expired()
    assert failed.verb == "fail"
    assert scheduler.next_delay() == 60
    fake.fail = None
    clock.now += 60
    assert [a.verb for a in stage.responder.lift_expired()] == ["delete"]


def test_the_task_lifts_expired_blocks_and_wakes_early_for_a_sooner_one(setup, monkeypatch):
    """The task sleeps for the far block; a sooner block wakes it. MAX_SLEEP is made huge,
    so without the wake-up the task would never look again and the test would hang (the
    outer wait_for only turns a hang into a failure)."""
    monkeypatch.setattr("arguard.respond.scheduler.MAX_SLEEP", 10**6)
    scheduler, stage, _, _, clock = setup()
    apply(stage, response("203.0.113.1", timeout=10_000))

    async def main():
        task = asyncio.create_task(scheduler.run())
        while scheduler._planned is None:  # the task is asleep, planning for 203.0.113.1
            await asyncio.sleep(0)
        apply(stage, response("203.0.113.2", timeout=5))
        clock.now += 5
        while "203.0.113.2" in active(stage):
            await asyncio.sleep(0.01)
        task.cancel()

    asyncio.run(asyncio.wait_for(main(), 30))
    assert active(stage) == ["203.0.113.1"]


def test_the_task_lifts_detached_blocks_off_the_loop(setup):
    scheduler, stage, _, notify, clock = setup()
    apply(stage, response("203.0.113.1", timeout=5, command="notify"))
    clock.now += 5

    async def main():
        task = asyncio.create_task(scheduler.run())
        while active(stage):
            await asyncio.sleep(0.01)
        task.cancel()

    asyncio.run(asyncio.wait_for(main(), 30))
    assert notify.calls[-1] == ("delete", "203.0.113.1")


def test_purge_forgets_quiet_offenders_and_old_history(setup):
    scheduler, stage, _, _, clock = setup("""
        [global]
        offender_forget = 3600
    """)
    store = stage.responder.store
    store.bump_offender("firewall-drop", "203.0.113.1", clock.now, 3600)
    apply(stage, response("203.0.113.1", timeout=60))
    stage.unblock("203.0.113.1")
    scheduler.purge()
    assert store.offender("firewall-drop", "203.0.113.1") is not None
    clock.now += HISTORY + 1  # also more than PURGE_INTERVAL since the last purge
    scheduler.purge()
    assert store.offender("firewall-drop", "203.0.113.1") is None
    assert store.purge_lifted_blocks(clock.now) == 0  # already gone


def test_reconcile_restores_lost_blocks_with_their_remaining_time(setup):
    scheduler, stage, fake, _, clock = setup()
    apply(stage, response("203.0.113.1", timeout=600))
    apply(stage, response("203.0.113.2", timeout=None))
    fake.entries.clear()  # a reboot: the kernel forgot everything
    fake.calls.clear()
    clock.now += 100.5
    result = stage.responder.reconcile()
    assert sorted(fake.calls) == [("add", "203.0.113.1", 500), ("add", "203.0.113.2", None)]
    assert [a.target for a in result.restored] == ["203.0.113.1", "203.0.113.2"]
    assert "reconcile: restored" in stage.responder.config.paths.responses_log.read_text()


def test_reconcile_lifts_expired_blocks(setup):
    scheduler, stage, fake, _, clock = setup()
    apply(stage, response("203.0.113.1", timeout=600))
    clock.now += 601
    result = stage.responder.reconcile()
    assert [a.target for a in result.lifted] == ["203.0.113.1"]
    assert fake.entries == {} and active(stage) == []


def test_reconcile_removes_entries_the_table_does_not_know(setup):
    scheduler, stage, fake, _, _ = setup()
    apply(stage, response("203.0.113.1", timeout=600))
    fake.entries["203.0.113.99"] = None  # left by a lost database
    result = stage.responder.reconcile()
    assert [a.target for a in result.removed] == ["203.0.113.99"]
    assert set(fake.entries) == {"203.0.113.1"}
    assert result.restored == []


def test_commands_sharing_a_backend_keep_each_others_entries(tmp_path):
    config = make_config(tmp_path, BINDINGS)
    shared = FakeAction()
    stage = build_respond_stage(config, Store(config.paths.database), clock=Clock(), actions={
        "firewall-drop": shared, "deny-dst": shared, "notify": FakeAction(),
        "lock-user": FakeAction()})
    apply(stage, response("203.0.113.1"))
    apply(stage, response("203.0.113.2", command="deny-dst"))
    result = stage.responder.reconcile()
    assert result.removed == [] and result.restored == []
    assert set(shared.entries) == {"203.0.113.1", "203.0.113.2"}


def test_reconcile_uses_a_batch_add_when_the_backend_has_one(setup):
    class Batching(FakeAction):
        def add_many(self, items):
            self.calls.append(("add_many", sorted(items)))
            for target, timeout in items:
                self.entries[target] = timeout

    scheduler, stage, fake, _, _ = setup(fake=Batching())
    for i in (1, 2, 3):
        apply(stage, response(f"203.0.113.{i}", timeout=600))
    fake.entries.clear()
    fake.calls.clear()
    assert len(stage.responder.reconcile().restored) == 3
    assert fake.calls == [("add_many", [(f"203.0.113.{i}", 600) for i in (1, 2, 3)])]


def test_reconcile_checks_one_by_one_when_the_backend_cannot_be_listed(setup):
    class Unlistable(FakeAction):
        def list_targets(self):
            return None

    scheduler, stage, fake, _, _ = setup(fake=Unlistable())
    apply(stage, response("203.0.113.1", timeout=600))
    apply(stage, response("203.0.113.2", timeout=600))
    del fake.entries["203.0.113.2"]
    assert [a.target for a in stage.responder.reconcile().restored] == ["203.0.113.2"]


def test_reconcile_leaves_detached_actions_alone(setup):
    scheduler, stage, _, notify, _ = setup()
    apply(stage, response("203.0.113.1", timeout=600, command="notify"))
    notify.calls.clear()
    stage.responder.reconcile()
    assert notify.calls == []


def test_a_failed_restore_is_reported_and_the_block_kept(setup):
    scheduler, stage, fake, _, _ = setup()
    apply(stage, response("203.0.113.1", timeout=600))
    fake.entries.clear()
    fake.fail = ActionError("no set")
    result = stage.responder.reconcile()
    assert [a.verb for a in result.failed] == ["fail"]
    assert active(stage) == ["203.0.113.1"]


def test_blocks_of_a_command_no_longer_configured(setup, tmp_path, caplog):
    scheduler, stage, fake, _, clock = setup()
    apply(stage, response("203.0.113.1", timeout=600, command="notify"))
    config = make_config(tmp_path, BINDINGS.split("[[active_response]]")[0].replace(
        'name = "notify"', 'name = "other"'))
    later = build_respond_stage(config, stage.responder.store, clock=clock,
                                actions={"firewall-drop": fake})
    later.responder.reconcile()
    assert "no longer configured" in caplog.text
    clock.now += 600
    [lifted] = later.responder.lift_expired()
    assert lifted.verb == "fail" and "no longer configured" in lifted.reason
    assert active(later) == []


def test_dry_run_reconcile_never_touches_a_backend(setup):
    scheduler, stage, fake, _, clock = setup(dry_run=True)
    apply(stage, response("203.0.113.1", timeout=600))
    fake.entries["203.0.113.99"] = None
    clock.now += 601
    result = stage.responder.reconcile()
    assert [a.target for a in result.lifted] == ["203.0.113.1"]
    assert fake.calls == [] and fake.entries == {"203.0.113.99": None}


@pytest.mark.parametrize("unblock, left", [("false", 2), ("true", 0)])
def test_unblock_on_exit(setup, unblock, left):
    scheduler, stage, fake, _, _ = setup(f"""
        [global]
        unblock_on_exit = {unblock}
    """)
    apply(stage, response("203.0.113.1", timeout=600))
    apply(stage, response("203.0.113.2", timeout=None))
    stage.responder.on_exit()
    assert len(active(stage)) == len(fake.entries) == left
