"""Signals and the policy against a real Prometheus scraping a synthetic exporter."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from phaseshift.api import DEFAULT_SIGNALS, ScalePlan, parse_plan
from phaseshift.lab.exporter import SyntheticExporter
from phaseshift.lab.prometheus import CountingSession, PrometheusServer
from phaseshift.lab.wait import wait_for
from phaseshift.policy import Decision, Reason, decide
from phaseshift.promql import PlanKey, PlanSignals
from phaseshift.signals import fetch_signals

pytestmark = pytest.mark.integration
# Short windows keep the suite quick; the exporter is scraped every second.
WINDOW = 8


@pytest.fixture(scope="module")
def exporter(prometheus: PrometheusServer) -> Iterator[SyntheticExporter]:
    # One target for the module: every test uses plan names of its own.
    job = f"signals-{uuid.uuid4().hex[:8]}"
    with SyntheticExporter() as exporter:
        prometheus.add_target(job, exporter.address)
        yield exporter
        prometheus.remove_targets(job)


def unique(prefix: str) -> str:
    # Prometheus lives for the whole session: fresh names keep tests apart.
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def make_plan(
    prometheus: PrometheusServer,
    name: str,
    namespace: str = "web",
    *,
    phase: int = 1,
    promotion: dict[str, Any] | None = None,
    **spec: Any,
) -> ScalePlan:
    plan = parse_plan(
        {
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "metrics": {"prometheusUrl": prometheus.url, **spec.pop("metrics", {})},
                "policy": {
                    "evaluationIntervalSeconds": 1,
                    "promotion": {"stabilizationSeconds": WINDOW, "cooldownSeconds": 0}
                    | (promotion or {}),
                    "demotion": {"stabilizationSeconds": WINDOW},
                },
                **spec,
            },
        }
    )
    return plan.model_copy(update={"status": plan.status.model_copy(update={"phase": phase})})


def signals_of(plan: ScalePlan) -> PlanSignals:
    return fetch_signals([plan], datetime.now(UTC))[PlanKey.of(plan)]


def tick(plan: ScalePlan) -> tuple[PlanSignals, Decision]:
    now = datetime.now(UTC)
    signals = fetch_signals([plan], now)[PlanKey.of(plan)]
    return signals, decide(signals, plan, now)


def current_users(signals: PlanSignals) -> float | None:
    reading = signals.readings.get("activeUsers")
    return reading.current if reading else None


def test_a_promotion_is_decided_after_the_window_and_not_before(
    prometheus: PrometheusServer, exporter: SyntheticExporter
) -> None:
    plan = make_plan(prometheus, unique("shop"))
    exporter.set_users("web", plan.name, 500)
    signals, decision = wait_for(
        lambda: tick(plan), until=lambda t: t[0].readings["activeUsers"].covered
    )
    assert (current_users(signals), decision.reason) == (500, Reason.HOLD)

    exporter.set_users("web", plan.name, 1_500)
    signals, decision = wait_for(lambda: tick(plan), until=lambda t: current_users(t[0]) == 1_500)
    # The load is over the threshold, but the window still remembers 500.
    assert signals.readings["activeUsers"].window_min == 500
    assert (decision.target_phase, decision.reason) == (1, Reason.HOLD)

    signals, decision = wait_for(lambda: tick(plan), until=lambda t: t[1].moves)
    assert (decision.target_phase, decision.reason) == (2, Reason.PROMOTE)
    assert signals.readings["activeUsers"].window_min == 1_500


def test_a_series_younger_than_the_window_does_not_promote(
    prometheus: PrometheusServer, exporter: SyntheticExporter
) -> None:
    plan = make_plan(prometheus, unique("shop"))
    exporter.set_users("web", plan.name, 5_000)
    signals, decision = wait_for(
        lambda: tick(plan), until=lambda t: t[0].readings["activeUsers"].window_min is not None
    )
    # min_over_time over a window the series covers only partly would say "held".
    assert signals.readings["activeUsers"].window_min == 5_000
    assert not signals.readings["activeUsers"].covered
    assert (decision.target_phase, decision.reason) == (1, Reason.HOLD)
    signals, decision = wait_for(lambda: tick(plan), until=lambda t: t[1].moves)
    assert (decision.target_phase, decision.reason) == (2, Reason.PROMOTE)


def test_prediction_decides_earlier_than_the_threshold_on_a_rising_ramp(
    prometheus: PrometheusServer, exporter: SyntheticExporter
) -> None:
    lookback = 30
    predictive = make_plan(
        prometheus,
        unique("predictive"),
        promotion={"predictive": {"leadSeconds": 20, "lookbackSeconds": lookback}},
    )
    plain = make_plan(prometheus, unique("plain"))
    plans = {"predictive": predictive, "plain": plain}
    for plan in plans.values():
        exporter.set_users("web", plan.name, 710)  # just above the demotion floor of 700
    # predict_linear needs its lookback covered before it says anything.
    wait_for(
        lambda: signals_of(predictive),
        until=lambda s: s.readings["activeUsers"].predicted is not None,
        timeout=lookback * 3,
    )

    stop = threading.Event()

    def ramp() -> None:
        started = time.monotonic()
        while not stop.wait(0.2):
            users = 710 + 15 * (time.monotonic() - started)
            for plan in plans.values():
                exporter.set_users("web", plan.name, users)

    ramping = threading.Thread(target=ramp, daemon=True)
    ramping.start()
    promoted: list[tuple[str, Decision, float | None]] = []

    def decide_the_rest() -> list[tuple[str, Decision, float | None]]:
        """Decides each plan not yet promoted; records the first move of each, in order."""
        now = datetime.now(UTC)
        snapshot = fetch_signals(list(plans.values()), now)
        for label, plan in plans.items():
            if any(label == done for done, _, _ in promoted):
                continue
            decision = decide(snapshot[PlanKey.of(plan)], plan, now)
            if decision.moves:
                promoted.append((label, decision, current_users(snapshot[PlanKey.of(plan)])))
        return promoted

    try:
        wait_for(decide_the_rest, 120, "both plans promoted", until=lambda p: len(p) >= 2)
    finally:
        stop.set()
        ramping.join()

    assert [label for label, _, _ in promoted] == ["predictive", "plain"]
    _, decision, users_then = promoted[0]
    assert decision.reason == Reason.PROMOTE and "predicted" in decision.message
    assert users_then is not None and users_then < 1_000  # before the crossing itself


def test_without_prometheus_the_decision_holds_with_metrics_unavailable(
    prometheus: PrometheusServer, exporter: SyntheticExporter
) -> None:
    plan = make_plan(prometheus, unique("shop"), phase=2)
    exporter.set_users("web", plan.name, 10)
    _, decision = wait_for(lambda: tick(plan), until=lambda t: t[1].moves)
    assert decision.reason == Reason.DEMOTE  # with data, this load demotes

    prometheus.stop()
    try:
        signals, decision = tick(plan)
    finally:
        prometheus.start()
        prometheus.wait_scraped(exporter.address)
    assert signals.readings == {}
    assert "unreachable" in (signals.error or "")
    assert (decision.target_phase, decision.reason) == (2, Reason.METRICS_UNAVAILABLE)
    assert "unreachable" in decision.message


def test_a_series_that_disappears_holds_and_does_not_demote(
    prometheus: PrometheusServer, exporter: SyntheticExporter
) -> None:
    plan = make_plan(prometheus, unique("shop"), phase=2)
    exporter.set_users("web", plan.name, 10)
    wait_for(lambda: tick(plan), until=lambda t: t[0].readings["activeUsers"].demotion_covered)
    exporter.forget("web", plan.name)
    signals, decision = wait_for(lambda: tick(plan), until=lambda t: current_users(t[0]) is None)
    assert current_users(signals) is None
    assert (decision.target_phase, decision.reason) == (2, Reason.METRICS_UNAVAILABLE)


def test_a_promql_error_names_the_query_and_the_servers_message(
    prometheus: PrometheusServer,
) -> None:
    # rate() of an instant vector: Prometheus refuses it with bad_data.
    broken = (
        'sum by (namespace, plan) (rate(app_active_users{namespace="$namespace",plan="$plan"}))'
    )
    plan = make_plan(
        prometheus,
        unique("shop"),
        metrics={"signals": {"broken": broken}},
        phases=[{"phase": 1, "promoteWhen": {"broken": 1}}],
    )
    signals, decision = tick(plan)
    message = signals.errors["broken"]
    assert f'rate(app_active_users{{namespace="web",plan="{plan.name}"}})' in message
    assert "bad_data" in message and "range vector" in message
    assert decision.reason == Reason.METRICS_UNAVAILABLE
    assert "range vector" in decision.message


def test_many_plans_cost_one_query_per_signal_and_each_gets_its_own_values(
    prometheus: PrometheusServer, exporter: SyntheticExporter
) -> None:
    plans = [make_plan(prometheus, unique("p"), namespace=f"ns{i % 2}") for i in range(12)]
    for i, plan in enumerate(plans):
        exporter.set_users(plan.namespace, plan.name, 100 * i)
    session = CountingSession()
    snapshot = wait_for(
        lambda: fetch_signals(plans, datetime.now(UTC), client_factory=session.client),
        until=lambda s: all(current_users(s[PlanKey.of(p)]) is not None for p in plans),
    )
    for i, plan in enumerate(plans):
        assert current_users(snapshot[PlanKey.of(plan)]) == 100 * i
    session.requests = 0
    fetch_signals(plans, datetime.now(UTC), client_factory=session.client)
    assert session.requests == len(DEFAULT_SIGNALS)


def test_a_template_that_drops_the_plan_labels_is_evaluated_per_plan(
    prometheus: PrometheusServer, exporter: SyntheticExporter
) -> None:
    # No `by (namespace, plan)`: one number for the whole group would be wrong.
    total = 'sum(app_active_users{namespace="$namespace",plan="$plan"})'
    signals = {"activeUsers": total}
    plans = [make_plan(prometheus, unique("p"), metrics={"signals": signals}) for _ in range(3)]
    for i, plan in enumerate(plans):
        exporter.set_users("web", plan.name, 10 + i)
    session = CountingSession()
    ungrouped: set[str] = set()

    def fetch() -> dict[PlanKey, PlanSignals]:
        now = datetime.now(UTC)
        return fetch_signals(plans, now, client_factory=session.client, ungrouped=ungrouped)

    snapshot = wait_for(
        fetch, until=lambda s: all(current_users(s[PlanKey.of(p)]) is not None for p in plans)
    )
    assert [current_users(snapshot[PlanKey.of(p)]) for p in plans] == [10, 11, 12]
    assert ungrouped == {total}
    # Remembered: the next tick goes straight to one query per plan.
    session.requests = 0
    fetch()
    assert session.requests == len(plans)


def test_every_default_signal_reads_fresh_data(
    prometheus: PrometheusServer, exporter: SyntheticExporter
) -> None:
    plan = make_plan(prometheus, unique("shop"))
    exporter.set_users("web", plan.name, 42)
    exporter.count_requests("web", plan.name, 100)
    exporter.observe_latency("web", plan.name, 0.04, 20)
    signals = wait_for(
        lambda: signals_of(plan),
        until=lambda s: all(r.current is not None for r in s.readings.values()),
    )
    assert set(signals.readings) == set(DEFAULT_SIGNALS)
    users = signals.readings["activeUsers"]
    assert users.current == 42
    assert users.age_seconds is not None
    assert 0 <= users.age_seconds <= plan.spec.metrics.staleness_seconds
    assert signals.readings["errorRate"].current == 0


def test_a_url_that_is_not_prometheus_is_reported_not_raised(
    prometheus: PrometheusServer, exporter: SyntheticExporter
) -> None:
    # The exporter answers every path with 200 and metrics text, not the query API.
    plan = make_plan(
        prometheus, unique("shop"), metrics={"prometheusUrl": f"http://{exporter.address}"}
    )
    signals, decision = tick(plan)
    assert signals.readings == {}
    assert "did not answer like the Prometheus API" in (signals.error or "")
    assert decision.reason == Reason.METRICS_UNAVAILABLE
