"""What the operator does with input it cannot use and with steps that cannot succeed."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes import client

from phaseshift.api import GROUP, PLURAL, VERSION
from phaseshift.kube import Kube
from phaseshift.lab.exporter import SyntheticExporter
from phaseshift.lab.operator_process import OperatorProcess
from phaseshift.lab.plans import PLAN, USERS_FOR_PHASE, World, plan_body
from phaseshift.lab.wait import wait_for
from phaseshift.metrics import OperatorMetrics
from phaseshift.reconcile import Reconciler

pytestmark = pytest.mark.integration


def test_a_stored_plan_that_no_longer_parses_is_reported_and_nothing_is_applied(
    kube: client.ApiClient, namespace: str, scaleplan_crd: None
) -> None:
    custom = client.CustomObjectsApi(kube)
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, plan_body("http://127.0.0.1:1")
    )
    stored: dict[str, Any] = custom.get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, PLAN
    )
    # As if stored under an older, looser schema: the server would refuse this today.
    body = copy.deepcopy(stored)
    body["spec"]["policy"]["minPhase"] = 7
    kube_shell = Kube(kube, OperatorMetrics())

    # Nothing under way: the daemon sleeps until the next evaluation (no quick polls).
    assert Reconciler(kube_shell, kube_shell.metrics).tick(body, None, datetime.now(UTC)) is None

    status = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, PLAN)["status"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False"
    assert ready["reason"] == "InvalidSpec"
    assert "spec.policy.minPhase" in ready["message"]
    assert "phase" not in status
    assert kube_shell.list_managed(namespace, PLAN) == []
    events = client.CoreV1Api(kube).list_namespaced_event(namespace).items
    assert any(e.reason == "InvalidSpec" and e.type == "Warning" for e in events)


def test_a_refused_step_degrades_and_keeps_the_last_good_phase(
    world: World, operator: OperatorProcess, prometheus_url: str, kube: client.ApiClient
) -> None:
    world.users(USERS_FOR_PHASE[1])
    # A long cooldown: no retry of the failed move starts while the test reads status.
    world.create(
        plan_body(prometheus_url, promotion={"stabilizationSeconds": 2, "cooldownSeconds": 600})
    )
    world.wait_phase(1)
    phase_one = world.live_keys()
    # A quota that forbids StatefulSets: phase 2's PostgreSQL cannot be provisioned.
    client.CoreV1Api(kube).create_namespaced_resource_quota(
        world.namespace,
        client.V1ResourceQuota(
            metadata=client.V1ObjectMeta(name="no-statefulsets"),
            spec=client.V1ResourceQuotaSpec(hard={"count/statefulsets.apps": "0"}),
        ),
    )
    world.users(USERS_FOR_PHASE[2])

    degraded = wait_for(
        lambda: world.condition("Degraded").get("status") == "True" and world.condition("Degraded"),
        what="Degraded=True",
    )
    assert degraded["reason"] == "StepFailed"
    assert "statefulsets" in degraded["message"].lower()
    status = world.status()
    assert status["phase"] == 1
    assert not status.get("transition")
    assert world.condition("Ready")["status"] == "False"
    assert phase_one <= world.live_keys()
    assert "TransitionFailed" in world.events()


@pytest.fixture
def prometheus_url(prometheus: Any, exporter: SyntheticExporter) -> str:
    return str(prometheus.url)
