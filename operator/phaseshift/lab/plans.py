"""A ScalePlan under test and the world around it: the API, its objects, its signals.

The integration tests and the benches share it."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from phaseshift.api import GROUP, PLURAL, VERSION, parse_plan
from phaseshift.desired import Desired
from phaseshift.kube import Kube, keyed
from phaseshift.lab.exporter import SyntheticExporter
from phaseshift.lab.wait import wait_for

PLAN = "shop"
USERS_FOR_PHASE = {1: 10, 2: 5_000, 3: 200_000, 4: 2_000_000}


def plan_body(
    prometheus_url: str,
    *,
    name: str = PLAN,
    interval: int = 1,
    window: int = 2,
    **policy: Any,
) -> dict[str, Any]:
    """A ScalePlan evaluated every `interval` seconds that promotes after `window` seconds
    above a threshold; `policy` adds to or replaces fields of spec.policy. Demotion is
    quick too, so that a test which lowers the users sees the plan move back down."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ScalePlan",
        "metadata": {"name": name},
        "spec": {
            "metrics": {"prometheusUrl": prometheus_url},
            "policy": {
                "evaluationIntervalSeconds": interval,
                "promotion": {"stabilizationSeconds": window, "cooldownSeconds": 1},
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
        obj: dict[str, Any] = self.custom.get_namespaced_custom_object(  # type: ignore[assignment]
            GROUP, VERSION, self.namespace, PLURAL, PLAN
        )
        return obj

    def status(self) -> dict[str, Any]:
        return self.plan().get("status") or {}

    def users(self, n: float) -> None:
        self.exporter.set_users(self.namespace, PLAN, n)

    def settled_in(self, phase: int) -> dict[str, Any] | None:
        """The status, when the plan runs `phase` with no transition under way."""
        status = self.status()
        if status.get("phase") == phase and not status.get("transition"):
            return status
        return None

    def wait_phase(self, phase: int, timeout: float = 120.0) -> dict[str, Any]:
        status = wait_for(
            lambda: self.settled_in(phase), timeout, f"phase {phase}; status: {self.status()}"
        )
        assert status is not None  # wait_for returns only a value that holds
        return status

    def condition(self, type_: str) -> dict[str, Any]:
        for c in self.status().get("conditions", []):
            if c["type"] == type_:
                return dict(c)
        return {}

    def expected(self, phase: int) -> set[tuple[str, str, str]]:
        return {k for k, o in keyed(self.rendered(phase)).items() if self.kube.served(o)}

    def rendered(self, phase: int) -> list[dict[str, Any]]:
        """The objects the plan should run in `phase`, the rollout in progress included."""
        plan = parse_plan(self.plan())
        return Desired(self.kube).phase(plan, phase, plan.status)

    def live(self) -> dict[tuple[str, str, str], Any]:
        return keyed(self.kube.list_managed(self.namespace, PLAN))

    def live_keys(self) -> set[tuple[str, str, str]]:
        return set(self.live())

    def events(self) -> list[str]:
        events = (
            client.CoreV1Api(self.kube.api)
            .list_namespaced_event(self.namespace, field_selector=f"involvedObject.name={PLAN}")
            .items
        )
        return [str(e.reason) for e in events if e.involved_object.kind == "ScalePlan"]
