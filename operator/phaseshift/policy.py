"""Which phase a ScalePlan needs now: a pure function of its signals, spec, status and time.

The rules, in the order they are applied:

1. `paused` holds everything (reason Paused).
2. A transition in progress holds (TransitionInProgress): it finishes before a new one.
3. A phase outside [minPhase, maxPhase] (the user moved the range) moves one step toward it
   (OutOfRange), inside the cooldown too: the cooldown damps flapping load, and the range is
   the user's explicit instruction. It needs no signals, so it also acts during a metrics
   outage.
4. No signals at all for the plan: hold (MetricsUnavailable).
5. Inside `cooldownSeconds` after the last transition finished, or after a transition
   failed (Degraded=True since then): hold (Cooldown), so a step that cannot succeed is
   not retried on every tick.
6. Promote one phase when any threshold of the current phase has held for the whole
   promotion window (its window minimum is at or above it, the window covered by data), or
   is predicted to be reached within `leadSeconds` by a signal already above its demotion
   floor (so a promotion on a trend that then flattens is not undone at once). At maxPhase
   that is AtMaxPhase.
   One crossing signal with good data is enough evidence, even if another signal is missing.
7. A signal needed for the decision that is missing, NaN, infinite or older than
   `stalenessSeconds`: hold (MetricsUnavailable). Missing data never demotes.
8. Demote one phase when every threshold of the phase below has stayed under
   threshold x (1 - hysteresis) for the whole demotion window (window maximum, covered).
   The gap between the promotion and demotion thresholds is what stops a signal hovering at
   a threshold from flapping.
9. Otherwise hold (Hold).

With Manual approval a move is only proposed (AwaitingApproval, target_phase = the phase it
would move to) until annotation phaseshift.dev/approve names that phase.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

from phaseshift.api import ANNOTATION_APPROVE, MIN_PHASE, ConditionType, ScalePlan
from phaseshift.promql import PlanSignals, SignalReading


class Reason(StrEnum):
    PROMOTE = "Promote"
    DEMOTE = "Demote"
    OUT_OF_RANGE = "OutOfRange"
    HOLD = "Hold"
    PAUSED = "Paused"
    TRANSITION_IN_PROGRESS = "TransitionInProgress"
    METRICS_UNAVAILABLE = "MetricsUnavailable"
    COOLDOWN = "Cooldown"
    AT_MAX_PHASE = "AtMaxPhase"
    AWAITING_APPROVAL = "AwaitingApproval"


MOVING_REASONS = frozenset({Reason.PROMOTE, Reason.DEMOTE, Reason.OUT_OF_RANGE})


@dataclass(frozen=True)
class Decision:
    current_phase: int
    target_phase: int
    reason: Reason
    message: str
    evidence: dict[str, float] = field(default_factory=dict)
    """Signal name -> current value, for every signal with a finite one."""

    @property
    def moves(self) -> bool:
        """The operator should start a transition to target_phase now."""
        return self.reason in MOVING_REASONS and self.target_phase != self.current_phase


def decide(signals: PlanSignals | None, plan: ScalePlan, now: datetime) -> Decision:
    policy = plan.spec.policy
    status = plan.status
    # A plan the operator has not placed yet starts at the bottom of its range.
    current = status.phase if status.phase is not None else policy.min_phase
    evidence = _evidence(signals)

    def hold(reason: Reason, message: str) -> Decision:
        return Decision(current, current, reason, message, evidence)

    if policy.paused:
        return hold(Reason.PAUSED, "spec.policy.paused is true")
    if status.transition is not None:
        t = status.transition
        return hold(
            Reason.TRANSITION_IN_PROGRESS,
            f"the transition from phase {t.from_} to {t.to} is still in progress",
        )
    if current > policy.max_phase:
        decision = Decision(
            current,
            current - 1,
            Reason.OUT_OF_RANGE,
            f"phase {current} is above maxPhase {policy.max_phase}",
            evidence,
        )
    elif current < policy.min_phase:
        decision = Decision(
            current,
            current + 1,
            Reason.OUT_OF_RANGE,
            f"phase {current} is below minPhase {policy.min_phase}",
            evidence,
        )
    elif signals is None or not signals.readings:
        why = signals.error if signals is not None and signals.error else "no signals fetched"
        return hold(Reason.METRICS_UNAVAILABLE, why)
    else:
        left = _cooldown_left(plan, now)
        if left > 0:
            return hold(
                Reason.COOLDOWN,
                f"{math.ceil(left)}s of cooldown left after the last transition",
            )
        decision = _by_signals(signals, plan, current, now, evidence)
    return _gate_on_approval(decision, plan)


def _by_signals(
    signals: PlanSignals, plan: ScalePlan, current: int, now: datetime, evidence: dict[str, float]
) -> Decision:
    spec = plan.spec
    policy = spec.policy
    staleness = spec.metrics.staleness_seconds
    snapshot_age = (now - signals.fetched_at).total_seconds()

    def usable(name: str) -> SignalReading | None:
        reading = signals.readings.get(name)
        if reading is None or not _finite(reading.current) or snapshot_age > staleness:
            return None
        if reading.age_seconds is not None and reading.age_seconds > staleness:
            return None
        return reading

    def hold(reason: Reason, message: str) -> Decision:
        return Decision(current, current, reason, message, evidence)

    promote_at = spec.threshold_for(current)
    crossings = [
        why
        for name, threshold in promote_at.items()
        if (why := _crossing(name, usable(name), threshold, plan)) is not None
    ]
    if crossings:
        if current >= policy.max_phase:
            return hold(
                Reason.AT_MAX_PHASE, f"{'; '.join(crossings)}, but phase {current} is maxPhase"
            )
        return Decision(current, current + 1, Reason.PROMOTE, "; ".join(crossings), evidence)

    demote_to = current - 1
    demotable = policy.demotion.enabled and demote_to >= max(policy.min_phase, MIN_PHASE)
    floors = spec.threshold_for(demote_to) if demotable else {}
    needed = [*promote_at, *(n for n in floors if n not in promote_at)]
    missing = [name for name in needed if usable(name) is None]
    if missing:
        return hold(Reason.METRICS_UNAVAILABLE, _describe_missing(missing, signals, staleness))
    if not floors:
        return hold(Reason.HOLD, f"no threshold of phase {current} is reached")

    factor = 1 - policy.demotion.hysteresis
    window = policy.demotion.stabilization_seconds
    below: list[str] = []
    for name, threshold in floors.items():
        reading = usable(name)
        assert reading is not None  # checked above
        floor = threshold * factor
        if not reading.demotion_covered or not _finite(reading.window_max):
            return hold(Reason.HOLD, f"{name}: the {window}s demotion window is not covered yet")
        assert reading.window_max is not None
        if reading.window_max >= floor:
            return hold(
                Reason.HOLD,
                f"{name} is between its demotion floor {floor:g} and its promotion threshold",
            )
        below.append(f"{name} stayed below {floor:g} for {window}s (max {reading.window_max:g})")
    return Decision(current, demote_to, Reason.DEMOTE, "; ".join(below), evidence)


def _crossing(
    name: str, reading: SignalReading | None, threshold: float, plan: ScalePlan
) -> str | None:
    """Why `name` promotes, or None."""
    if reading is None:
        return None
    promotion = plan.spec.policy.promotion
    if reading.covered and _finite(reading.window_min):
        assert reading.window_min is not None
        if reading.window_min >= threshold:
            return (
                f"{name} stayed at or above {threshold:g} for {promotion.stabilization_seconds}s"
                f" (min {reading.window_min:g})"
            )
    lead = promotion.predictive.lead_seconds
    # Prediction only brings a promotion forward from inside the hysteresis band: a load
    # promoted from below its demotion floor would be demoted as soon as its trend flattened.
    floor = threshold * (1 - plan.spec.policy.demotion.hysteresis)
    if lead and _finite(reading.predicted) and _finite(reading.current):
        assert reading.predicted is not None and reading.current is not None
        if reading.predicted >= threshold and reading.current >= floor:
            return (
                f"{name} is predicted to reach {threshold:g} within {lead}s"
                f" (now {reading.current:g}, predicted {reading.predicted:g})"
            )
    return None


def _describe_missing(missing: list[str], signals: PlanSignals, staleness: int) -> str:
    parts = []
    for name in missing:
        reading = signals.readings.get(name)
        if name in signals.errors:
            parts.append(signals.errors[name])
        elif reading is None or reading.current is None:
            parts.append(f"{name}: no data")
        elif not _finite(reading.current):
            parts.append(f"{name}: value is {reading.current}")
        else:
            parts.append(f"{name}: no sample newer than {staleness}s")
    return "; ".join(parts)


def _cooldown_left(plan: ScalePlan, now: datetime) -> float:
    status = plan.status
    attempts = [entry.at for entry in status.history[-1:]]
    degraded = status.condition(ConditionType.DEGRADED)
    if degraded is not None and degraded.status == "True":
        attempts.append(degraded.last_transition_time)
    if not attempts:
        return 0.0
    cooldown = plan.spec.policy.promotion.cooldown_seconds
    return cooldown - (now - max(attempts)).total_seconds()


def _gate_on_approval(decision: Decision, plan: ScalePlan) -> Decision:
    if not decision.moves or plan.spec.policy.approval != "Manual":
        return decision
    target = decision.target_phase
    if plan.approved_phase() == target:
        return replace(decision, message=f"{decision.message}; approved ({ANNOTATION_APPROVE})")
    return replace(
        decision,
        reason=Reason.AWAITING_APPROVAL,
        message=(
            f"{decision.reason} to phase {target} awaits approval: annotate the ScalePlan with "
            f"{ANNOTATION_APPROVE}={target} ({decision.message})"
        ),
    )


def _evidence(signals: PlanSignals | None) -> dict[str, float]:
    if signals is None:
        return {}
    return {
        name: reading.current
        for name, reading in signals.readings.items()
        if reading.current is not None and math.isfinite(reading.current)
    }


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)
