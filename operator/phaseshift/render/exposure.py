"""How the app is reached from outside the cluster (spec.exposure), from its fromPhase on.

The entry is the app in phases 1-2 and the edge cache from phase 3 (it proxies to the
app, and in phase 4 to the gateway). NodePort and LoadBalancer render one Service,
`<plan>-public`, whose selector follows the entry: the app's pods, in phase 2 only the
live blue-green colour's (the selector flips with the app Service's at a switch), then
the edge's pods. It is one object in every phase, so its node port and its cloud load
balancer stay while the phase changes. Ingress and HTTPRoute send traffic to the
entry's ClusterIP Service, which already selects the live colour.
"""

from __future__ import annotations

from typing import Any

from phaseshift.render import edge, monolith
from phaseshift.render.scope import LABEL_COLOUR, Scope
from phaseshift.render.service import port

COMPONENT = "exposure"
PUBLIC = "public"
EXPOSED = "exposed"  # the Ingress and the HTTPRoute


def entry_service(scope: Scope) -> str:
    """The ClusterIP Service in front of the phase's entry."""
    return scope.name(edge.SUFFIX if scope.catalog.edge.edge_cache else monolith.SUFFIX)


def entry_selector(scope: Scope) -> dict[str, str]:
    if scope.catalog.edge.edge_cache:
        return scope.selector(edge.SUFFIX)
    extra = {LABEL_COLOUR: scope.ctx.live_colour} if scope.catalog.colours else {}
    return scope.selector_by_service(monolith.SERVICE, **extra)


def _metadata(scope: Scope, suffix: str) -> dict[str, Any]:
    annotations = dict(scope.plan.spec.exposure.annotations)
    return scope.metadata(suffix, COMPONENT, annotations=annotations or None)


def _public_service(scope: Scope) -> dict[str, Any]:
    exposure = scope.plan.spec.exposure
    http = port("http", 80, "http")
    if exposure.node_port is not None:
        http["nodePort"] = exposure.node_port
    spec: dict[str, Any] = {
        "type": exposure.type,
        "selector": entry_selector(scope),
        "ports": [http],
    }
    if exposure.type == "LoadBalancer" and exposure.load_balancer_class:
        spec["loadBalancerClass"] = exposure.load_balancer_class
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(scope, PUBLIC),
        "spec": spec,
    }


def _backend(scope: Scope) -> dict[str, Any]:
    return {"service": {"name": entry_service(scope), "port": {"number": 80}}}


def _ingress(scope: Scope) -> dict[str, Any]:
    settings = scope.plan.spec.exposure.ingress
    assert settings is not None, "the API requires exposure.ingress for type Ingress"
    path = {"path": "/", "pathType": "Prefix", "backend": _backend(scope)}
    rule: dict[str, Any] = {"http": {"paths": [path]}}
    if settings.host:
        rule = {"host": settings.host, **rule}
    spec: dict[str, Any] = {"rules": [rule]}
    if settings.class_name:
        spec = {"ingressClassName": settings.class_name, **spec}
    if settings.tls_secret_name:
        tls: dict[str, Any] = {"secretName": settings.tls_secret_name}
        if settings.host:
            tls = {"hosts": [settings.host], **tls}
        spec["tls"] = [tls]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": _metadata(scope, EXPOSED),
        "spec": spec,
    }


def _http_route(scope: Scope) -> dict[str, Any]:
    settings = scope.plan.spec.exposure.http_route
    assert settings is not None, "the API requires exposure.httpRoute for type HTTPRoute"
    parents = []
    for ref in settings.parent_refs:
        parent: dict[str, Any] = {"group": ref.group, "kind": ref.kind, "name": ref.name}
        if ref.namespace:
            parent["namespace"] = ref.namespace
        if ref.section_name:
            parent["sectionName"] = ref.section_name
        parents.append(parent)
    spec: dict[str, Any] = {"parentRefs": parents}
    if settings.hostnames:
        spec["hostnames"] = list(settings.hostnames)
    spec["rules"] = [
        {
            "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
            "backendRefs": [{"name": entry_service(scope), "port": 80}],
        }
    ]
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": _metadata(scope, EXPOSED),
        "spec": spec,
    }


def objects(scope: Scope) -> list[dict[str, Any]]:
    exposure = scope.plan.spec.exposure
    if exposure.type == "ClusterIP" or scope.phase < exposure.from_phase:
        return []
    if exposure.type in ("NodePort", "LoadBalancer"):
        return [_public_service(scope)]
    if exposure.type == "Ingress":
        return [_ingress(scope)]
    return [_http_route(scope)]
