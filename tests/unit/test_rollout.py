"""The rollout state machine, driven tick by tick with explicit clocks."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phaseshift import rollout
from phaseshift.api import (
    MAX_CANARY_WEIGHT,
    App,
    Colour,
    EnvVar,
    Release,
    ResourceList,
    Resources,
    RolloutState,
    RolloutStatus,
    RolloutStrategy,
    ScalePlan,
    ScalePlanStatus,
    Transition,
    parse_plan,
)
from phaseshift.rollout import (
    CanaryReading,
    EventSpec,
    Observed,
    Progress,
    RolloutStep,
    Tracks,
)

T0 = datetime(2025, 1, 1, 12, tzinfo=UTC)
OLD = App(image="registry.example/shop:1.0")
NEW = App(image="registry.example/shop:2.0")
THIRD = App(image="registry.example/shop:3.0")
DEADLINE = 600  # the default progressDeadlineSeconds
GOOD = CanaryReading(error_rate=0.001, p95_latency_seconds=0.1)
# The canary of most tests: +20% per passed check, checks every 60s.
CANARY = {
    "weightPercent": 20,
    "intervalSeconds": 60,
    "iterations": 4,
    "threshold": 2,
    "maxErrorRate": 0.01,
    "maxP95LatencySeconds": 0.5,
}


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def make_plan(app: App = NEW, **rollout_spec: Any) -> ScalePlan:
    return parse_plan(
        {
            "metadata": {"name": "shop", "namespace": "web"},
            "spec": {"app": app.to_json(), "rollout": rollout_spec},
        }
    )


def running(phase: int, app: App = OLD, live_colour: Colour | None = None) -> ScalePlanStatus:
    """A steady plan whose released (and last acted on) app is `app`."""
    return ScalePlanStatus(
        phase=phase,
        target_phase=phase,
        release=rollout.release_of(app),
        app_revision=rollout.revision_of(app),
        live_colour=live_colour,
    )


def reasons(events: Sequence[EventSpec]) -> list[str]:
    return [reason for _, reason, _ in events]


@dataclass
class Machine:
    """The rollout as the reconcile shell drives it: each Progress is written back into
    the status, and the Events it names are collected."""

    plan: ScalePlan
    status: ScalePlanStatus
    events: list[EventSpec] = field(default_factory=list)
    # The status as written before the Service was switched, at the last switch.
    switch_recorded: ScalePlanStatus | None = None

    @classmethod
    def started(
        cls, phase: int, *, live_colour: Colour | None = None, now: float = 0, **spec: Any
    ) -> Machine:
        machine = cls(make_plan(NEW, **spec), running(phase, OLD, live_colour))
        machine.start(at(now))
        return machine

    @property
    def record(self) -> RolloutStatus:
        assert self.status.rollout is not None
        return self.status.rollout

    @property
    def release(self) -> Release:
        assert self.status.release is not None
        return self.status.release

    def take(self, progress: Progress) -> Progress:
        self.status = self.status.model_copy(
            update={
                "rollout": progress.rollout,
                "release": progress.release,
                "live_colour": progress.live_colour,
            }
        )
        self.events.extend(progress.events)
        if rollout.switching(self.status):
            # As the shell does: a switch is recorded before it is applied.
            self.switch_recorded = self.status.model_copy(deep=True)
        return progress

    def taken(self, progress: Progress) -> ScalePlanStatus:
        """`take`, in the shape `rollout.drive` calls it: the status after."""
        self.take(progress)
        return self.status

    def start(self, now: datetime) -> Progress:
        assert rollout.pending(self.plan, self.status)
        progress = self.take(rollout.start(self.plan, self.status, now))
        self.status.app_revision = rollout.revision_of(self.plan.spec.app)
        return progress

    def tick(
        self, seconds: float, *not_ready: str, reading: CanaryReading | None = None
    ) -> Progress:
        observed = Observed(not_ready=not_ready, reading=reading)
        return rollout.drive(self.plan, self.status, observed, at(seconds), self.taken)

    def change_app(self, app: App) -> None:
        spec = self.plan.spec.model_copy(update={"app": app})
        self.plan = self.plan.model_copy(update={"spec": spec})

    def tracks(self) -> Tracks:
        return rollout.tracks(self.plan, self.status)

    def pending(self) -> bool:
        return rollout.pending(self.plan, self.status)

    def busy(self) -> bool:
        return rollout.busy(self.status)


# revisions and releases -------------------------------------------------------------------


def test_equal_apps_have_the_same_short_revision() -> None:
    parsed = make_plan(App(image="registry.example/shop:1.0", port=8080)).spec.app
    assert rollout.revision_of(OLD) == rollout.revision_of(parsed)
    assert rollout.revision_of(OLD) == rollout.revision_of(OLD.model_copy(deep=True))
    revision = rollout.revision_of(OLD)
    assert len(revision) == 10
    assert all(c in "0123456789abcdef" for c in revision)


@pytest.mark.parametrize(
    "changed",
    [
        App(image="registry.example/shop:1.1"),
        App(image=OLD.image, env=[EnvVar(name="MODE", value="fast")]),
        App(image=OLD.image, resources=Resources(requests=ResourceList(cpu="250m"))),
        App(image=OLD.image, resources=Resources(limits=ResourceList(memory="512Mi"))),
        App(image=OLD.image, port=9090),
    ],
    ids=["image", "env", "requests", "limits", "port"],
)
def test_any_change_to_the_pods_changes_the_revision(changed: App) -> None:
    assert rollout.revision_of(changed) != rollout.revision_of(OLD)


def test_env_values_are_part_of_the_revision() -> None:
    one = App(image=OLD.image, env=[EnvVar(name="MODE", value="fast")])
    other = App(image=OLD.image, env=[EnvVar(name="MODE", value="safe")])
    assert rollout.revision_of(one) != rollout.revision_of(other)


def test_a_release_is_a_copy_of_the_app_with_its_revision() -> None:
    app = App(image=OLD.image, env=[EnvVar(name="MODE", value="fast")])
    release = rollout.release_of(app)
    assert release.revision == rollout.revision_of(app)
    assert release.app == app
    app.env.append(EnvVar(name="LATER", value="x"))
    assert release.app.env == [EnvVar(name="MODE", value="fast")]


# pending and busy -----------------------------------------------------------------------


def test_nothing_is_pending_while_spec_app_is_the_release() -> None:
    assert not rollout.pending(make_plan(OLD), running(1, OLD))
    # Even when the last acted-on revision was another one (spec went back to the release).
    status = running(1, OLD).model_copy(update={"app_revision": rollout.revision_of(NEW)})
    assert not rollout.pending(make_plan(OLD), status)


def test_a_new_spec_app_is_pending() -> None:
    assert rollout.pending(make_plan(NEW), running(1, OLD))


def test_a_rolled_back_revision_waits_for_the_next_change_of_spec_app() -> None:
    machine = Machine.started(1)
    machine.tick(DEADLINE + 1, "shop-app")
    assert machine.record.state == RolloutState.ROLLED_BACK
    assert not machine.pending()  # app_revision is the rolled-back revision
    machine.change_app(THIRD)
    assert machine.pending()
    # Back to the release: nothing to do; then the rolled-back one is tried again.
    machine.change_app(OLD)
    assert not machine.pending()
    machine.status.app_revision = rollout.revision_of(OLD)
    machine.change_app(NEW)
    assert machine.pending()


def test_a_waiting_rollout_of_the_same_revision_is_pending() -> None:
    plan = make_plan(NEW)
    status = running(1, OLD).model_copy(
        update={
            "target_phase": 2,
            "transition": Transition(from_=1, to=2, started_at=T0),
        }
    )
    status.rollout = rollout.wait_for_transition(plan, status, T0)
    status.app_revision = rollout.revision_of(NEW)
    assert rollout.pending(plan, status)
    # ... but not once the release caught up with spec.app.
    status.release = rollout.release_of(NEW)
    assert not rollout.pending(plan, status)


def test_only_a_progressing_rollout_is_busy() -> None:
    assert not rollout.busy(running(1))
    machine = Machine.started(1)
    assert machine.busy()
    for state in (RolloutState.WAITING, RolloutState.SUCCEEDED, RolloutState.ROLLED_BACK):
        status = machine.status.model_copy(
            update={"rollout": machine.record.model_copy(update={"state": state})}
        )
        assert not rollout.busy(status)


# start and wait_for_transition ------------------------------------------------------------


@pytest.mark.parametrize(
    ("phase", "strategy"),
    [
        (1, RolloutStrategy.RECREATE),
        (2, RolloutStrategy.BLUE_GREEN),
        (3, RolloutStrategy.ROLLING),
        (4, RolloutStrategy.CANARY),
    ],
)
def test_start_uses_the_strategy_of_the_current_phase(
    phase: int, strategy: RolloutStrategy
) -> None:
    plan = make_plan(NEW, canary=CANARY)
    status = running(phase, OLD, "green")
    progress = rollout.start(plan, status, at(5))
    record = progress.rollout
    assert record is not None
    assert record.strategy == strategy
    assert record.state == RolloutState.PROGRESSING
    assert record.step == RolloutStep.DEPLOY
    assert record.revision == rollout.revision_of(NEW)
    assert record.from_revision == rollout.revision_of(OLD)
    assert record.image == NEW.image
    assert record.started_at == record.step_started_at == at(5)
    assert record.finished_at is None
    assert record.message
    if strategy == RolloutStrategy.CANARY:
        assert record.canary is not None
        assert record.canary.weight_percent == CANARY["weightPercent"]
        assert record.canary.iteration == record.canary.failed_checks == 0
    else:
        assert record.canary is None
    # Starting changes nothing that runs.
    assert progress.release == status.release
    assert progress.live_colour == "green"
    assert reasons(progress.events) == ["RolloutStarted"]
    assert progress.events[0][0] == "Normal"
    assert str(strategy) in progress.events[0][2]
    assert NEW.image in progress.events[0][2]


def test_start_does_not_change_its_input() -> None:
    status = running(4)
    before = status.model_copy(deep=True)
    rollout.start(make_plan(NEW), status, T0)
    assert status == before


@pytest.mark.parametrize(
    ("move", "strategy"),
    [
        ((1, 2), RolloutStrategy.BLUE_GREEN),
        ((2, 3), RolloutStrategy.ROLLING),
        ((3, 4), RolloutStrategy.CANARY),
        ((4, 3), RolloutStrategy.ROLLING),
        ((2, 1), RolloutStrategy.RECREATE),
    ],
)
def test_a_rollout_during_a_transition_waits_with_the_target_phases_strategy(
    move: tuple[int, int], strategy: RolloutStrategy
) -> None:
    plan = make_plan(NEW)
    status = running(move[0]).model_copy(
        update={
            "target_phase": move[1],
            "transition": Transition(from_=move[0], to=move[1], started_at=T0),
        }
    )
    waiting = rollout.wait_for_transition(plan, status, at(3))
    assert waiting.state == RolloutState.WAITING
    assert waiting.strategy == strategy
    assert waiting.revision == rollout.revision_of(NEW)
    assert waiting.from_revision == rollout.revision_of(OLD)
    assert waiting.image == NEW.image
    assert waiting.started_at == at(3)
    assert f"{move[0]} -> {move[1]}" in waiting.message
    assert not rollout.busy(status.model_copy(update={"rollout": waiting}))


def test_waiting_for_a_transition_is_idempotent_for_the_same_revision() -> None:
    plan = make_plan(NEW)
    status = running(1).model_copy(
        update={"target_phase": 2, "transition": Transition(from_=1, to=2, started_at=T0)}
    )
    first = rollout.wait_for_transition(plan, status, at(1))
    status.rollout = first
    again = rollout.wait_for_transition(plan, status, at(100))
    assert again == first
    assert again.started_at == at(1)
    # A newer spec.app replaces the record.
    newer = rollout.wait_for_transition(make_plan(THIRD), status, at(200))
    assert newer.revision == rollout.revision_of(THIRD)
    assert newer.started_at == at(200)


def test_after_the_transition_the_waiting_rollout_starts_with_the_new_phases_strategy() -> None:
    plan = make_plan(NEW)
    status = running(3).model_copy(
        update={"target_phase": 4, "transition": Transition(from_=3, to=4, started_at=T0)}
    )
    status.rollout = rollout.wait_for_transition(plan, status, T0)
    status.app_revision = rollout.revision_of(NEW)
    # The transition ends: phase 4 now.
    status = status.model_copy(update={"phase": 4, "transition": None})
    assert rollout.pending(plan, status)
    assert not rollout.busy(status)
    started = rollout.start(plan, status, at(50)).rollout
    assert started is not None
    assert started.strategy == RolloutStrategy.CANARY
    assert started.state == RolloutState.PROGRESSING


# What a look records before anything is applied, and refusals ------------------------------


def transitioning(frm: int, to: int, app: App = OLD) -> ScalePlanStatus:
    return running(frm, app).model_copy(
        update={"target_phase": to, "transition": Transition(from_=frm, to=to, started_at=T0)}
    )


def test_the_opening_records_spec_app_as_the_release_of_a_plan_from_before_releases() -> None:
    status = running(3).model_copy(update={"release": None, "app_revision": None})
    progress = rollout.opening(make_plan(OLD), status, at(1))
    assert progress.release == rollout.release_of(OLD)
    assert progress.rollout is None and progress.events == []


@pytest.mark.parametrize(
    ("phase", "colour", "expected"),
    [(2, None, "blue"), (2, "green", "green"), (3, "green", None), (1, None, None)],
)
def test_the_opening_keeps_a_live_colour_in_phase_2_only(
    phase: int, colour: Colour | None, expected: Colour | None
) -> None:
    progress = rollout.opening(make_plan(OLD), running(phase, live_colour=colour), at(1))
    assert progress.live_colour == expected


def test_the_opening_records_a_new_release_as_waiting_for_a_transition_once() -> None:
    plan = make_plan(NEW)
    status = transitioning(1, 2)
    first = rollout.opening(plan, status, at(1))
    assert first.rollout is not None and first.rollout.state == RolloutState.WAITING
    assert reasons(first.events) == ["RolloutWaiting"]
    status.rollout = first.rollout
    again = rollout.opening(plan, status, at(30))
    assert again.rollout == first.rollout
    assert again.events == []


def test_the_opening_leaves_the_rollout_alone_during_a_transition_with_nothing_new() -> None:
    progress = rollout.opening(make_plan(OLD), transitioning(2, 3), at(1))
    assert progress.rollout is None and progress.events == []


def test_the_opening_drops_a_wait_for_a_release_no_longer_wanted_once_steady() -> None:
    status = transitioning(1, 2)
    status.rollout = rollout.wait_for_transition(make_plan(NEW), status, at(1))
    status = status.model_copy(update={"phase": 2, "transition": None})
    assert rollout.opening(make_plan(OLD), status, at(5)).rollout is None
    # Still wanted: the record stays for `start` to take up.
    assert rollout.opening(make_plan(NEW), status, at(5)).rollout == status.rollout


def test_the_opening_does_not_change_its_input() -> None:
    status = transitioning(1, 2).model_copy(update={"release": None})
    before = status.model_copy(deep=True)
    rollout.opening(make_plan(NEW), status, at(1))
    assert status == before


@pytest.mark.parametrize(
    ("permanent", "blamed", "step", "rolls_back"),
    [
        (True, True, RolloutStep.DEPLOY, True),
        (True, True, RolloutStep.ANALYSE, True),
        (True, True, RolloutStep.PROMOTE, True),
        (True, True, RolloutStep.SWITCH, False),  # the new release is Ready: not its fault
        (True, True, RolloutStep.GRACE, False),
        (False, True, RolloutStep.DEPLOY, False),  # a conflict or an outage: retried
        (True, False, RolloutStep.DEPLOY, False),  # an object the release did not change
    ],
)
def test_a_refused_apply_rolls_back_only_a_release_it_blames(
    permanent: bool, blamed: bool, step: RolloutStep, rolls_back: bool
) -> None:
    status = running(4)
    status.rollout = rollout.start(make_plan(NEW), status, T0).rollout
    assert status.rollout is not None
    status.rollout.step = step
    assert rollout.rolls_back_refusal(status, permanent=permanent, blamed=blamed) is rolls_back


def test_a_refused_apply_without_a_rollout_is_never_rolled_back() -> None:
    assert not rollout.rolls_back_refusal(running(3), permanent=True, blamed=True)
    finished = running(3)
    finished.rollout = rollout.start(make_plan(NEW), finished, T0).rollout
    assert finished.rollout is not None
    finished.rollout.state = RolloutState.SUCCEEDED
    assert not rollout.rolls_back_refusal(finished, permanent=True, blamed=True)


# Recreate (phase 1) and Rolling (phase 3) --------------------------------------------------


@pytest.mark.parametrize("phase", [1, 3])
def test_in_place_strategies_render_the_new_app_while_progressing(phase: int) -> None:
    plan, status = make_plan(NEW), running(phase)
    assert rollout.tracks(plan, status) == Tracks(OLD)
    assert rollout.stable_plan(plan, status).spec.app == OLD
    machine = Machine.started(phase)
    assert machine.tracks() == Tracks(NEW)
    assert rollout.stable_plan(machine.plan, machine.status) is machine.plan
    # Still the old release until it has rolled out.
    assert machine.release.app == OLD


@pytest.mark.parametrize("phase", [1, 3])
def test_in_place_strategies_succeed_once_everything_is_ready(phase: int) -> None:
    machine = Machine.started(phase)
    machine.tick(30, "shop-app")
    assert machine.record.state == RolloutState.PROGRESSING
    progress = machine.tick(60)
    assert machine.record.state == RolloutState.SUCCEEDED
    assert machine.record.step == RolloutStep.DONE
    assert machine.record.finished_at == at(60)
    assert NEW.image in machine.record.message
    assert machine.release == rollout.release_of(NEW)
    assert machine.tracks() == Tracks(NEW)
    assert reasons(progress.events) == ["RolloutSucceeded"]
    assert not machine.busy()
    assert not machine.pending()


@pytest.mark.parametrize("phase", [1, 3])
def test_in_place_strategies_wait_until_the_deadline_naming_what_is_not_ready(
    phase: int,
) -> None:
    machine = Machine.started(phase, now=100)
    for seconds in (101, 300, 100 + DEADLINE):
        progress = machine.tick(seconds, "shop-app", "shop-worker")
        assert machine.record.state == RolloutState.PROGRESSING
        assert machine.record.step == RolloutStep.DEPLOY
        assert "shop-app" in machine.record.message
        assert "shop-worker" in machine.record.message
        assert progress.events == []
        assert machine.tracks() == Tracks(NEW)
    assert machine.release.app == OLD


@pytest.mark.parametrize("phase", [1, 3])
def test_in_place_strategies_roll_back_past_the_deadline(phase: int) -> None:
    machine = Machine.started(phase, now=100)
    machine.tick(200, "shop-app")
    progress = machine.tick(100 + DEADLINE + 1, "shop-app")
    record = machine.record
    assert record.state == RolloutState.ROLLED_BACK
    assert record.step == RolloutStep.DONE
    assert record.finished_at == at(100 + DEADLINE + 1)
    assert f"{DEADLINE}s" in record.message
    assert "shop-app" in record.message
    assert machine.release == rollout.release_of(OLD)
    assert machine.tracks() == Tracks(OLD)
    assert progress.events == [("Warning", "RolloutRolledBack", record.message)]
    assert not machine.busy()


def test_the_deadline_follows_the_plan() -> None:
    machine = Machine.started(3, rolling={"progressDeadlineSeconds": 30})
    machine.tick(30, "shop-app")
    assert machine.record.state == RolloutState.PROGRESSING
    machine.tick(31, "shop-app")
    assert machine.record.state == RolloutState.ROLLED_BACK


def test_pods_ready_after_a_wait_still_succeed_before_the_deadline() -> None:
    machine = Machine.started(3)
    machine.tick(DEADLINE - 10, "shop-app")
    machine.tick(DEADLINE - 1)
    assert machine.record.state == RolloutState.SUCCEEDED


def test_the_wait_message_names_at_most_five_deployments() -> None:
    machine = Machine.started(1)
    names = [f"shop-{i}" for i in range(7)]
    machine.tick(10, *names)
    assert all(name in machine.record.message for name in names[:5])
    assert "shop-5" not in machine.record.message
    assert "shop-6" not in machine.record.message


# Blue-green (phase 2) ----------------------------------------------------------------------


def test_blue_green_deploys_the_new_app_on_the_idle_colour() -> None:
    machine = Machine.started(2, live_colour="blue")
    assert machine.tracks() == Tracks(OLD, next_app=NEW, live_colour="blue")
    assert rollout.stable_plan(machine.plan, machine.status).spec.app == OLD


def test_blue_green_never_switches_while_the_idle_colour_is_not_ready() -> None:
    machine = Machine.started(2, live_colour="blue")
    for seconds in (1, 60, 300, 599, DEADLINE):
        progress = machine.tick(seconds, "shop-app-green")
        assert machine.status.live_colour == "blue"
        assert machine.record.step == RolloutStep.DEPLOY
        assert machine.release.app == OLD
        assert "RolloutSwitched" not in reasons(progress.events)
        assert machine.tracks() == Tracks(OLD, next_app=NEW, live_colour="blue")
        assert "shop-app-green" in machine.record.message


@pytest.mark.parametrize(("live", "idle"), [("blue", "green"), ("green", "blue"), (None, "green")])
def test_blue_green_switches_the_service_once_the_idle_colour_is_ready(
    live: Colour | None, idle: Colour
) -> None:
    machine = Machine.started(2, live_colour=live, blue_green={"graceSeconds": 120})
    machine.tick(10, f"shop-app-{idle}")
    progress = machine.tick(20)
    assert machine.status.live_colour == idle
    assert reasons(progress.events) == ["RolloutSwitched"]
    assert idle in progress.events[0][2]
    assert machine.release == rollout.release_of(NEW)
    record = machine.record
    assert record.state == RolloutState.PROGRESSING
    assert record.step == RolloutStep.GRACE
    assert record.step_started_at == at(20)
    assert record.previous == rollout.release_of(OLD)
    # The live colour runs the new release; the old one stays up on the other colour.
    assert machine.tracks() == Tracks(NEW, next_app=OLD, live_colour=idle)
    assert machine.busy()


def test_the_switch_is_recorded_before_the_service_changes_and_reported_after() -> None:
    machine = Machine.started(2, live_colour="blue", blue_green={"graceSeconds": 120})
    recorded = rollout.advance(machine.plan, machine.status, Observed(), at(20))
    # What the shell writes to status before it applies: the colour the Service is to
    # select, and the tracks of the grace period, but no claim that it switched.
    assert recorded.rollout is not None and recorded.rollout.step == RolloutStep.SWITCH
    assert recorded.rollout.state == RolloutState.PROGRESSING
    assert "switching the Service to green" in recorded.rollout.message
    assert recorded.live_colour == "green"
    assert recorded.events == []
    machine.take(recorded)
    assert rollout.switching(machine.status)
    assert machine.tracks() == Tracks(NEW, next_app=OLD, live_colour="green")
    assert rollout.busy(machine.status)
    # Once applied, the grace period starts, with the Event that says so.
    done = machine.take(rollout.switched(machine.plan, machine.status, at(21)))
    assert reasons(done.events) == ["RolloutSwitched"]
    assert (machine.record.step, machine.record.step_started_at) == (RolloutStep.GRACE, at(21))
    assert not rollout.switching(machine.status)
    assert machine.tracks() == Tracks(NEW, next_app=OLD, live_colour="green")


@pytest.mark.parametrize("not_ready", [(), ("shop-app-green",)])
def test_a_switch_found_after_a_restart_is_reported_done(not_ready: tuple[str, ...]) -> None:
    # The shell applies the recorded colour before it asks `advance` anything.
    machine = Machine.started(2, live_colour="blue", blue_green={"graceSeconds": 120})
    machine.take(rollout.advance(machine.plan, machine.status, Observed(), at(20)))
    progress = machine.take(
        rollout.advance(machine.plan, machine.status, Observed(not_ready=not_ready), at(30))
    )
    assert reasons(progress.events) == ["RolloutSwitched"]
    assert machine.record.step == RolloutStep.GRACE
    assert machine.status.live_colour == "green"


def test_a_switch_back_is_recorded_as_a_switch_and_ends_rolled_back() -> None:
    machine = Machine.started(2, live_colour="blue", blue_green={"graceSeconds": 300})
    machine.tick(20)
    machine.change_app(OLD)
    machine.tick(60)
    recorded = machine.switch_recorded
    assert recorded is not None and recorded.rollout is not None
    assert (recorded.rollout.step, recorded.rollout.state) == (
        RolloutStep.SWITCH,
        RolloutState.PROGRESSING,
    )
    assert recorded.live_colour == "blue"
    assert "switching the Service back to blue" in recorded.rollout.message
    # While switching back, the release the rollout brought is no longer on any track.
    assert rollout.tracks(machine.plan, recorded) == Tracks(OLD, next_app=None, live_colour="blue")
    assert machine.record.state == RolloutState.ROLLED_BACK


@pytest.mark.parametrize("then", [NEW, THIRD])
def test_a_new_spec_app_during_a_pending_switch_back_is_rolled_out_after_it(then: App) -> None:
    machine = Machine.started(2, live_colour="blue", blue_green={"graceSeconds": 300})
    machine.tick(20)
    machine.change_app(OLD)
    # The switch back is recorded, then the operator stops before it is applied...
    machine.take(rollout.advance(machine.plan, machine.status, Observed(), at(30)))
    assert rollout.switching(machine.status) and machine.status.live_colour == "blue"
    machine.status.app_revision = rollout.revision_of(OLD)
    # ...and spec.app moves on before it resumes.
    machine.change_app(then)
    machine.status.app_revision = rollout.revision_of(then)  # the shell acts on it at once
    progress = machine.take(rollout.advance(machine.plan, machine.status, Observed(), at(40)))
    assert reasons(progress.events) == ["RolloutRolledBack", "RolloutStarted"]
    assert machine.release == rollout.release_of(OLD)
    assert (machine.record.revision, machine.record.step) == (
        rollout.revision_of(then),
        RolloutStep.DEPLOY,
    )
    assert machine.tracks() == Tracks(OLD, next_app=then, live_colour="blue")


def test_blue_green_succeeds_when_the_grace_period_is_over() -> None:
    machine = Machine.started(2, live_colour="blue", blue_green={"graceSeconds": 120})
    machine.tick(20)
    for seconds in (21, 100, 139):
        assert machine.tick(seconds).events == []
        assert machine.record.step == RolloutStep.GRACE
        assert machine.tracks().next_app == OLD
    progress = machine.tick(140)
    record = machine.record
    assert record.state == RolloutState.SUCCEEDED
    assert record.previous is None
    assert reasons(progress.events) == ["RolloutSucceeded"]
    assert machine.status.live_colour == "green"
    assert machine.release == rollout.release_of(NEW)
    assert machine.tracks() == Tracks(NEW, next_app=None, live_colour="green")
    assert not machine.pending()


def test_blue_green_without_grace_finishes_at_the_switch() -> None:
    machine = Machine.started(2, live_colour="blue", blue_green={"graceSeconds": 0})
    progress = machine.tick(20)
    assert reasons(progress.events) == ["RolloutSwitched", "RolloutSucceeded"]
    assert machine.record.state == RolloutState.SUCCEEDED
    assert machine.status.live_colour == "green"
    assert machine.release == rollout.release_of(NEW)
    assert machine.tracks() == Tracks(NEW, next_app=None, live_colour="green")


def test_blue_green_switches_back_instantly_when_spec_returns_during_grace() -> None:
    machine = Machine.started(2, live_colour="blue", blue_green={"graceSeconds": 300})
    machine.tick(20)
    assert machine.status.live_colour == "green"
    machine.change_app(OLD)
    progress = machine.tick(60)
    record = machine.record
    assert machine.status.live_colour == "blue"
    assert machine.release == rollout.release_of(OLD)
    assert record.state == RolloutState.ROLLED_BACK
    assert record.previous is None
    assert record.finished_at == at(60)
    assert progress.events == [("Warning", "RolloutRolledBack", record.message)]
    assert "blue" in record.message
    assert machine.tracks() == Tracks(OLD, next_app=None, live_colour="blue")
    assert not machine.pending()


def test_switching_back_during_grace_waits_for_the_old_colour_to_be_ready() -> None:
    machine = Machine.started(2, live_colour="blue", blue_green={"graceSeconds": 300})
    machine.tick(20)
    assert machine.status.live_colour == "green"
    machine.change_app(OLD)
    machine.tick(30, "shop-app-blue")
    assert machine.status.live_colour == "green"
    assert machine.record.state == RolloutState.PROGRESSING
    assert "once shop-app-blue is Ready" in machine.record.message
    machine.tick(31)
    assert machine.status.live_colour == "blue"
    assert machine.record.state == RolloutState.ROLLED_BACK


def test_a_third_revision_during_grace_ends_the_grace_and_rolls_out_blue_green() -> None:
    machine = Machine.started(2, live_colour="blue", blue_green={"graceSeconds": 300})
    machine.tick(20)
    machine.change_app(THIRD)
    progress = machine.tick(60)
    assert reasons(progress.events) == ["RolloutSucceeded", "RolloutStarted"]
    # What is live is the second revision; the third goes to the idle colour, blue.
    assert machine.release == rollout.release_of(NEW)
    assert machine.status.live_colour == "green"
    record = machine.record
    assert (record.revision, record.state, record.step) == (
        rollout.revision_of(THIRD),
        RolloutState.PROGRESSING,
        RolloutStep.DEPLOY,
    )
    assert record.from_revision == rollout.revision_of(NEW)
    assert machine.tracks() == rollout.Tracks(NEW, next_app=THIRD, live_colour="green")
    machine.tick(70)
    assert machine.status.live_colour == "blue"
    assert machine.release == rollout.release_of(THIRD)


def test_blue_green_rolls_back_when_the_idle_colour_never_gets_ready() -> None:
    machine = Machine.started(2, live_colour="green", now=10)
    machine.tick(300, "shop-app-blue")
    progress = machine.tick(10 + DEADLINE + 1, "shop-app-blue")
    assert machine.record.state == RolloutState.ROLLED_BACK
    assert machine.status.live_colour == "green"
    assert machine.release == rollout.release_of(OLD)
    assert reasons(progress.events) == ["RolloutRolledBack"]
    assert progress.events[0][0] == "Warning"
    assert machine.tracks() == Tracks(OLD, next_app=None, live_colour="green")


# Canary (phase 4) --------------------------------------------------------------------------


def canary_in_analysis(**spec: Any) -> Machine:
    """A canary rollout started at 0 whose canaries got Ready at 10."""
    machine = Machine.started(4, canary={**CANARY, **spec})
    machine.tick(10)
    assert machine.record.step == RolloutStep.ANALYSE
    return machine


def test_a_canary_runs_beside_the_stable_track_until_its_pods_are_ready() -> None:
    machine = Machine.started(4, canary=CANARY)
    assert machine.tracks() == Tracks(OLD, next_app=NEW, canary_weight=20)
    assert rollout.stable_plan(machine.plan, machine.status).spec.app == OLD
    machine.tick(5, "shop-app-canary")
    assert machine.record.step == RolloutStep.DEPLOY
    assert "shop-app-canary" in machine.record.message
    progress = machine.tick(10)
    assert machine.record.step == RolloutStep.ANALYSE
    assert machine.record.step_started_at == at(10)
    assert progress.events == []
    assert machine.tracks() == Tracks(OLD, next_app=NEW, canary_weight=20)


def test_a_check_is_due_once_per_interval() -> None:
    machine = Machine.started(4, canary=CANARY)
    assert not rollout.check_due(machine.plan, machine.status, at(1000))  # still deploying
    machine.tick(10)
    assert not rollout.check_due(machine.plan, machine.status, at(69))
    assert rollout.check_due(machine.plan, machine.status, at(70))
    machine.tick(75, reading=GOOD)
    assert not rollout.check_due(machine.plan, machine.status, at(134))
    assert rollout.check_due(machine.plan, machine.status, at(135))
    assert not rollout.check_due(make_plan(NEW), running(4), at(1000))  # no rollout


def test_the_next_check_and_the_end_of_a_grace_are_due_by_the_clock() -> None:
    canary = Machine.started(4, canary=CANARY)
    assert rollout.due_at(canary.plan, canary.status) is None  # waiting for pods, not time
    canary.tick(10)
    assert rollout.due_at(canary.plan, canary.status) == at(70)
    canary.tick(75, reading=GOOD)
    assert rollout.due_at(canary.plan, canary.status) == at(135)
    blue_green = Machine.started(2, live_colour="blue", blue_green={"graceSeconds": 120})
    assert rollout.due_at(blue_green.plan, blue_green.status) is None
    blue_green.tick(20)
    assert rollout.due_at(blue_green.plan, blue_green.status) == at(140)
    blue_green.tick(140)
    assert rollout.due_at(blue_green.plan, blue_green.status) is None  # succeeded
    assert rollout.due_at(make_plan(NEW), running(2)) is None


def test_the_shell_looks_again_when_a_moment_is_due_and_polls_otherwise() -> None:
    canary = Machine.started(4, canary=CANARY)
    assert rollout.wait_seconds(canary.plan, canary.status, at(5)) == math.inf  # pods
    canary.tick(10)
    assert rollout.wait_seconds(canary.plan, canary.status, at(40)) == 30.0
    # Due, but not acted on (the canaries were not Ready): poll, never spin.
    assert rollout.wait_seconds(canary.plan, canary.status, at(70)) == math.inf
    assert rollout.wait_seconds(canary.plan, canary.status, at(95)) == math.inf
    assert rollout.wait_seconds(make_plan(NEW), running(4), at(0)) is None  # nothing moves


def test_no_reading_leaves_the_analysis_as_it_is() -> None:
    machine = canary_in_analysis()
    before = machine.record
    progress = machine.tick(30)
    assert machine.record == before
    assert progress.events == []


def test_passed_checks_grow_the_canary_up_to_half_the_traffic() -> None:
    machine = canary_in_analysis()
    weights = []
    for n in (1, 2, 3):
        progress = machine.tick(10 + 60 * n, reading=GOOD)
        canary = machine.record.canary
        assert canary is not None
        assert canary.iteration == n
        assert canary.failed_checks == 0
        assert canary.last_check_at == at(10 + 60 * n)
        assert canary.error_rate == GOOD.error_rate
        assert canary.p95_latency_seconds == GOOD.p95_latency_seconds
        assert machine.record.step == RolloutStep.ANALYSE
        assert progress.events[0][:2] == ("Normal", "CanaryCheckPassed")
        assert f"check {n}/4 passed" in progress.events[0][2]
        weights.append(canary.weight_percent)
        assert machine.tracks() == Tracks(OLD, next_app=NEW, canary_weight=canary.weight_percent)
    assert weights == [40, min(60, MAX_CANARY_WEIGHT), min(80, MAX_CANARY_WEIGHT)]


def test_enough_passed_checks_promote_the_canary_then_succeed() -> None:
    machine = canary_in_analysis()
    for n in (1, 2, 3):
        machine.tick(10 + 60 * n, reading=GOOD)
    progress = machine.tick(250, reading=GOOD)
    assert reasons(progress.events) == ["CanaryCheckPassed", "CanaryPromoted"]
    record = machine.record
    assert record.step == RolloutStep.PROMOTE
    assert record.state == RolloutState.PROGRESSING
    assert record.canary is not None and record.canary.iteration == 4
    # The stable track takes the new app; the release is still the old one.
    assert machine.tracks().app == NEW
    assert machine.tracks().next_app == NEW
    assert rollout.stable_plan(machine.plan, machine.status).spec.app == NEW
    assert machine.release.app == OLD
    assert not rollout.check_due(machine.plan, machine.status, at(10_000))
    machine.tick(260, "shop-app")
    assert machine.record.step == RolloutStep.PROMOTE
    progress = machine.tick(270)
    assert reasons(progress.events) == ["RolloutSucceeded"]
    assert machine.record.state == RolloutState.SUCCEEDED
    assert machine.release == rollout.release_of(NEW)
    assert machine.tracks() == Tracks(NEW)


def test_a_promotion_that_never_gets_ready_is_rolled_back() -> None:
    machine = canary_in_analysis(iterations=1)
    machine.tick(70, reading=GOOD)
    assert machine.record.step == RolloutStep.PROMOTE
    machine.tick(70 + DEADLINE, "shop-app")
    assert machine.record.state == RolloutState.PROGRESSING
    machine.tick(71 + DEADLINE, "shop-app")
    assert machine.record.state == RolloutState.ROLLED_BACK
    assert machine.release.app == OLD
    assert machine.tracks() == Tracks(OLD)


BAD_READINGS = {
    "error-rate": (CanaryReading(error_rate=0.2, p95_latency_seconds=0.1), "error rate"),
    "p95": (CanaryReading(error_rate=0.0, p95_latency_seconds=2.0), "p95 latency"),
    "no-error-rate": (CanaryReading(error_rate=None, p95_latency_seconds=0.1), "error-rate"),
    "no-latency": (CanaryReading(error_rate=0.0, p95_latency_seconds=None), "latency"),
    "unavailable": (
        CanaryReading(error_rate=None, p95_latency_seconds=None, error="connection refused"),
        "connection refused",
    ),
}


@pytest.mark.parametrize(("reading", "named"), BAD_READINGS.values(), ids=BAD_READINGS.keys())
def test_failed_checks_roll_the_canary_back_at_the_threshold(
    reading: CanaryReading, named: str
) -> None:
    machine = canary_in_analysis()
    progress = machine.tick(70, reading=reading)
    assert progress.events[0][:2] == ("Warning", "CanaryCheckFailed")
    assert named in progress.events[0][2]
    assert named in machine.record.message
    canary = machine.record.canary
    assert canary is not None
    assert canary.failed_checks == 1
    assert canary.iteration == 0
    assert canary.weight_percent == 20
    assert canary.last_check_at == at(70)
    assert machine.record.state == RolloutState.PROGRESSING
    assert machine.tracks() == Tracks(OLD, next_app=NEW, canary_weight=20)
    progress = machine.tick(130, reading=reading)
    assert reasons(progress.events) == ["CanaryCheckFailed", "RolloutRolledBack"]
    assert progress.events[1][0] == "Warning"
    assert machine.record.state == RolloutState.ROLLED_BACK
    assert machine.release == rollout.release_of(OLD)
    assert machine.tracks() == Tracks(OLD, next_app=None, canary_weight=0)
    assert not machine.pending()


def test_failed_checks_count_across_passed_ones() -> None:
    machine = canary_in_analysis()
    bad = BAD_READINGS["error-rate"][0]
    machine.tick(70, reading=bad)
    machine.tick(130, reading=GOOD)
    canary = machine.record.canary
    assert canary is not None and (canary.iteration, canary.failed_checks) == (1, 1)
    machine.tick(190, reading=bad)
    assert machine.record.state == RolloutState.ROLLED_BACK


def test_not_ready_canaries_during_the_analysis_wait_within_the_deadline() -> None:
    machine = canary_in_analysis()
    machine.tick(70, reading=GOOD)
    progress = machine.tick(75, "shop-app-canary")
    assert machine.record.state == RolloutState.PROGRESSING
    assert machine.record.step == RolloutStep.ANALYSE
    assert "shop-app-canary" in machine.record.message
    assert progress.events == []


def test_canaries_added_late_in_a_long_analysis_get_the_whole_deadline() -> None:
    machine = canary_in_analysis(intervalSeconds=400, iterations=5, weightPercent=10)
    machine.tick(410, reading=GOOD)
    machine.tick(810, reading=GOOD)  # weight 30%: more canary pods are scheduled
    canary = machine.record.canary
    assert canary is not None and canary.weight_percent == 30
    machine.tick(811, "shop-app-canary")  # the new pods have had one second
    assert machine.record.state == RolloutState.PROGRESSING


def test_judge_passes_at_the_thresholds() -> None:
    plan = make_plan(NEW, canary=CANARY)
    assert rollout.judge(GOOD, plan) is None
    assert rollout.judge(CanaryReading(error_rate=0.01, p95_latency_seconds=0.5), plan) is None


@pytest.mark.parametrize(
    ("reading", "named"),
    [
        (CanaryReading(0.02, 0.1), ["error rate 0.0200 > 0.01"]),
        (CanaryReading(0.0, 0.75), ["p95 latency 0.750s > 0.5s"]),
        (CanaryReading(0.5, 3.0), ["error rate", "p95 latency"]),
        (CanaryReading(None, 0.1), ["no error-rate data"]),
        (CanaryReading(0.0, None), ["no latency data"]),
        (CanaryReading(None, None), ["no error-rate data", "no latency data"]),
        (CanaryReading(0.0, 0.1, error="timeout"), ["metrics unavailable: timeout"]),
    ],
)
def test_judge_names_the_failing_metric(reading: CanaryReading, named: list[str]) -> None:
    verdict = rollout.judge(reading, make_plan(NEW, canary=CANARY))
    assert verdict is not None
    for part in named:
        assert part in verdict
    assert verdict.count(";") == len(named) - 1


def test_describe_shows_both_values() -> None:
    assert rollout.describe(GOOD) == "error rate 0.0010, p95 0.100s"
    assert rollout.describe(CanaryReading(None, 0.25)) == "error rate n/a, p95 0.250s"


def test_describe_shows_a_missing_latency_without_a_unit() -> None:
    assert rollout.describe(CanaryReading(0.5, None)) == "error rate 0.5000, p95 n/a"


# superseded rollouts ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phase", "ready"),
    [(1, False), (2, False), (3, False), (4, False), (4, True)],
    ids=["recreate", "blue-green", "rolling", "canary-deploy", "canary-analyse"],
)
def test_a_new_spec_app_mid_rollout_restarts_it(phase: int, ready: bool) -> None:
    machine = Machine.started(phase, live_colour="blue", canary=CANARY)
    if ready:
        machine.tick(10)
        machine.tick(70, reading=GOOD)
        assert machine.record.step == RolloutStep.ANALYSE
    else:
        machine.tick(10, "shop-app")
        assert machine.record.step == RolloutStep.DEPLOY
    machine.change_app(THIRD)
    progress = machine.tick(100, "shop-app")
    assert reasons(progress.events) == ["RolloutSuperseded", "RolloutStarted"]
    assert rollout.revision_of(NEW) in progress.events[0][2]
    assert rollout.revision_of(THIRD) in progress.events[0][2]
    record = machine.record
    assert record.revision == rollout.revision_of(THIRD)
    assert record.image == THIRD.image
    assert record.from_revision == rollout.revision_of(OLD)
    assert record.state == RolloutState.PROGRESSING
    assert record.step == RolloutStep.DEPLOY
    assert record.started_at == record.step_started_at == at(100)
    if phase == 4:
        assert record.canary is not None
        assert (record.canary.iteration, record.canary.weight_percent) == (0, 20)
    assert machine.release == rollout.release_of(OLD)
    assert machine.status.live_colour == "blue"
    assert machine.tracks().app == (THIRD if phase in (1, 3) else OLD)


@pytest.mark.parametrize("phase", [1, 2, 3, 4])
def test_spec_back_to_the_release_mid_rollout_stops_it_without_a_new_one(phase: int) -> None:
    machine = Machine.started(phase, live_colour="blue", canary=CANARY)
    machine.tick(10, "shop-app")
    machine.change_app(OLD)
    progress = machine.tick(20, "shop-app")
    assert reasons(progress.events) == ["RolloutRolledBack"]
    assert machine.record.state == RolloutState.ROLLED_BACK
    assert "went back to the running release" in machine.record.message
    assert machine.release == rollout.release_of(OLD)
    assert machine.tracks() == rollout.Tracks(OLD, live_colour="blue")
    assert not machine.pending()


def test_a_wait_for_a_release_no_longer_wanted_is_stale() -> None:
    plan = make_plan(NEW)
    status = running(1).model_copy(
        update={
            "transition": Transition.model_validate(
                {"from": 1, "to": 2, "startedAt": at(0).isoformat()}
            )
        }
    )
    status.rollout = rollout.wait_for_transition(plan, status, at(1))
    assert not rollout.stale_wait(plan, status)
    reverted = make_plan(OLD)
    assert rollout.stale_wait(reverted, status)
    assert not rollout.pending(reverted, status)


def test_the_restarted_rollout_gets_a_fresh_deadline() -> None:
    machine = Machine.started(3)
    machine.tick(DEADLINE - 1, "shop-app")
    machine.change_app(THIRD)
    machine.tick(DEADLINE, "shop-app")
    machine.tick(DEADLINE + 100, "shop-app")
    assert machine.record.state == RolloutState.PROGRESSING
    machine.tick(DEADLINE + 110)
    assert machine.record.state == RolloutState.SUCCEEDED
    assert machine.release == rollout.release_of(THIRD)


# purity and invariants -------------------------------------------------------------------


def test_advance_does_not_change_its_input() -> None:
    machine = canary_in_analysis()
    before = machine.status.model_copy(deep=True)
    rollout.advance(machine.plan, machine.status, Observed(reading=GOOD), at(70))
    rollout.advance(machine.plan, machine.status, Observed(reading=CanaryReading(1, 9)), at(70))
    assert machine.status == before
    blue_green = Machine.started(2, live_colour="blue")
    before = blue_green.status.model_copy(deep=True)
    rollout.advance(blue_green.plan, blue_green.status, Observed(), at(10))
    assert blue_green.status == before


ticks = st.lists(
    st.tuples(st.integers(min_value=1, max_value=400), st.booleans(), st.booleans()),
    min_size=1,
    max_size=30,
)


@settings(max_examples=100, deadline=None)
@given(ticks)
def test_blue_green_switches_only_when_ready_and_at_most_once(
    steps: list[tuple[int, bool, bool]],
) -> None:
    machine = Machine.started(2, live_colour="blue", blue_green={"graceSeconds": 120})
    now = 0
    for gap, ready, _ in steps:
        if not machine.busy():
            break
        now += gap
        not_ready = () if ready else ("shop-app-green",)
        before = machine.status.live_colour
        machine.tick(now, *not_ready)
        if machine.status.live_colour != before:
            assert ready
    assert reasons(machine.events).count("RolloutSwitched") <= 1
    if machine.status.live_colour == "green":
        assert machine.release == rollout.release_of(NEW)
    else:
        assert machine.release == rollout.release_of(OLD)
        assert machine.record.state in (RolloutState.PROGRESSING, RolloutState.ROLLED_BACK)


@settings(max_examples=100, deadline=None)
@given(ticks)
def test_a_canary_never_takes_more_than_half_nor_shrinks_while_progressing(
    steps: list[tuple[int, bool, bool]],
) -> None:
    machine = Machine.started(4, canary={**CANARY, "iterations": 6, "threshold": 3})
    now = 0
    weight = 0
    for gap, ready, healthy in steps:
        if not machine.busy():
            break
        now += gap
        reading = None
        if ready and rollout.check_due(machine.plan, machine.status, at(now)):
            reading = GOOD if healthy else CanaryReading(0.5, 0.1)
        machine.tick(now, *(() if ready else ("shop-app-canary",)), reading=reading)
        tracks = machine.tracks()
        assert tracks.canary_weight <= MAX_CANARY_WEIGHT
        if machine.busy():
            assert tracks.canary_weight >= weight
            weight = tracks.canary_weight
        else:
            assert tracks.next_app is None
    canary = machine.record.canary
    assert canary is not None
    assert canary.iteration <= 6
    assert canary.failed_checks <= 3
    if machine.record.state == RolloutState.SUCCEEDED:
        assert canary.iteration == 6
        assert machine.release == rollout.release_of(NEW)
    else:
        assert machine.release == rollout.release_of(OLD)
