"""The nginx edge, the phase-4 services behind the gateway, and their canaries."""

from __future__ import annotations

from render_helpers import containers, env_of, find, names


def test_edge_caches_static_content_in_front_of_the_app(render) -> None:
    objects = render(3)
    conf = find(objects, "ConfigMap", "shop-edge-config")["data"]["nginx.conf"]
    assert "proxy_cache_path" in conf and "location /static/" in conf
    assert "server shop-app:80" in conf
    assert find(objects, "Deployment", "shop-edge")["spec"]["replicas"] == 2
    assert names(render(2), "ConfigMap").count("shop-edge-config") == 0


def test_phase4_edge_fronts_the_gateway(render) -> None:
    conf = find(render(4), "ConfigMap", "shop-edge-config")["data"]["nginx.conf"]
    assert "server shop-gateway:80" in conf


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
    plan = make_plan(app={"image": "registry.example/shop:2.0"})
    objects = render(4, plan, stable_image="registry.example/shop:1.0")
    canary = find(objects, "Deployment", "shop-gateway-canary")
    stable = find(objects, "Deployment", "shop-gateway")
    assert canary["spec"]["replicas"] == 1
    assert containers(canary)[0]["image"] == "registry.example/shop:2.0"
    assert containers(stable)[0]["image"] == "registry.example/shop:1.0"
    # The Service reaches both tracks; the PDB guards the stable one.
    service = find(objects, "Service", "shop-gateway")["spec"]["selector"]
    assert service.items() <= canary["spec"]["template"]["metadata"]["labels"].items()
