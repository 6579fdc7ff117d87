"""spec.exposure: a NodePort or LoadBalancer Service, an Ingress or an HTTPRoute, rendered
only when asked, pointed at the phase's entry (the live colour in phase 2)."""

from __future__ import annotations

from typing import Any

import pytest
from render_helpers import find, names

from phaseshift.api import InvalidSpec, parse_plan

EXPOSING = ("Ingress", "HTTPRoute")


def _exposing(objects: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [
        (o["kind"], o["metadata"]["name"])
        for o in objects
        if o["kind"] in EXPOSING or (o["kind"] == "Service" and o["spec"]["type"] != "ClusterIP")
    ]


def test_by_default_nothing_is_exposed(render) -> None:
    for phase in (1, 2, 3, 4):
        assert _exposing(render(phase)) == []


@pytest.mark.parametrize("kind", ["NodePort", "LoadBalancer"])
def test_the_public_service_follows_the_entry_of_each_phase(render, make_plan, kind) -> None:
    plan = make_plan(exposure={"type": kind, "fromPhase": 1, "nodePort": 30080})
    selectors = {}
    for phase in (1, 2, 3, 4):
        objects = render(phase, plan)
        assert _exposing(objects) == [("Service", "shop-public")]
        public = find(objects, "Service", "shop-public")
        assert public["spec"]["type"] == kind
        assert public["spec"]["ports"] == [
            {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP", "nodePort": 30080}
        ]
        selectors[phase] = public["spec"]["selector"]
    app = {"phaseshift.dev/plan": "shop", "phaseshift.dev/service": "app"}
    edge = {"phaseshift.dev/plan": "shop", "phaseshift.dev/workload": "edge"}
    assert selectors[1] == app
    assert selectors[3] == selectors[4] == edge


def test_phase_2_exposes_only_the_live_colour(render, make_plan) -> None:
    plan = make_plan(exposure={"type": "LoadBalancer"})
    for live in ("blue", "green"):
        objects = render(2, plan, live_colour=live)
        public = find(objects, "Service", "shop-public")
        app = find(objects, "Service", "shop-app")
        assert public["spec"]["selector"]["phaseshift.dev/colour"] == live
        assert public["spec"]["selector"] == app["spec"]["selector"]
        deployment = find(objects, "Deployment", f"shop-app-{live}")
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert public["spec"]["selector"].items() <= labels.items()
        idle = "green" if live == "blue" else "blue"
        idle_labels = find(objects, "Deployment", f"shop-app-{idle}")["spec"]["template"]
        assert not public["spec"]["selector"].items() <= idle_labels["metadata"]["labels"].items()


def test_from_phase_and_the_load_balancer_settings(render, make_plan) -> None:
    plan = make_plan(
        exposure={
            "type": "LoadBalancer",
            "fromPhase": 3,
            "loadBalancerClass": "service.k8s.aws/nlb",
            "annotations": {"service.beta.kubernetes.io/aws-load-balancer-scheme": "internal"},
        }
    )
    assert _exposing(render(2, plan)) == []
    public = find(render(3, plan), "Service", "shop-public")
    assert public["spec"]["loadBalancerClass"] == "service.k8s.aws/nlb"
    assert "nodePort" not in public["spec"]["ports"][0]
    notes = public["metadata"]["annotations"]
    assert notes["service.beta.kubernetes.io/aws-load-balancer-scheme"] == "internal"
    assert public["metadata"]["ownerReferences"][0]["kind"] == "ScalePlan"


def test_an_ingress_routes_to_the_app_then_the_edge(render, make_plan) -> None:
    plan = make_plan(
        exposure={
            "type": "Ingress",
            "ingress": {"className": "nginx", "host": "shop.example.com", "tlsSecretName": "tls"},
        }
    )
    assert _exposing(render(1, plan)) == []
    for phase, backend in ((2, "shop-app"), (3, "shop-edge"), (4, "shop-edge")):
        objects = render(phase, plan)
        assert _exposing(objects) == [("Ingress", "shop-exposed")]
        assert backend in names(objects, "Service")
        spec = find(objects, "Ingress", "shop-exposed")["spec"]
        assert spec["ingressClassName"] == "nginx"
        (rule,) = spec["rules"]
        assert rule["host"] == "shop.example.com"
        (path,) = rule["http"]["paths"]
        assert path["backend"] == {"service": {"name": backend, "port": {"number": 80}}}
        assert spec["tls"] == [{"hosts": ["shop.example.com"], "secretName": "tls"}]


def test_an_http_route_attaches_to_the_named_gateway(render, make_plan) -> None:
    plan = make_plan(
        exposure={
            "type": "HTTPRoute",
            "httpRoute": {
                "parentRefs": [{"name": "public", "namespace": "infra", "sectionName": "https"}],
                "hostnames": ["shop.example.com"],
            },
        }
    )
    objects = render(3, plan)
    assert _exposing(objects) == [("HTTPRoute", "shop-exposed")]
    route = find(objects, "HTTPRoute", "shop-exposed")
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route["spec"]["parentRefs"] == [
        {
            "group": "gateway.networking.k8s.io",
            "kind": "Gateway",
            "name": "public",
            "namespace": "infra",
            "sectionName": "https",
        }
    ]
    assert route["spec"]["hostnames"] == ["shop.example.com"]
    assert route["spec"]["rules"][0]["backendRefs"] == [{"name": "shop-edge", "port": 80}]


@pytest.mark.parametrize(
    ("exposure", "field"),
    [
        ({"type": "Ingress"}, "spec.exposure"),
        ({"type": "HTTPRoute"}, "spec.exposure"),
        ({"type": "HTTPRoute", "httpRoute": {"parentRefs": []}}, "spec.exposure.httpRoute"),
        ({"type": "Ingress", "ingress": {}, "nodePort": 30080}, "spec.exposure"),
        ({"type": "NodePort", "nodePort": 80}, "spec.exposure.nodePort"),
        ({"type": "Route"}, "spec.exposure.type"),
        ({"type": "NodePort", "fromPhase": 5}, "spec.exposure.fromPhase"),
    ],
)
def test_incomplete_exposures_are_refused(exposure: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidSpec) as raised:
        parse_plan({"metadata": {"name": "shop"}, "spec": {"exposure": exposure}})
    assert raised.value.message.startswith(field), raised.value.message


def test_the_app_overlay_leaves_exposure_to_the_operator() -> None:
    # A static Service there selected both blue-green colours; only the operator knows
    # which one is live.
    from pathlib import Path

    import yaml

    overlay = Path(__file__).resolve().parents[3] / "manifests" / "overlays" / "shop"
    listed = yaml.safe_load((overlay / "kustomization.yaml").read_text())["resources"]
    kinds = {yaml.safe_load((overlay / name).read_text())["kind"] for name in listed}
    assert "Service" not in kinds
