"""Service-mesh injection, scrape annotations, and the prometheus-operator objects."""

from __future__ import annotations

from render_helpers import containers, find, names, pod_templates


def _app_templates(objects):
    return [t for _, t in pod_templates(objects) if t["spec"]["containers"][0]["name"] == "app"]


def test_no_mesh_marks_without_a_provider(render) -> None:
    for _, template in pod_templates(render(4)):
        assert "linkerd.io/inject" not in template["metadata"]["annotations"]
        assert "sidecar.istio.io/inject" not in template["metadata"]["labels"]


def test_linkerd_and_istio_inject_app_pods(render, make_plan) -> None:
    for phase in (1, 4):
        linkerd = render(phase, make_plan(mesh={"provider": "Linkerd"}))
        istio = render(phase, make_plan(mesh={"provider": "Istio"}))
        for template in _app_templates(linkerd):
            assert template["metadata"]["annotations"]["linkerd.io/inject"] == "enabled"
        for template in _app_templates(istio):
            assert template["metadata"]["labels"]["sidecar.istio.io/inject"] == "true"


def test_jobs_and_data_stores_stay_out_of_the_mesh(render, make_plan) -> None:
    # A sidecar keeps a Job's pod alive after its work is done.
    objects = render(4, make_plan(mesh={"provider": "Linkerd"}))
    for obj in objects:
        if obj["kind"] in ("Job", "StatefulSet"):
            assert "linkerd.io/inject" not in obj["spec"]["template"]["metadata"]["annotations"]


def test_every_pod_template_says_whether_and_where_to_scrape(render) -> None:
    for phase in (1, 2, 3, 4):
        for name, template in pod_templates(render(phase)):
            notes = template["metadata"]["annotations"]
            assert notes["prometheus.io/scrape"] in ("true", "false"), name
            if notes["prometheus.io/scrape"] == "true":
                port = int(notes["prometheus.io/port"])
                assert notes["prometheus.io/path"] == "/metrics"
                declared = {
                    p["containerPort"]
                    for c in template["spec"]["containers"]
                    for p in c.get("ports", [])
                }
                assert port in declared, name


def test_app_and_backing_services_are_scraped(render) -> None:
    objects = render(3)
    for kind, name in (("Deployment", "shop-app"), ("StatefulSet", "shop-postgres"),
                       ("StatefulSet", "shop-redis-cluster"), ("StatefulSet", "shop-rabbitmq")):  # fmt: skip
        notes = find(objects, kind, name)["spec"]["template"]["metadata"]["annotations"]
        assert notes["prometheus.io/scrape"] == "true", name


def test_monitoring_objects_only_in_phase4_and_only_when_enabled(render, make_plan) -> None:
    enabled = make_plan(
        observability={"serviceMonitor": True, "prometheusRule": True, "sloLatencySeconds": 0.3}
    )
    assert names(render(4), "ServiceMonitor") == []
    assert names(render(4), "PrometheusRule") == []
    assert names(render(3, enabled), "ServiceMonitor") == []
    objects = render(4, enabled)
    monitor = find(objects, "ServiceMonitor", "shop-services")
    assert monitor["spec"]["endpoints"][0]["port"] == "http"
    values = monitor["spec"]["selector"]["matchExpressions"][0]["values"]
    assert set(values) == {"user-service", "data-service", "gateway"}
    rules = find(objects, "PrometheusRule", "shop-slo")["spec"]["groups"][0]["rules"]
    latency = next(r for r in rules if "Latency" in r["alert"])
    assert latency["expr"].endswith("> 0.3")
    assert 'namespace="team-a",plan="shop"' in latency["expr"]


def test_worker_pods_are_scraped_on_the_app_port(render, make_plan) -> None:
    objects = render(3, make_plan(app={"port": 9000}))
    worker = find(objects, "Deployment", "shop-worker")
    assert worker["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == "9000"
    assert containers(worker)[0]["ports"][0]["containerPort"] == 9000
