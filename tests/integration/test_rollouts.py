"""Rollouts of a new spec.app with each phase's strategy, on a real control plane with a
real Prometheus. The plans are pinned to one phase (minPhase = maxPhase) unless a test
moves them; a release that requests more CPU than any node has never becomes Ready.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from phaseshift.lab.cluster import LocalCluster
from phaseshift.lab.operator_process import OperatorProcess
from phaseshift.lab.plans import PLAN, USERS_FOR_PHASE, World, plan_body
from phaseshift.lab.prometheus import PrometheusServer
from phaseshift.lab.rollouts import (
    UNSCHEDULABLE,
    Background,
    Traffic,
    canary_error_rate,
    deployment,
    image,
    rollout_of,
    selected_colour,
    serving,
    set_app,
)
from phaseshift.lab.wait import wait_for
from phaseshift.transition import not_ready, workload_ready

pytestmark = pytest.mark.integration

V1 = "registry.example/shop:1.0"
V2 = "registry.example/shop:2.0"
V3 = "registry.example/shop:3.0"
V4 = "registry.example/shop:4.0"
# Refused by the API server: a request above its limit.
INVALID = {"requests": {"cpu": "4"}, "limits": {"cpu": "1"}}
ROLES = ("user-service", "data-service", "gateway")


def pinned(prometheus: PrometheusServer, phase: int, **rollout: Any) -> dict[str, Any]:
    body = plan_body(prometheus.url, minPhase=phase, maxPhase=phase)
    body["spec"]["app"] = {"image": V1}
    body["spec"]["rollout"] = rollout
    return body


def generation(dep: dict[str, Any]) -> int:
    return int(dep["metadata"]["generation"])


def cpu_request(dep: dict[str, Any]) -> str:
    return str(dep["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"])


def wait_rollout(world: World, image_: str, state: str, timeout: float = 90.0) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        ro = rollout_of(world)
        return ro if ro.get("image") == image_ and ro.get("state") == state else None

    result: dict[str, Any] = wait_for(
        ended, timeout, f"rollout of {image_} {state}: {rollout_of(world)}"
    )
    return result


def start(world: World, body: dict[str, Any], phase: int) -> None:
    world.users(USERS_FOR_PHASE[phase])
    world.create(body)
    world.wait_phase(phase)
    wait_for(lambda: world.status().get("release"), what="the first release in status")
    # An initial phase is applied in one go: let its workloads come up before measuring.
    wait_for(
        lambda: not not_ready(world.live(), world.rendered(phase)),
        what=f"phase {phase}'s workloads Ready",
    )


# ------------------------------------------------------------------ phase 1


def test_phase1_replaces_the_single_server(
    world: World, operator: OperatorProcess, prometheus: PrometheusServer, cluster: LocalCluster
) -> None:
    start(world, pinned(prometheus, 1), 1)
    set_app(world, V2)
    ro = wait_rollout(world, V2, "Succeeded")
    assert ro["strategy"] == "Recreate"
    app = deployment(world, "app")
    assert app["spec"]["strategy"] == {"type": "Recreate"}
    assert image(app) == V2
    assert world.status()["release"]["app"]["image"] == V2
    assert {"RolloutStarted", "RolloutSucceeded"} <= set(world.events())
    assert world.condition("RolloutInProgress")["reason"] == "Succeeded"
    shown = subprocess.run(
        [sys.executable, "-m", "phaseshift.cli", "status", PLAN, "-n", world.namespace,
         "--kubeconfig", str(cluster.kubeconfig)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert f"rollout     Recreate of {V2}: Succeeded" in shown
    assert f"release     {V2}" in shown

    # Fields that go away go away everywhere: status, release and the pod template.
    set_app(world, V3, {"requests": {"cpu": "300m"}, "limits": {"cpu": "600m"}})
    wait_rollout(world, V3, "Succeeded")
    assert cpu_request(deployment(world, "app")) == "300m"
    set_app(world, V4)
    ro = wait_rollout(world, V4, "Succeeded")
    assert "resources" not in world.status()["release"]["app"]
    assert ro["fromRevision"] != ro["revision"] and "previous" not in ro
    wait_for(lambda: cpu_request(deployment(world, "app")) != "300m", what="the default size back")


# ------------------------------------------------------------------ phase 2


class ColourWatch(Background):
    """Samples the Service's colour and that colour's Deployment until stopped: every
    sample must find the selected colour Ready."""

    def __init__(self, world: World) -> None:
        super().__init__()
        self.world = world
        self.samples: list[tuple[str, bool, str]] = []
        self.unready: list[Any] = []  # what a not-Ready sample saw, to say why

    def step(self) -> None:
        colour = selected_colour(self.world)
        dep = deployment(self.world, f"app-{colour}")
        self.samples.append((colour, serving(dep), image(dep)))
        if not serving(dep):
            self.unready.append((dep["metadata"]["generation"], dep["spec"], dep.get("status")))

    def routed_to_unready(self) -> list[tuple[str, bool, str]]:
        return [s for s in self.samples if not s[1]]


def test_blue_green_switches_only_to_a_ready_colour_and_keeps_the_old_one(
    world: World, operator: OperatorProcess, prometheus: PrometheusServer
) -> None:
    start(world, pinned(prometheus, 2, blueGreen={"graceSeconds": 8}), 2)
    assert selected_colour(world) == "blue"

    with ColourWatch(world) as watch:
        set_app(world, V2)
        wait_for(lambda: rollout_of(world).get("step") == "Grace", what="the switch")
        # The grace period: green serves the new release, blue still runs the old one.
        assert selected_colour(world) == "green"
        blue = deployment(world, "app-blue")
        assert image(blue) == V1 and blue["spec"]["replicas"] == 1
        assert world.status()["liveColour"] == "green"
        wait_rollout(world, V2, "Succeeded")
    assert "previous" not in rollout_of(world)
    assert not watch.routed_to_unready(), watch.routed_to_unready()[:3]
    assert {s[2] for s in watch.samples} == {V1, V2}
    wait_for(lambda: deployment(world, "app-blue")["spec"]["replicas"] == 0, what="blue idle")
    assert image(deployment(world, "app-green")) == V2
    assert "RolloutSwitched" in world.events()

    # A newer release during the grace period ends it and gets a blue-green rollout of its
    # own; going back to the previous release within a grace switches straight back.
    world.patch({"spec": {"rollout": {"blueGreen": {"graceSeconds": 600}}}})
    set_app(world, V3)
    wait_for(
        lambda: rollout_of(world).get("image") == V3 == image(deployment(world, "app-blue")),
        what="V3 on blue",
    )
    wait_for(lambda: rollout_of(world).get("step") == "Grace", what="the switch to V3")
    assert selected_colour(world) == "blue"
    set_app(world, V4)
    wait_for(
        lambda: rollout_of(world).get("image") == V4 and rollout_of(world).get("step") == "Grace",
        what="V4 rolled out blue-green in its turn",
    )
    assert selected_colour(world) == "green"
    assert image(deployment(world, "app-green")) == V4
    blue = deployment(world, "app-blue")
    assert image(blue) == V3 and blue["spec"]["replicas"] == 1
    set_app(world, V3)
    ro = wait_rollout(world, V4, "RolledBack", timeout=30)
    assert "switched the Service back to blue" in ro["message"]
    assert selected_colour(world) == "blue"
    assert world.status()["release"]["app"]["image"] == V3
    wait_for(lambda: deployment(world, "app-green")["spec"]["replicas"] == 0, what="green idle")

    # A release whose pods never become Ready is never routed to, and is rolled back.
    world.patch({"spec": {"rollout": {"rolling": {"progressDeadlineSeconds": 5}}}})
    with ColourWatch(world) as watch:
        set_app(world, V2, UNSCHEDULABLE)
        wait_for(
            lambda: deployment(world, "app-green")["spec"]["replicas"] == 1,
            what="green scaled up with the unschedulable release",
        )
        ro = wait_rollout(world, V2, "RolledBack")
    assert "progress deadline" in ro["message"]
    assert {s[0] for s in watch.samples} == {"blue"}
    assert not watch.routed_to_unready(), watch.unready[:2]
    wait_for(lambda: deployment(world, "app-green")["spec"]["replicas"] == 0, what="green idle")
    assert world.status()["release"]["app"]["image"] == V3
    assert world.condition("RolloutInProgress")["reason"] == "RolledBack"


# ------------------------------------------------------------------ phase 3


def test_rolling_update_rolls_back_when_the_progress_deadline_passes(
    world: World, operator: OperatorProcess, prometheus: PrometheusServer
) -> None:
    start(world, pinned(prometheus, 3, rolling={"progressDeadlineSeconds": 5}), 3)
    set_app(world, V2)
    assert wait_rollout(world, V2, "Succeeded")["strategy"] == "Rolling"
    app = deployment(world, "app")
    assert app["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert app["spec"]["progressDeadlineSeconds"] == 5
    assert image(app) == V2
    good_cpu = cpu_request(app)

    set_app(world, V3, UNSCHEDULABLE)
    wait_for(lambda: image(deployment(world, "app")) == V3, what="the new template applied")
    ro = wait_rollout(world, V3, "RolledBack")
    assert "progress deadline (5s) passed" in ro["message"]
    # Back to the previous template, and the old pods kept serving meanwhile.
    app = wait_for(
        lambda: (d := deployment(world, "app")) and image(d) == V2 and workload_ready(d) and d,
        what="the previous template back and Ready",
    )
    assert cpu_request(app) == good_cpu
    assert world.status()["release"]["app"]["image"] == V2
    assert "RolloutRolledBack" in world.events()

    # A template the API server refuses is rolled back at once, not retried forever.
    set_app(world, V4, INVALID)
    ro = wait_rollout(world, V4, "RolledBack")
    assert "refused" in ro["message"] and "limit" in ro["message"]
    app = deployment(world, "app")
    assert image(app) == V2 and cpu_request(app) == good_cpu


# ------------------------------------------------------------------ phase 4


def canary_plan(prometheus: PrometheusServer, **canary: Any) -> dict[str, Any]:
    spec = {
        "intervalSeconds": 2,
        "iterations": 2,
        "threshold": 2,
        "weightPercent": 20,
        "maxErrorRate": 0.05,
        "maxP95LatencySeconds": 0.5,
        **canary,
    }
    return pinned(prometheus, 4, canary=spec)


@pytest.fixture
def traffic(world: World) -> Iterator[Traffic]:
    with Traffic(world.exporter, world.namespace) as traffic:
        yield traffic


def test_canary_is_promoted_when_healthy_and_rolled_back_when_not(
    world: World, operator: OperatorProcess, prometheus: PrometheusServer, traffic: Traffic
) -> None:
    start(world, canary_plan(prometheus), 4)
    wait_for(lambda: canary_error_rate(world) == 0.0, what="canary metrics in Prometheus")

    set_app(world, V2)
    wait_for(
        lambda: deployment(world, "gateway-canary")["spec"]["replicas"] >= 1,
        what="canaries scaled up",
    )
    for role in ROLES:
        assert image(deployment(world, f"{role}-canary")) == V2
        assert image(deployment(world, role)) == V1
    ro = wait_rollout(world, V2, "Succeeded")
    assert ro["strategy"] == "Canary" and ro["canary"]["iteration"] == 2
    assert world.events().count("CanaryCheckPassed") >= 2
    assert "CanaryPromoted" in world.events()
    for role in ROLES:
        assert image(deployment(world, role)) == V2
    wait_for(
        lambda: all(deployment(world, f"{r}-canary")["spec"]["replicas"] == 0 for r in ROLES),
        what="canaries idle after the promotion",
    )

    # Now a canary that fails half its requests.
    traffic.error_share = 0.5
    wait_for(lambda: (canary_error_rate(world) or 0) > 0.05, what="the error rate to rise")
    generations = {role: generation(deployment(world, role)) for role in ROLES}
    set_app(world, V3)
    ro = wait_rollout(world, V3, "RolledBack")
    assert ro["canary"]["failedChecks"] == 2
    assert "error rate" in ro["message"] or "failed checks" in ro["message"]
    assert world.events().count("CanaryCheckFailed") >= 2
    # The stable track kept serving the previous release throughout: the failed release
    # and its rollback never wrote it (a write would have restarted its pods).
    assert {role: generation(deployment(world, role)) for role in ROLES} == generations
    for role in ROLES:
        assert image(deployment(world, role)) == V2
    # Its pods may still be finishing the promotion's rollout to V2.
    wait_for(
        lambda: all(workload_ready(deployment(world, role)) for role in ROLES),
        what="the stable track Ready on V2",
    )
    wait_for(
        lambda: all(deployment(world, f"{r}-canary")["spec"]["replicas"] == 0 for r in ROLES),
        what="canaries idle after the rollback",
    )
    assert world.status()["release"]["app"]["image"] == V2


def test_a_killed_operator_resumes_the_canary_analysis(
    world: World, operator: OperatorProcess, prometheus: PrometheusServer, traffic: Traffic
) -> None:
    start(world, canary_plan(prometheus, intervalSeconds=3, iterations=3), 4)
    wait_for(lambda: canary_error_rate(world) == 0.0, what="canary metrics in Prometheus")
    set_app(world, V2)
    wait_for(
        lambda: (rollout_of(world).get("canary") or {}).get("iteration", 0) >= 1,
        what="the first passed check",
    )
    before = rollout_of(world)
    operator.kill()
    operator.start()
    ro = wait_rollout(world, V2, "Succeeded")
    assert ro["startedAt"] == before["startedAt"]
    assert ro["canary"]["iteration"] == 3
    assert world.events().count("RolloutStarted") == 1
    for role in ROLES:
        assert image(deployment(world, role)) == V2


# ------------------------------------------------------------------ one at a time


def test_a_phase_transition_waits_for_the_rollout(
    world: World, operator: OperatorProcess, prometheus: PrometheusServer
) -> None:
    body = plan_body(prometheus.url, minPhase=2, maxPhase=3)
    body["spec"]["app"] = {"image": V1}
    # Long enough a grace that the policy asks for phase 3 before it ends.
    body["spec"]["rollout"] = {"blueGreen": {"graceSeconds": 20}}
    start(world, body, 2)
    set_app(world, V2)
    wait_for(lambda: rollout_of(world).get("step") == "Grace", what="the switch")
    world.users(USERS_FOR_PHASE[3])
    waiting = wait_for(
        lambda: world.condition("Transitioning").get("reason") == "WaitingForRollout",
        what=f"the transition to wait; status: {world.status()}",
    )
    assert waiting
    status = world.status()
    assert status["phase"] == 2 and status["targetPhase"] == 3 and not status.get("transition")
    world.wait_phase(3, timeout=120)
    finished = datetime.fromisoformat(rollout_of(world)["finishedAt"])
    moved = datetime.fromisoformat(world.status()["history"][-1]["at"])
    assert moved >= finished


def test_a_rollout_waits_for_the_phase_transition(
    world: World, operator: OperatorProcess, prometheus: PrometheusServer
) -> None:
    body = plan_body(prometheus.url, maxPhase=2)
    body["spec"]["app"] = {"image": V1}
    body["spec"]["rollout"] = {"blueGreen": {"graceSeconds": 0}}
    start(world, body, 1)
    world.users(USERS_FOR_PHASE[2])
    wait_for(lambda: world.status().get("transition"), what="the transition to start")
    set_app(world, V2)
    ro = wait_rollout(world, V2, "Succeeded", timeout=120)
    # It waited, and then used the strategy of the phase the transition reached.
    assert "RolloutWaiting" in world.events()
    assert ro["strategy"] == "BlueGreen"
    assert world.status()["phase"] == 2
    started = datetime.fromisoformat(ro["startedAt"])
    moved = datetime.fromisoformat(world.status()["history"][-1]["at"])
    assert started >= moved
