"""What the rollout tests and bench/rollouts.py both need: a plan's Deployments, its
rollout status, and the canary track's metrics kept moving."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from datetime import UTC, datetime
from typing import Any, Self

from phaseshift.api import parse_plan
from phaseshift.lab.exporter import SyntheticExporter
from phaseshift.lab.plans import PLAN, World
from phaseshift.render.scope import LABEL_COLOUR
from phaseshift.signals import fetch_canary

# Accepted by the API server, but no node has room for it: its pods stay Pending.
UNSCHEDULABLE = {"requests": {"cpu": "1000"}, "limits": {"cpu": "1000"}}


def deployment(world: World, name: str) -> dict[str, Any]:
    found = world.kube.get("apps/v1", "Deployment", world.namespace, f"{PLAN}-{name}")
    assert found is not None, f"Deployment {PLAN}-{name} is missing"
    return found


def selected_colour(world: World) -> str:
    """The colour the app's Service selects (phase 2)."""
    service = world.kube.get("v1", "Service", world.namespace, f"{PLAN}-app")
    assert service is not None
    return str(service["spec"]["selector"][LABEL_COLOUR])


def image(dep: dict[str, Any]) -> str:
    return str(dep["spec"]["template"]["spec"]["containers"][0]["image"])


def serving(dep: dict[str, Any]) -> bool:
    """Every pod the Deployment wants is up and Ready: what a Service may route to. (A
    spec change that leaves the pods alone, e.g. progressDeadlineSeconds, does not count.)"""
    want, status = dep["spec"].get("replicas", 1), dep.get("status") or {}
    return bool(
        want > 0
        and (status.get("readyReplicas") or 0) >= want
        and (status.get("availableReplicas") or 0) >= want
    )


def rollout_of(world: World) -> dict[str, Any]:
    return dict(world.status().get("rollout") or {})


def set_app(world: World, image_: str, resources: dict[str, Any] | None = None) -> None:
    world.patch({"spec": {"app": {"image": image_, "resources": resources}}})


def canary_error_rate(world: World) -> float | None:
    return fetch_canary(parse_plan(world.plan()), datetime.now(UTC)).error_rate


class Background(ABC):
    """`step()` every `period` seconds in a thread of its own, while the `with` block
    runs; a subclass says what one step does."""

    period = 0.1

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @abstractmethod
    def step(self) -> None: ...

    def _run(self) -> None:
        while not self._stop.is_set():
            self.step()
            self._stop.wait(self.period)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


class Traffic(Background):
    """Keeps the stable and canary tracks' request and latency series moving; the canary
    fails `error_share` of its requests."""

    period = 0.25

    def __init__(self, exporter: SyntheticExporter, namespace: str) -> None:
        super().__init__()
        self.exporter = exporter
        self.namespace = namespace
        self.error_share = 0.0

    def step(self) -> None:
        exporter, ns = self.exporter, self.namespace
        errors = round(20 * self.error_share)
        for track in ("stable", "canary"):
            share = errors if track == "canary" else 0
            exporter.count_requests(ns, PLAN, 20 - share, "200", track=track)
            if share:
                exporter.count_requests(ns, PLAN, share, "500", track=track)
            exporter.observe_latency(ns, PLAN, 0.05, 5, track=track)
