"""The summary conditions of a ScalePlan, derived from the rest of its status. Pure.

Transitioning and Degraded are set by the steps that change them; this module fills in
their steady defaults and derives MetricsAvailable, AwaitingApproval and Ready.
"""

from __future__ import annotations

from datetime import datetime

from phaseshift.api import (
    MAX_MESSAGE_CHARS,
    Condition,
    ConditionStatus,
    ConditionType,
    RolloutState,
    ScalePlanStatus,
    set_condition,
)

Verdict = tuple[ConditionStatus, str, str]
"""status, reason, message"""


def derived(status: ScalePlanStatus) -> dict[str, Verdict]:
    verdicts: dict[str, Verdict] = {}
    ro = status.rollout
    rolling = ro is not None and ro.state == RolloutState.PROGRESSING
    if status.transition is None and status.target_phase not in (None, status.phase) and rolling:
        verdicts[ConditionType.TRANSITIONING] = (
            "False",
            "WaitingForRollout",
            f"phase {status.phase} -> {status.target_phase} waits for the rollout of "
            f"{ro.image if ro else ''} to finish",
        )
    elif status.transition is None:
        verdicts[ConditionType.TRANSITIONING] = ("False", "Steady", "")
    verdicts[ConditionType.ROLLOUT_IN_PROGRESS] = _rollout(status)
    degraded = status.condition(ConditionType.DEGRADED)
    if degraded is None:
        verdicts[ConditionType.DEGRADED] = ("False", "AsExpected", "")
    decision = status.last_decision
    reason = decision.reason if decision else ""
    message = decision.message if decision else ""
    verdicts[ConditionType.METRICS_AVAILABLE] = (
        ("False", "MetricsUnavailable", message)
        if reason == "MetricsUnavailable"
        else ("True", "SignalsRead", "")
    )
    verdicts[ConditionType.AWAITING_APPROVAL] = (
        ("True", "AwaitingApproval", message)
        if reason == "AwaitingApproval"
        else ("False", "NotRequired", "")
    )
    if status.transition is not None:
        ready: Verdict = ("False", "Transitioning", f"moving to phase {status.target_phase}")
    elif degraded is not None and degraded.status == "True":
        ready = ("False", "Degraded", degraded.message)
    else:
        ready = ("True", "PhaseApplied", f"running phase {status.phase}")
    verdicts[ConditionType.READY] = ready
    return verdicts


def _rollout(status: ScalePlanStatus) -> Verdict:
    ro = status.rollout
    if ro is None:
        return ("False", "NoRollout", "")
    if ro.state == RolloutState.PROGRESSING:
        return ("True", f"{ro.strategy}{ro.step}", ro.message)
    if ro.state == RolloutState.WAITING:
        return ("False", "WaitingForTransition", ro.message)
    return ("False", str(ro.state), ro.message)


def with_condition(
    conditions: list[Condition], type_: str, verdict: Verdict, now: datetime, generation: int
) -> list[Condition]:
    value, reason, message = verdict
    return set_condition(
        conditions,
        Condition(
            type=type_,
            status=value,
            reason=reason,
            message=message[:MAX_MESSAGE_CHARS],
            last_transition_time=now,
            observed_generation=generation,
        ),
    )
