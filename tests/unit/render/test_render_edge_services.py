"""The nginx edge, the phase-4 services behind the gateway, and their canaries."""

from __future__ import annotations

from render_helpers import containers, env_of, find, names

from phaseshift.api import App


def test_edge_caches_static_content_in_front_of_the_app(render) -> None:
    objects = render(3)
    conf = find(objects, "ConfigMap", "shop-edge-config")["data"]["nginx.conf"]
    assert "proxy_cache_path" in conf and "location /static/" in conf
    assert "server shop-app:80" in conf
    assert find(objects, "Deployment", "shop-edge")["spec"]["replicas"] == 2
    assert names(render(2), "ConfigMap").count("shop-edge-config") == 0


def test_phase4_edge_fronts_the_gateway_through_the_entry_service(render) -> None:
    """The edge's origin is the app's entry Service in phases 3 and 4 alike, so a 3 <-> 4
    transition leaves the edge as it is and switches the Service at Route."""
    objects = render(4)
    conf = find(objects, "ConfigMap", "shop-edge-config")["data"]["nginx.conf"]
    assert "server shop-app:80" in conf
    edge = find(objects, "Deployment", "shop-edge")["spec"]
    assert find(render(3), "Deployment", "shop-edge")["spec"] == edge  # no pod rolls
    entry = find(objects, "Service", "shop-app")
    gateway = find(objects, "Deployment", "shop-gateway")
    selected = entry["spec"]["selector"].items()
    assert selected <= gateway["spec"]["template"]["metadata"]["labels"].items()
    assert entry["metadata"]["labels"]["phaseshift.dev/component"] == "app"  # flipped at Route


def test_phase4_replaces_the_monolith_with_services(render) -> None:
    objects = render(4)
    deployments = names(objects, "Deployment")
    assert "shop-app" not in deployments
    for role in ("user-service", "data-service", "gateway"):
        stable = find(objects, "Deployment", f"shop-{role}")
        assert env_of(containers(stable)[0])["APP_ROLE"] == role
        assert find(objects, "HorizontalPodAutoscaler", f"shop-{role}")
        assert find(objects, "PodDisruptionBudget", f"shop-{role}")
        service = find(objects, "Service", f"shop-{role}")["spec"]["selector"]
        assert service.items() <= stable["spec"]["template"]["metadata"]["labels"].items()
    config = find(objects, "ConfigMap", "shop-app-config")["data"]
    assert config["USER_SERVICE_URL"] == "http://shop-user-service"
    assert config["DATA_SERVICE_URL"] == "http://shop-data-service"


def test_canaries_idle_until_a_rollout(render, make_plan) -> None:
    for role in ("user-service", "data-service", "gateway"):
        assert find(render(4), "Deployment", f"shop-{role}-canary")["spec"]["replicas"] == 0
    plan = make_plan(app={"image": "registry.example/shop:1.0"})
    new = App(image="registry.example/shop:2.0", env=[{"name": "FEATURE", "value": "on"}])
    objects = render(4, plan, next_app=new, canary_weight=10)
    canary = find(objects, "Deployment", "shop-gateway-canary")
    stable = find(objects, "Deployment", "shop-gateway")
    # 10% beside the HPA's floor of 3 stable pods rounds up to one canary pod.
    assert canary["spec"]["replicas"] == 1
    assert containers(canary)[0]["image"] == "registry.example/shop:2.0"
    assert {"name": "FEATURE", "value": "on"} in containers(canary)[0]["env"]
    assert containers(stable)[0]["image"] == "registry.example/shop:1.0"
    assert "FEATURE" not in {e["name"] for e in containers(stable)[0]["env"]}
    # The Service reaches both tracks; the PDB guards the stable one.
    service = find(objects, "Service", "shop-gateway")["spec"]["selector"]
    assert service.items() <= canary["spec"]["template"]["metadata"]["labels"].items()


def test_canary_share_grows_with_the_weight(render) -> None:
    new = App(image="registry.example/shop:2.0")
    sizes = [
        find(render(4, next_app=new, canary_weight=w), "Deployment", "shop-gateway-canary")["spec"][
            "replicas"
        ]
        for w in (10, 30, 50)
    ]
    # Beside 3 stable pods: 10% -> 1, 30% -> 2, 50% -> as many as stable.
    assert sizes == [1, 2, 3]


def test_canaries_are_sized_against_the_live_stable_track(render) -> None:
    new = App(image="registry.example/shop:2.0")
    objects = render(4, next_app=new, canary_weight=10, stable_replicas={"gateway": 20})
    # 10% beside 20 stable gateway pods is 3 canary pods; a service whose live count is
    # unknown falls back to the HPA's floor of 3, hence 1.
    assert find(objects, "Deployment", "shop-gateway-canary")["spec"]["replicas"] == 3
    assert find(objects, "Deployment", "shop-user-service-canary")["spec"]["replicas"] == 1
