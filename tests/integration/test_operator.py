"""The operator against a real control plane and a real Prometheus.

A synthetic exporter plays the application's metrics; `phaseshift run` runs as its own
process, exactly as a user starts it.
"""

from __future__ import annotations

import time

import pytest

from phaseshift.api import GROUP, LABEL_RETAIN, PLURAL, VERSION
from phaseshift.lab.operator_process import OperatorProcess
from phaseshift.lab.plans import PLAN, USERS_FOR_PHASE, World, plan_body
from phaseshift.lab.prometheus import PrometheusServer
from phaseshift.lab.wait import wait_for

pytestmark = pytest.mark.integration


def test_climbs_through_every_phase_and_comes_back_down(
    world: World, operator: OperatorProcess, prometheus: PrometheusServer
) -> None:
    world.users(USERS_FOR_PHASE[1])
    world.create(plan_body(prometheus.url))
    world.wait_phase(1)
    assert world.live_keys() >= world.expected(1)

    for phase in (2, 3, 4):
        world.users(USERS_FOR_PHASE[phase])
        status = world.wait_phase(phase)
        expected = world.expected(phase)
        live = world.live_keys()
        assert expected <= live, f"phase {phase} is missing {expected - live}"
        extra = {
            k
            for k in live - expected
            if world.live()[k]["kind"] not in ("PersistentVolumeClaim", "Job")
        }
        assert not extra, f"phase {phase} left behind {extra}"
        assert status["history"][-1]["to"] == phase
        assert world.condition("Ready")["status"] == "True"

    reasons = world.events()
    for reason in (
        "TransitionStarted",
        "StepProvision",
        "StepMigrateData",
        "StepSwitchApp",
        "TransitionComplete",
    ):
        assert reason in reasons

    # One phase down at a time: at 1 user the plan would demote on, past phase 3.
    world.users(USERS_FOR_PHASE[3])
    world.wait_phase(3, timeout=180)
    live = world.live()
    retained = {
        k
        for k, o in live.items()
        if (o["metadata"].get("labels") or {}).get(LABEL_RETAIN) == "true"
    }
    stateful_left = retained - world.expected(3)
    assert stateful_left, "a demotion from 4 must retain the stream and NoSQL tiers"
    assert all(
        live[k]["kind"] in ("StatefulSet", "PersistentVolumeClaim", "Secret") for k in stateful_left
    )
    world.users(USERS_FOR_PHASE[2])
    world.wait_phase(2, timeout=180)
    world.users(USERS_FOR_PHASE[1])
    world.wait_phase(1, timeout=180)
    history = world.status()["history"]
    moves = [(h["from"], h["to"]) for h in history]
    assert moves == [(1, 2), (2, 3), (3, 4), (4, 3), (3, 2), (2, 1)]


def test_steady_ticks_write_nothing(
    world: World, operator: OperatorProcess, prometheus: PrometheusServer
) -> None:
    world.users(USERS_FOR_PHASE[1])
    world.create(plan_body(prometheus.url))
    world.wait_phase(1)

    def writes_over(ticks: int) -> float:
        """The writes of at least `ticks` whole ticks from now (a tick counts once it ends)."""
        writes = operator.metric("phaseshift_api_writes_total")
        ended = operator.metric("phaseshift_tick_duration_seconds_count")
        wait_for(
            lambda: operator.metric("phaseshift_tick_duration_seconds_count") > ended + ticks,
            what=f"{ticks} ticks",
        )
        return operator.metric("phaseshift_api_writes_total") - writes

    wait_for(lambda: writes_over(2) == 0, what="the plan to settle")
    assert writes_over(5) == 0


def test_paused_and_max_phase_are_honoured(
    world: World, operator: OperatorProcess, prometheus: PrometheusServer
) -> None:
    world.users(USERS_FOR_PHASE[4])
    world.create(plan_body(prometheus.url, paused=True))
    world.wait_phase(1)
    wait_for(
        lambda: (world.status().get("lastDecision") or {}).get("reason") == "Paused", what="Paused"
    )
    assert world.status()["phase"] == 1

    world.patch({"spec": {"policy": {"paused": False, "maxPhase": 2}}})
    world.wait_phase(2)
    wait_for(
        lambda: (world.status().get("lastDecision") or {}).get("reason") == "AtMaxPhase",
        what="AtMaxPhase",
    )
    assert world.status()["phase"] == 2


def test_manual_approval_waits_for_the_annotation(
    world: World, operator: OperatorProcess, prometheus: PrometheusServer
) -> None:
    world.users(USERS_FOR_PHASE[2])
    world.create(plan_body(prometheus.url, approval="Manual", approvers=["platform-team"]))
    world.wait_phase(1)
    wait_for(
        lambda: world.condition("AwaitingApproval").get("status") == "True", what="AwaitingApproval"
    )
    assert world.status()["phase"] == 1
    world.patch({"metadata": {"annotations": {"phaseshift.dev/approve": "2"}}})
    world.wait_phase(2)


def test_sigkill_mid_transition_resumes_without_orphans(
    world: World, operator: OperatorProcess, prometheus: PrometheusServer
) -> None:
    world.users(USERS_FOR_PHASE[1])
    world.create(plan_body(prometheus.url))
    world.wait_phase(1)
    world.users(USERS_FOR_PHASE[2])
    interrupted = wait_for(
        lambda: (t := world.status().get("transition") or {}).get("step", 0) >= 1 and t,
        what="a transition",
    )
    operator.kill()
    assert interrupted["to"] == 2

    operator.start()
    world.wait_phase(2)
    live = world.live_keys()
    expected = world.expected(2)
    assert expected <= live
    assert not {
        k
        for k in live - expected
        if world.live()[k]["kind"] not in ("PersistentVolumeClaim", "Job")
    }
    assert [(h["from"], h["to"]) for h in world.status()["history"]] == [(1, 2)]


def test_deleting_the_plan_keeps_only_retained_data(
    world: World, operator: OperatorProcess, prometheus: PrometheusServer
) -> None:
    world.users(USERS_FOR_PHASE[2])
    world.create(plan_body(prometheus.url))
    world.wait_phase(2)
    world.custom.delete_namespaced_custom_object(GROUP, VERSION, world.namespace, PLURAL, PLAN)

    def only_data_left() -> bool:
        return all(o["kind"] in ("PersistentVolumeClaim", "Secret") for o in world.live().values())

    wait_for(only_data_left, what="garbage collection")
    left = world.live()
    assert any(o["kind"] == "PersistentVolumeClaim" for o in left.values())
    assert all(not o["metadata"].get("ownerReferences") for o in left.values())


def test_prometheus_outage_holds_the_phase_and_recovers(
    world: World, operator: OperatorProcess, prometheus: PrometheusServer
) -> None:
    world.users(USERS_FOR_PHASE[2])
    world.create(plan_body(prometheus.url))
    world.wait_phase(2)
    prometheus.stop()
    try:
        world.users(USERS_FOR_PHASE[1])
        wait_for(
            lambda: world.condition("MetricsAvailable").get("status") == "False",
            what="MetricsAvailable=False",
        )
        assert "MetricsUnavailable" in world.condition("MetricsAvailable")["reason"]
        time.sleep(5)  # several ticks without data
        assert world.status()["phase"] == 2
    finally:
        prometheus.start()
    wait_for(lambda: world.condition("MetricsAvailable").get("status") == "True", what="recovery")
