"""The operator against a real control plane and a real Prometheus.

A synthetic exporter plays the application's metrics; `phaseshift run` runs as its own
process, exactly as a user starts it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from phaseshift.api import GROUP, LABEL_RETAIN, PLURAL, VERSION, parse_plan
from phaseshift.kube import Kube, keyed
from phaseshift.lab.cluster import LocalCluster
from phaseshift.lab.prometheus import PrometheusServer
from phaseshift.render import RenderContext, render_phase
from phaseshift.render.credentials import PASSWORD_KEY, secret_name
from phaseshift.render.scope import Scope

from .exporter import SyntheticExporter
from .operator_process import OperatorProcess

pytestmark = pytest.mark.integration

PLAN = "shop"
USERS_FOR_PHASE = {1: 10, 2: 5_000, 3: 200_000, 4: 2_000_000}


def wait_for(predicate: Callable[[], Any], timeout: float = 90.0, what: object = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def plan_body(prometheus_url: str, **policy: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ScalePlan",
        "metadata": {"name": PLAN},
        "spec": {
            "metrics": {"prometheusUrl": prometheus_url},
            "policy": {
                "evaluationIntervalSeconds": 1,
                "promotion": {"stabilizationSeconds": 2, "cooldownSeconds": 1},
                "demotion": {"stabilizationSeconds": 3, "hysteresis": 0.3},
                **policy,
            },
        },
    }


class World:
    def __init__(self, api: client.ApiClient, namespace: str, exporter: SyntheticExporter) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.kube = Kube(api)
        self.namespace = namespace
        self.exporter = exporter

    def create(self, body: dict[str, Any]) -> None:
        self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, body)

    def patch(self, body: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, PLAN, body
        )

    def plan(self) -> dict[str, Any]:
        obj: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, PLAN
        )
        return obj

    def status(self) -> dict[str, Any]:
        return self.plan().get("status") or {}

    def users(self, n: float) -> None:
        self.exporter.set_users(self.namespace, PLAN, n)

    def wait_phase(self, phase: int, timeout: float = 120.0) -> dict[str, Any]:
        def settled() -> dict[str, Any] | None:
            status = self.status()
            if status.get("phase") == phase and not status.get("transition"):
                return status
            return None

        result: dict[str, Any] = wait_for(
            settled, timeout, f"phase {phase}; status: {self.status()}"
        )
        return result

    def condition(self, type_: str) -> dict[str, Any]:
        for c in self.status().get("conditions", []):
            if c["type"] == type_:
                return dict(c)
        return {}

    def expected(self, phase: int) -> set[tuple[str, str, str]]:
        plan = parse_plan(self.plan())
        name = secret_name(Scope(plan, phase, RenderContext(db_password="")))
        password = self.kube.read_secret_value(self.namespace, name, PASSWORD_KEY) or "unset"
        colour = plan.status.live_colour or "blue"
        objects = render_phase(plan, phase, RenderContext(db_password=password, live_colour=colour))
        return {k for k, o in keyed(objects).items() if self.kube.served(o)}

    def live(self) -> dict[tuple[str, str, str], Any]:
        return keyed(self.kube.list_managed(self.namespace, PLAN))

    def live_keys(self) -> set[tuple[str, str, str]]:
        return set(self.live())

    def events(self) -> list[str]:
        events = client.CoreV1Api(self.kube.api).list_namespaced_event(
            self.namespace, field_selector=f"involvedObject.name={PLAN}"
        ).items
        return [e.reason for e in events if e.involved_object.kind == "ScalePlan"]


@pytest.fixture
def exporter(prometheus: PrometheusServer) -> Iterator[SyntheticExporter]:
    with SyntheticExporter() as exporter:
        prometheus.add_target(f"exporter-{id(exporter)}", exporter.address)
        yield exporter


@pytest.fixture
def operator(cluster: LocalCluster, namespace: str, tmp_path: Path) -> Iterator[OperatorProcess]:
    process = OperatorProcess(cluster.kubeconfig, namespace, tmp_path)
    process.start()
    yield process
    # Plans carry the operator's finalizer: delete them while the operator still runs.
    custom = client.CustomObjectsApi(config.new_client_from_config(str(cluster.kubeconfig)))
    custom.delete_collection_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    wait_for(
        lambda: (
            not custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]
        ),
        what="plans to be deleted",
    )
    process.stop()


@pytest.fixture
def world(
    kube: client.ApiClient, namespace: str, scaleplan_crd: None, exporter: SyntheticExporter
) -> World:
    return World(kube, namespace, exporter)


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
        extra = {k for k in live - expected if world.live()[k]["kind"] != "PersistentVolumeClaim"}
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

    world.users(1)
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
    world.wait_phase(2, timeout=180)
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
    evaluations = operator.metric("phaseshift_evaluations_total")
    wait_for(
        lambda: operator.metric("phaseshift_evaluations_total") >= evaluations + 2, what="two ticks"
    )
    writes = operator.metric("phaseshift_api_writes_total")
    evaluations = operator.metric("phaseshift_evaluations_total")
    wait_for(
        lambda: operator.metric("phaseshift_evaluations_total") >= evaluations + 5,
        what="five ticks",
    )
    assert operator.metric("phaseshift_api_writes_total") == writes


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
    wait_for(
        lambda: (world.status().get("transition") or {}).get("step", 0) >= 1, what="a transition"
    )
    operator.kill()
    interrupted = world.status()["transition"]
    assert interrupted["to"] == 2

    operator.start()
    world.wait_phase(2)
    live = world.live_keys()
    expected = world.expected(2)
    assert expected <= live
    assert not {k for k in live - expected if world.live()[k]["kind"] != "PersistentVolumeClaim"}
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
