"""The summary conditions of a ScalePlan, derived from the rest of its status. Pure.

Transitioning and Degraded are set by the steps that change them; this module fills in
their steady defaults and derives MetricsAvailable, AwaitingApproval and Ready.
"""

from __future__ import annotations

from datetime import datetime

from phaseshift.api import (
    Condition,
    ConditionStatus,
    ConditionType,
    ScalePlanStatus,
    set_condition,
)

Verdict = tuple[ConditionStatus, str, str]
"""status, reason, message"""


def derived(status: ScalePlanStatus) -> dict[str, Verdict]:
    verdicts: dict[str, Verdict] = {}
    if status.transition is None:
        verdicts[ConditionType.TRANSITIONING] = ("False", "Steady", "")
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
            message=message[:1024],
            last_transition_time=now,
            observed_generation=generation,
        ),
    )
