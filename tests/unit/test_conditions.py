"""Summary conditions derived from a ScalePlan's status."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from phaseshift.api import (
    Condition,
    Decision,
    RolloutState,
    RolloutStatus,
    RolloutStrategy,
    ScalePlanStatus,
    Transition,
)
from phaseshift.conditions import derived, with_condition

NOW = datetime(2025, 1, 1, tzinfo=UTC)


def decision(reason: str, message: str = "why") -> Decision:
    return Decision(at=NOW, target=1, reason=reason, message=message)


def test_a_steady_plan_is_ready_with_metrics() -> None:
    verdicts = derived(ScalePlanStatus(phase=2, last_decision=decision("Hold")))
    assert verdicts["Ready"] == ("True", "PhaseApplied", "running phase 2")
    assert verdicts["Transitioning"] == ("False", "Steady", "")
    assert verdicts["Degraded"] == ("False", "AsExpected", "")
    assert verdicts["MetricsAvailable"] == ("True", "SignalsRead", "")
    assert verdicts["AwaitingApproval"] == ("False", "NotRequired", "")


def test_missing_metrics_and_pending_approval_say_why() -> None:
    unavailable = derived(ScalePlanStatus(phase=1, last_decision=decision("MetricsUnavailable")))
    assert unavailable["MetricsAvailable"] == ("False", "MetricsUnavailable", "why")
    awaiting = derived(ScalePlanStatus(phase=1, last_decision=decision("AwaitingApproval")))
    assert awaiting["AwaitingApproval"] == ("True", "AwaitingApproval", "why")


def test_a_transition_or_a_failure_is_not_ready_and_is_left_to_its_step() -> None:
    moving = ScalePlanStatus(
        phase=1, target_phase=2, transition=Transition(from_=1, to=2, started_at=NOW)
    )
    verdicts = derived(moving)
    assert verdicts["Ready"] == ("False", "Transitioning", "moving to phase 2")
    assert "Transitioning" not in verdicts
    failed = ScalePlanStatus(
        phase=1,
        conditions=[
            Condition(
                type="Degraded",
                status="True",
                reason="StepFailed",
                message="quota",
                last_transition_time=NOW,
            )
        ],
    )
    verdicts = derived(failed)
    assert verdicts["Ready"] == ("False", "Degraded", "quota")
    assert "Degraded" not in verdicts


def test_with_condition_keeps_the_transition_time_while_the_status_holds() -> None:
    later = datetime(2025, 1, 2, tzinfo=UTC)
    first = with_condition([], "Ready", ("True", "PhaseApplied", ""), NOW, 1)
    same = with_condition(first, "Ready", ("True", "PhaseApplied", "again"), later, 2)
    assert same[0].last_transition_time == NOW
    assert same[0].observed_generation == 2
    flipped = with_condition(same, "Ready", ("False", "Degraded", ""), later, 2)
    assert flipped[0].last_transition_time == later


def a_rollout(
    state: RolloutState,
    strategy: RolloutStrategy = RolloutStrategy.CANARY,
    step: str = "Analyse",
    message: str = "check 2/5 passed",
) -> RolloutStatus:
    return RolloutStatus(
        revision="abc1234567",
        image="registry.example/shop:2.0",
        strategy=strategy,
        state=state,
        step=step,
        started_at=NOW,
        message=message,
    )


def test_without_a_rollout_none_is_in_progress() -> None:
    verdicts = derived(ScalePlanStatus(phase=1))
    assert verdicts["RolloutInProgress"] == ("False", "NoRollout", "")


@pytest.mark.parametrize(
    ("strategy", "step", "reason"),
    [
        (RolloutStrategy.CANARY, "Analyse", "CanaryAnalyse"),
        (RolloutStrategy.CANARY, "Promote", "CanaryPromote"),
        (RolloutStrategy.BLUE_GREEN, "Grace", "BlueGreenGrace"),
        (RolloutStrategy.RECREATE, "Deploy", "RecreateDeploy"),
        (RolloutStrategy.ROLLING, "Deploy", "RollingDeploy"),
    ],
)
def test_a_progressing_rollout_names_its_strategy_and_step(
    strategy: RolloutStrategy, step: str, reason: str
) -> None:
    status = ScalePlanStatus(
        phase=4, target_phase=4, rollout=a_rollout(RolloutState.PROGRESSING, strategy, step)
    )
    verdicts = derived(status)
    assert verdicts["RolloutInProgress"] == ("True", reason, "check 2/5 passed")
    # A rollout neither blocks readiness nor counts as a transition.
    assert verdicts["Ready"] == ("True", "PhaseApplied", "running phase 4")
    assert verdicts["Transitioning"] == ("False", "Steady", "")


def test_a_waiting_rollout_is_not_in_progress() -> None:
    waiting = a_rollout(RolloutState.WAITING, step="", message="waits for 1 -> 2")
    status = ScalePlanStatus(
        phase=1,
        target_phase=2,
        transition=Transition(from_=1, to=2, started_at=NOW),
        rollout=waiting,
    )
    verdicts = derived(status)
    assert verdicts["RolloutInProgress"] == ("False", "WaitingForTransition", "waits for 1 -> 2")
    assert "Transitioning" not in verdicts


@pytest.mark.parametrize(
    ("state", "reason"),
    [(RolloutState.ROLLED_BACK, "RolledBack"), (RolloutState.SUCCEEDED, "Succeeded")],
)
def test_a_finished_rollout_says_how_it_ended(state: RolloutState, reason: str) -> None:
    status = ScalePlanStatus(phase=3, rollout=a_rollout(state, step="Done", message="how"))
    assert derived(status)["RolloutInProgress"] == ("False", reason, "how")


def test_a_phase_change_waits_for_the_rollout_in_progress() -> None:
    status = ScalePlanStatus(phase=2, target_phase=3, rollout=a_rollout(RolloutState.PROGRESSING))
    value, reason, message = derived(status)["Transitioning"]
    assert (value, reason) == ("False", "WaitingForRollout")
    assert "2 -> 3" in message
    assert "registry.example/shop:2.0" in message


@pytest.mark.parametrize(
    "state", [RolloutState.SUCCEEDED, RolloutState.ROLLED_BACK, RolloutState.WAITING]
)
def test_only_a_progressing_rollout_holds_a_phase_change(state: RolloutState) -> None:
    status = ScalePlanStatus(phase=2, target_phase=3, rollout=a_rollout(state))
    assert derived(status)["Transitioning"] == ("False", "Steady", "")


def test_a_transition_in_progress_keeps_its_own_transitioning_condition() -> None:
    status = ScalePlanStatus(
        phase=2,
        target_phase=3,
        transition=Transition(from_=2, to=3, started_at=NOW),
        rollout=a_rollout(RolloutState.PROGRESSING),
    )
    assert "Transitioning" not in derived(status)


def test_rollout_verdicts_are_valid_conditions() -> None:
    long = a_rollout(RolloutState.PROGRESSING, message="x" * 5000)
    for status in (
        ScalePlanStatus(phase=4, rollout=long),
        ScalePlanStatus(phase=4, target_phase=3, rollout=long),
    ):
        conditions: list[Condition] = []
        for type_, verdict in derived(status).items():
            conditions = with_condition(conditions, type_, verdict, NOW, 1)
        assert {c.type for c in conditions} >= {"RolloutInProgress", "Transitioning"}
        assert all(len(c.message) <= 1024 for c in conditions)
