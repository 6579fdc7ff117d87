"""The Service builder every component uses."""

from __future__ import annotations

from typing import Any

from phaseshift.render.scope import Scope

# The app's entry Service, `<plan>-app`, in every phase: it selects the monolith's pods
# in phases 1-3 and the gateway's in phase 4, so clients and the edge keep one address
# and a transition switches what it selects at Route.
ENTRY_SERVICE = "app"


def entry_service(scope: Scope, selector: dict[str, str]) -> dict[str, Any]:
    return service(scope, ENTRY_SERVICE, "app", selector, [port("http", 80, "http")])


def port(name: str, number: int, target: int | str | None = None) -> dict[str, Any]:
    return {"name": name, "port": number, "targetPort": target or number, "protocol": "TCP"}


def service(
    scope: Scope,
    suffix: str,
    component: str,
    selector: dict[str, str],
    ports: list[dict[str, Any]],
    *,
    headless: bool = False,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "type": "ClusterIP",
        "selector": dict(selector),
        "ports": [dict(p) for p in ports],
    }
    if headless:
        # Stable per-pod DNS for StatefulSet peers; they must find each other before
        # they are Ready (replicas cloning a primary, brokers forming a quorum).
        spec["clusterIP"] = "None"
        spec["publishNotReadyAddresses"] = True
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": scope.metadata(suffix, component),
        "spec": spec,
    }
