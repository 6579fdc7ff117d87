"""Summary conditions derived from a ScalePlan's status."""

from __future__ import annotations

from datetime import UTC, datetime

from phaseshift.api import Condition, Decision, ScalePlanStatus, Transition
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
