"""The promotion/demotion policy: worked examples, then properties over generated inputs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from phaseshift.api import (
    ANNOTATION_APPROVE,
    Condition,
    HistoryEntry,
    ScalePlan,
    Transition,
    parse_plan,
)
from phaseshift.policy import Decision, Reason, decide
from phaseshift.promql import PlanSignals, SignalReading

NOW = datetime(2025, 1, 1, 12, tzinfo=UTC)
# Thresholds to leave phases 1, 2, 3 upward; hysteresis 0.3 puts the demotion floors at
# 700, 70_000 and 700_000 users.
USERS = {1: 1_000.0, 2: 100_000.0, 3: 1_000_000.0}


def make_plan(
    phase: int | None = 1,
    *,
    policy: dict[str, Any] | None = None,
    phases: list[dict[str, Any]] | None = None,
    signals: dict[str, str] | None = None,
    history: Sequence[tuple[int, int, datetime]] = (),
    transition: tuple[int, int] | None = None,
    annotations: dict[str, str] | None = None,
) -> ScalePlan:
    spec: dict[str, Any] = {"policy": policy or {}}
    if phases is not None:
        spec["phases"] = phases
    if signals is not None:
        spec["metrics"] = {"signals": signals}
    plan = parse_plan(
        {
            "metadata": {"name": "shop", "namespace": "web", "annotations": annotations or {}},
            "spec": spec,
        }
    )
    status = plan.status.model_copy(
        update={
            "phase": phase,
            "history": [
                HistoryEntry(from_=a, to=b, at=at, reason="Promote") for a, b, at in history
            ],
            "transition": (
                Transition(from_=transition[0], to=transition[1], started_at=NOW)
                if transition
                else None
            ),
        }
    )
    return plan.model_copy(update={"status": status})


def steady(value: float | None, **overrides: Any) -> SignalReading:
    """A signal that has sat at `value` for every window."""
    fields: dict[str, Any] = {
        "current": value,
        "window_min": value,
        "window_max": value,
        "predicted": value,
        "covered": True,
        "demotion_covered": True,
        "age_seconds": 0.0,
    }
    fields.update(overrides)
    return SignalReading(**fields)


def snapshot(
    at: datetime = NOW, errors: dict[str, str] | None = None, **readings: Any
) -> PlanSignals:
    return PlanSignals(readings=dict(readings), fetched_at=at, errors=errors or {})


def users(value: float | None, **overrides: Any) -> PlanSignals:
    return snapshot(activeUsers=steady(value, **overrides))


# ------------------------------------------------------------------------ promotion


def test_a_threshold_held_for_the_window_promotes_one_phase() -> None:
    d = decide(users(1_500), make_plan(1), NOW)
    assert (d.current_phase, d.target_phase, d.reason, d.moves) == (1, 2, Reason.PROMOTE, True)
    assert "activeUsers" in d.message and "1000" in d.message
    assert d.evidence == {"activeUsers": 1_500}


def test_far_above_every_threshold_still_promotes_only_one_phase() -> None:
    d = decide(users(5_000_000), make_plan(1), NOW)
    assert d.target_phase == 2


def test_a_spike_inside_the_window_does_not_promote() -> None:
    d = decide(users(1_500, window_min=800), make_plan(1), NOW)
    assert (d.target_phase, d.reason) == (1, Reason.HOLD)


def test_a_window_not_yet_covered_by_data_does_not_promote() -> None:
    d = decide(users(1_500, covered=False), make_plan(1), NOW)
    assert (d.target_phase, d.reason) == (1, Reason.HOLD)


def test_a_predicted_crossing_promotes_when_prediction_is_on() -> None:
    rising = users(900, window_min=600, predicted=1_200)
    predictive = {"promotion": {"predictive": {"leadSeconds": 120}}}
    d = decide(rising, make_plan(1, policy=predictive), NOW)
    assert (d.target_phase, d.reason) == (2, Reason.PROMOTE)
    assert "predicted" in d.message
    assert decide(rising, make_plan(1), NOW).reason == Reason.HOLD


def test_prediction_does_not_promote_from_below_the_demotion_floor() -> None:
    steep = users(600, window_min=300, predicted=1_200)  # floor: 1000 x (1 - 0.3) = 700
    predictive = {"promotion": {"predictive": {"leadSeconds": 120}}}
    assert decide(steep, make_plan(1, policy=predictive), NOW).reason == Reason.HOLD


def test_any_threshold_promotes_even_when_another_signal_has_no_data() -> None:
    plan = make_plan(1, phases=[{"phase": 1, "promoteWhen": {"activeUsers": 1000, "rps": 50}}])
    d = decide(snapshot(activeUsers=steady(2_000), rps=steady(None)), plan, NOW)
    assert (d.target_phase, d.reason) == (2, Reason.PROMOTE)


def test_at_max_phase_a_crossing_holds() -> None:
    d = decide(users(150_000), make_plan(2, policy={"maxPhase": 2}), NOW)
    assert (d.target_phase, d.reason, d.moves) == (2, Reason.AT_MAX_PHASE, False)


# ------------------------------------------------------------------------- demotion


def test_every_signal_below_the_lowered_threshold_for_the_window_demotes() -> None:
    d = decide(users(500), make_plan(2), NOW)
    assert (d.target_phase, d.reason, d.moves) == (1, Reason.DEMOTE, True)
    assert "700" in d.message


def test_inside_the_hysteresis_band_nothing_moves() -> None:
    for phase in (1, 2):
        d = decide(users(800), make_plan(phase), NOW)
        assert (d.target_phase, d.reason) == (phase, Reason.HOLD)


def test_a_peak_inside_the_demotion_window_prevents_demotion() -> None:
    d = decide(users(500, window_max=900), make_plan(2), NOW)
    assert (d.target_phase, d.reason) == (2, Reason.HOLD)


def test_a_demotion_window_not_yet_covered_does_not_demote() -> None:
    d = decide(users(500, demotion_covered=False), make_plan(2), NOW)
    assert (d.target_phase, d.reason) == (2, Reason.HOLD)


def test_demotion_needs_every_signal_of_the_lower_phase_low() -> None:
    phases = [{"phase": 1, "promoteWhen": {"activeUsers": 1000, "rps": 50}}]
    plan = make_plan(2, phases=phases)
    assert decide(snapshot(activeUsers=steady(10), rps=steady(40)), plan, NOW).reason == Reason.HOLD
    assert decide(snapshot(activeUsers=steady(10), rps=steady(20)), plan, NOW).target_phase == 1


def test_demotion_disabled_or_at_min_phase_holds() -> None:
    assert (
        decide(users(5), make_plan(2, policy={"demotion": {"enabled": False}}), NOW).moves is False
    )
    assert decide(users(5), make_plan(2, policy={"minPhase": 2}), NOW).moves is False
    assert decide(users(5), make_plan(1), NOW).moves is False


# ---------------------------------------------------------------------- missing data


def test_no_signals_at_all_hold_with_metrics_unavailable() -> None:
    d = decide(None, make_plan(2), NOW)
    assert (d.target_phase, d.reason, d.moves) == (2, Reason.METRICS_UNAVAILABLE, False)


def test_a_fetch_error_is_the_message() -> None:
    failed = snapshot(errors={"activeUsers": "Prometheus at http://p:9090 is unreachable"})
    d = decide(failed, make_plan(2), NOW)
    assert d.reason == Reason.METRICS_UNAVAILABLE
    assert "unreachable" in d.message


def test_missing_nan_or_stale_data_holds_and_never_demotes() -> None:
    plan = make_plan(2)  # the signal is far below the demotion floor in every case
    cases = {
        "missing": users(None),
        "nan": users(math.nan),
        "infinite": users(math.inf),
        "old sample": users(5, age_seconds=121),
        "old snapshot": snapshot(NOW - timedelta(seconds=121), activeUsers=steady(5)),
    }
    for case, signals in cases.items():
        d = decide(signals, plan, NOW)
        assert (d.target_phase, d.reason) == (2, Reason.METRICS_UNAVAILABLE), case


def test_a_signal_missing_from_the_lower_phase_blocks_demotion() -> None:
    phases = [{"phase": 1, "promoteWhen": {"activeUsers": 1000, "rps": 50}}]
    d = decide(snapshot(activeUsers=steady(10)), make_plan(2, phases=phases), NOW)
    assert (d.target_phase, d.reason) == (2, Reason.METRICS_UNAVAILABLE)
    assert "rps" in d.message


# --------------------------------------------------------- cooldown, range, pause, approval


def test_no_transition_inside_the_cooldown() -> None:
    recent = [(1, 2, NOW - timedelta(seconds=100))]
    d = decide(users(500_000), make_plan(2, history=recent), NOW)
    assert (d.target_phase, d.reason, d.moves) == (2, Reason.COOLDOWN, False)
    assert "200s" in d.message
    after = NOW + timedelta(seconds=200)
    later = decide(
        snapshot(after, activeUsers=steady(500_000)), make_plan(2, history=recent), after
    )
    assert (later.target_phase, later.reason) == (3, Reason.PROMOTE)


def test_a_failed_transition_starts_the_cooldown_too() -> None:
    plan = make_plan(1)
    failed_at = NOW - timedelta(seconds=100)
    degraded = Condition(
        type="Degraded", status="True", reason="StepFailed", last_transition_time=failed_at
    )
    plan.status.conditions = [degraded]
    d = decide(users(5_000), plan, NOW)
    assert (d.target_phase, d.reason, d.moves) == (1, Reason.COOLDOWN, False)
    after = NOW + timedelta(seconds=200)
    retry = decide(snapshot(after, activeUsers=steady(5_000)), plan, after)
    assert (retry.target_phase, retry.reason) == (2, Reason.PROMOTE)


def test_a_phase_outside_the_range_moves_one_step_back_even_inside_the_cooldown() -> None:
    recent = [(3, 4, NOW - timedelta(seconds=10))]
    down = decide(users(None), make_plan(4, policy={"maxPhase": 2}, history=recent), NOW)
    assert (down.target_phase, down.reason, down.moves) == (3, Reason.OUT_OF_RANGE, True)
    up = decide(users(None), make_plan(1, policy={"minPhase": 3}), NOW)
    assert (up.target_phase, up.reason) == (2, Reason.OUT_OF_RANGE)


def test_paused_holds_everything() -> None:
    d = decide(users(5_000), make_plan(1, policy={"paused": True}), NOW)
    assert (d.target_phase, d.reason, d.moves) == (1, Reason.PAUSED, False)


def test_a_transition_in_progress_holds() -> None:
    d = decide(users(500_000), make_plan(2, transition=(2, 3)), NOW)
    assert (d.target_phase, d.reason) == (2, Reason.TRANSITION_IN_PROGRESS)


def test_a_new_plan_starts_at_its_min_phase() -> None:
    d = decide(users(10), make_plan(None, policy={"minPhase": 2}), NOW)
    assert (d.current_phase, d.target_phase) == (2, 2)


def test_manual_approval_waits_for_the_annotation_naming_the_target() -> None:
    manual = {"approval": "Manual", "approvers": ["ops"]}
    waiting = decide(users(1_500), make_plan(1, policy=manual), NOW)
    assert (waiting.target_phase, waiting.reason, waiting.moves) == (
        2,
        Reason.AWAITING_APPROVAL,
        False,
    )
    assert f"{ANNOTATION_APPROVE}=2" in waiting.message
    wrong = make_plan(1, policy=manual, annotations={ANNOTATION_APPROVE: "3"})
    assert decide(users(1_500), wrong, NOW).reason == Reason.AWAITING_APPROVAL
    approved = make_plan(1, policy=manual, annotations={ANNOTATION_APPROVE: "2"})
    d = decide(users(1_500), approved, NOW)
    assert (d.target_phase, d.reason, d.moves) == (2, Reason.PROMOTE, True)


# ------------------------------------------------------------------------ properties
# A small simulator: a load series sampled once per tick, the readings Prometheus would
# compute from it, and the plan's status updated with every decision that moves.


def readings_at(values: Sequence[float], i: int, step: int, plan: ScalePlan) -> SignalReading:
    """What the combined query answers at tick i for a series sampled every `step` s."""
    promotion = plan.spec.policy.promotion
    demotion_window = plan.spec.policy.demotion.stabilization_seconds

    def window(seconds: int) -> tuple[Sequence[float], bool]:
        points = max(1, seconds // step)
        return values[max(0, i + 1 - points) : i + 1], i + 1 >= points

    recent, covered = window(promotion.stabilization_seconds)
    longer, demotion_covered = window(demotion_window)
    lead = promotion.predictive.lead_seconds
    lookback, lookback_covered = window(promotion.predictive.lookback_seconds)
    predicted = None
    if lead and lookback_covered and len(lookback) > 1:
        slope = (lookback[-1] - lookback[0]) / ((len(lookback) - 1) * step)
        predicted = lookback[-1] + slope * lead
    return SignalReading(
        current=values[i],
        window_min=min(recent),
        window_max=max(longer),
        predicted=predicted,
        covered=covered,
        demotion_covered=demotion_covered,
        age_seconds=0.0,
    )


def simulate(values: Sequence[float], plan: ScalePlan, step: int) -> list[Decision]:
    decisions = []
    for i in range(len(values)):
        now = NOW + timedelta(seconds=i * step)
        signals = snapshot(now, activeUsers=readings_at(values, i, step, plan))
        d = decide(signals, plan, now)
        decisions.append(d)
        if d.moves:
            entry = HistoryEntry(from_=d.current_phase, to=d.target_phase, at=now, reason=d.reason)
            status = plan.status.model_copy(
                update={"phase": d.target_phase, "history": [*plan.status.history, entry][-20:]}
            )
            plan = plan.model_copy(update={"status": status})
    return decisions


windows = st.fixed_dictionaries(
    {
        "promotion": st.fixed_dictionaries(
            {
                "stabilizationSeconds": st.integers(0, 120),
                "cooldownSeconds": st.integers(0, 300),
                "predictive": st.fixed_dictionaries(
                    {"leadSeconds": st.integers(0, 300), "lookbackSeconds": st.integers(30, 300)}
                ),
            }
        ),
        "demotion": st.fixed_dictionaries(
            {"hysteresis": st.floats(0.05, 0.9), "stabilizationSeconds": st.integers(0, 300)}
        ),
    }
)
maybe_value = st.one_of(st.none(), st.just(math.nan), st.floats(0, 3_000_000, allow_nan=False))
readings = st.builds(
    SignalReading,
    current=maybe_value,
    window_min=maybe_value,
    window_max=maybe_value,
    predicted=maybe_value,
    covered=st.booleans(),
    demotion_covered=st.booleans(),
    age_seconds=st.one_of(st.none(), st.floats(0, 600)),
)


@st.composite
def situations(draw: st.DrawFn) -> tuple[PlanSignals | None, ScalePlan, datetime]:
    min_phase = draw(st.integers(1, 4))
    max_phase = draw(st.integers(min_phase, 4))
    policy = {**draw(windows), "minPhase": min_phase, "maxPhase": max_phase}
    policy["paused"] = draw(st.booleans())
    if draw(st.booleans()):
        policy |= {"approval": "Manual", "approvers": ["ops"]}
    phase = draw(st.integers(1, 4))
    ago = draw(st.lists(st.integers(0, 1_000), max_size=3))
    history = [(1, 2, NOW - timedelta(seconds=s)) for s in sorted(ago, reverse=True)]
    approve = draw(st.one_of(st.none(), st.integers(1, 4)))
    annotations = {ANNOTATION_APPROVE: str(approve)} if approve else {}
    plan = make_plan(phase, policy=policy, history=history, annotations=annotations)
    signals = draw(
        st.one_of(
            st.none(),
            st.builds(
                lambda r, age: snapshot(NOW - timedelta(seconds=age), activeUsers=r),
                readings,
                st.integers(0, 300),
            ),
        )
    )
    return signals, plan, NOW


@given(situations())
def test_never_more_than_one_step_and_never_outside_phases(
    situation: tuple[PlanSignals | None, ScalePlan, datetime],
) -> None:
    d = decide(*situation)
    assert abs(d.target_phase - d.current_phase) <= 1
    assert 1 <= d.target_phase <= 4


@given(situations())
def test_never_a_transition_inside_the_cooldown(
    situation: tuple[PlanSignals | None, ScalePlan, datetime],
) -> None:
    signals, plan, now = situation
    policy = plan.spec.policy
    d = decide(signals, plan, now)
    history = plan.status.history
    in_range = policy.min_phase <= d.current_phase <= policy.max_phase
    cooldown = policy.promotion.cooldown_seconds
    if history and in_range and (now - history[-1].at).total_seconds() < cooldown:
        assert not d.moves


@given(situations())
def test_missing_data_never_demotes(
    situation: tuple[PlanSignals | None, ScalePlan, datetime],
) -> None:
    signals, plan, now = situation
    reading = signals.readings.get("activeUsers") if signals else None
    staleness = plan.spec.metrics.staleness_seconds
    usable = (
        signals is not None
        and reading is not None
        and reading.current is not None
        and math.isfinite(reading.current)
        and (reading.age_seconds is None or reading.age_seconds <= staleness)
        and (now - signals.fetched_at).total_seconds() <= staleness
    )
    if not usable:
        assert decide(signals, plan, now).reason != Reason.DEMOTE


@settings(max_examples=50, deadline=None)
@given(
    policy=windows,
    start=st.integers(1, 2),
    step=st.sampled_from([1, 5, 15]),
    band=st.lists(st.floats(0, 1, exclude_max=True), min_size=1, max_size=80),
)
def test_a_signal_oscillating_inside_the_hysteresis_band_never_moves(
    policy: dict[str, Any], start: int, step: int, band: list[float]
) -> None:
    # Prediction off: it acts on a trend by design, and a random band can have one.
    policy["promotion"]["predictive"]["leadSeconds"] = 0
    plan = make_plan(start, policy=policy)
    floor = USERS[1] * (1 - plan.spec.policy.demotion.hysteresis)
    # Anywhere in [floor, threshold): too low to leave phase 1, too high to leave phase 2.
    values = [min(floor + f * (USERS[1] - floor), math.nextafter(USERS[1], 0)) for f in band]
    decisions = simulate(values, plan, step)
    assert not any(d.moves for d in decisions)


@settings(max_examples=50, deadline=None)
@given(
    policy=windows,
    step=st.sampled_from([1, 5, 15]),
    increments=st.lists(st.floats(0, 50_000), min_size=1, max_size=120),
)
def test_a_monotone_rising_load_never_demotes(
    policy: dict[str, Any], step: int, increments: list[float]
) -> None:
    values = []
    total = 0.0
    for inc in increments:
        total += inc
        values.append(total)
    decisions = simulate(values, make_plan(1, policy=policy), step)
    assert not any(d.reason == Reason.DEMOTE for d in decisions)


def test_the_simulator_does_promote_a_rising_load() -> None:
    # Guards the properties above against a simulator that never moves anything.
    values = [float(i * 100) for i in range(200)]
    plan = make_plan(1, policy={"promotion": {"stabilizationSeconds": 30, "cooldownSeconds": 0}})
    decisions = simulate(values, plan, 5)
    assert [d.target_phase for d in decisions if d.moves] == [2]
