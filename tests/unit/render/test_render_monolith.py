"""The app of phases 1-3 and each phase's deploy strategy."""

from __future__ import annotations

import base64

from render_helpers import containers, env_of, find, names

from phaseshift.api import App
from phaseshift.render.quantity import cpu_millicores, memory_bytes


def _app(objects, name="shop-app"):
    return find(objects, "Deployment", name)


def test_phase1_is_one_replica_recreated_with_sqlite_mounted(render) -> None:
    objects = render(1)
    app = _app(objects)
    assert app["spec"]["replicas"] == 1
    assert app["spec"]["strategy"] == {"type": "Recreate"}
    pod = app["spec"]["template"]["spec"]
    claims = [
        v["persistentVolumeClaim"]["claimName"]
        for v in pod["volumes"]
        if "persistentVolumeClaim" in v
    ]
    assert claims == ["shop-sqlite"]
    mounts = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert "/data" in mounts
    assert names(objects, "HorizontalPodAutoscaler") == []


def test_phase1_after_a_demotion_keeps_the_app_on_the_postgresql_primary(render) -> None:
    """Once the data lives in PostgreSQL, phase 1 is one app server beside the retained
    primary: no SQLite file (it lacks every write made since), no replica running."""
    objects = render(1, data_tier="PostgreSQL")
    app = _app(objects)
    assert app["spec"]["replicas"] == 1
    pod = app["spec"]["template"]["spec"]
    assert not [v for v in pod.get("volumes") or [] if "persistentVolumeClaim" in v]
    assert "shop-sqlite" not in names(objects, "PersistentVolumeClaim")
    values = {
        key: base64.b64decode(value).decode()
        for key, value in find(objects, "Secret", "shop-app-secret")["data"].items()
    }
    assert "shop-postgres-rw" in values["DATABASE_URL"]
    assert "READ_REPLICA_URLS" not in values
    assert find(objects, "StatefulSet", "shop-postgres")["spec"]["replicas"] == 1
    # The replica keeps its claim and costs nothing; a promotion scales it up again.
    assert find(objects, "StatefulSet", "shop-postgres-replica")["spec"]["replicas"] == 0
    assert not [n for n in names(objects, "StatefulSet") if "redis" in n]
    # Other phases run as they always do.
    for phase in (2, 3, 4):
        assert render(phase, data_tier="PostgreSQL") == render(phase)


def test_phase2_is_larger_than_phase1(render) -> None:
    small = _app(render(1))["spec"]["template"]["spec"]["containers"][0]["resources"]
    large = find(render(2), "Deployment", "shop-app-blue")["spec"]["template"]["spec"][
        "containers"
    ][0]
    large = large["resources"]
    for group in ("requests", "limits"):
        assert cpu_millicores(large[group]["cpu"]) > cpu_millicores(small[group]["cpu"])
        assert memory_bytes(large[group]["memory"]) > memory_bytes(small[group]["memory"])


def test_phase2_blue_green_serves_the_live_colour_only(render) -> None:
    for live, idle in (("blue", "green"), ("green", "blue")):
        objects = render(2, live_colour=live)
        assert _app(objects, f"shop-app-{live}")["spec"]["replicas"] == 1
        assert _app(objects, f"shop-app-{idle}")["spec"]["replicas"] == 0
        selector = find(objects, "Service", "shop-app")["spec"]["selector"]
        assert selector["phaseshift.dev/colour"] == live
        live_labels = _app(objects, f"shop-app-{live}")["spec"]["template"]["metadata"]["labels"]
        idle_labels = _app(objects, f"shop-app-{idle}")["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= live_labels.items()
        assert not selector.items() <= idle_labels.items()


def test_phase2_rollout_prepares_the_idle_colour_with_the_new_release(render, make_plan) -> None:
    plan = make_plan(app={"image": "registry.example/shop:1.0"})
    new = App(image="registry.example/shop:2.0", resources={"requests": {"cpu": "3"}})
    objects = render(2, plan, live_colour="blue", next_app=new)
    blue, green = _app(objects, "shop-app-blue"), _app(objects, "shop-app-green")
    assert containers(blue)[0]["image"] == "registry.example/shop:1.0"
    assert containers(green)[0]["image"] == "registry.example/shop:2.0"
    assert containers(green)[0]["resources"]["requests"]["cpu"] == "3"
    assert containers(blue)[0]["resources"]["requests"]["cpu"] != "3"
    assert green["spec"]["replicas"] == blue["spec"]["replicas"] == 1
    # Traffic stays on the live colour until the switch.
    assert (
        find(objects, "Service", "shop-app")["spec"]["selector"]["phaseshift.dev/colour"] == "blue"
    )


def test_phase3_rolls_without_losing_capacity_and_autoscales(render) -> None:
    objects = render(3)
    app = _app(objects)
    assert app["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    # The HPA owns the replica count; applying one would fight it on every reconcile.
    assert "replicas" not in app["spec"]
    hpa = find(objects, "HorizontalPodAutoscaler", "shop-app")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "shop-app"
    assert hpa["spec"]["minReplicas"] >= 3
    pdb = find(objects, "PodDisruptionBudget", "shop-app")
    assert pdb["spec"]["selector"]["matchLabels"] == app["spec"]["selector"]["matchLabels"]
    spread = app["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in spread} == {
        "topology.kubernetes.io/zone",
        "kubernetes.io/hostname",
    }


def test_overrides_win_over_the_catalog(render, make_plan) -> None:
    plan = make_plan(
        overrides=[
            {"phase": 1, "appReplicas": 2, "appResources": {"requests": {"cpu": "300m"}}},
            {
                "phase": 3,
                "hpa": {"minReplicas": 5, "maxReplicas": 9, "targetCPUUtilizationPercentage": 55},
            },
        ]
    )
    app = _app(render(1, plan))
    assert app["spec"]["replicas"] == 2
    assert containers(app)[0]["resources"]["requests"]["cpu"] == "300m"
    hpa = find(render(3, plan), "HorizontalPodAutoscaler", "shop-app")["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (5, 9)
    assert hpa["metrics"][0]["resource"]["target"]["averageUtilization"] == 55


def test_the_hpa_scales_up_at_once_and_down_slowly(render) -> None:
    for phase, name in ((3, "shop-app"), (4, "shop-user-service"), (4, "shop-gateway")):
        behavior = find(render(phase), "HorizontalPodAutoscaler", name)["spec"]["behavior"]
        up, down = behavior["scaleUp"], behavior["scaleDown"]
        assert up["stabilizationWindowSeconds"] == 0
        assert up["selectPolicy"] == "Max"
        assert {(p["type"], p["value"], p["periodSeconds"]) for p in up["policies"]} == {
            ("Percent", 100, 15),
            ("Pods", 4, 15),
        }
        assert down["stabilizationWindowSeconds"] == 300
        assert down["policies"] == [{"type": "Percent", "value": 50, "periodSeconds": 60}]


def test_a_behavior_override_changes_only_the_fields_it_sets(render, make_plan) -> None:
    plan = make_plan(
        overrides=[
            {
                "phase": 3,
                "hpa": {
                    "behavior": {
                        "scaleUp": {"stabilizationWindowSeconds": 30},
                        "scaleDown": {
                            "selectPolicy": "Min",
                            "policies": [
                                {"type": "Pods", "value": 1, "periodSeconds": 120},
                                {"type": "Percent", "value": 10, "periodSeconds": 120},
                            ],
                        },
                    }
                },
            }
        ]
    )
    behavior = find(render(3, plan), "HorizontalPodAutoscaler", "shop-app")["spec"]["behavior"]
    default = find(render(3), "HorizontalPodAutoscaler", "shop-app")["spec"]["behavior"]
    assert behavior["scaleUp"] == {**default["scaleUp"], "stabilizationWindowSeconds": 30}
    assert behavior["scaleDown"] == {
        "stabilizationWindowSeconds": 300,
        "selectPolicy": "Min",
        "policies": [
            {"type": "Pods", "value": 1, "periodSeconds": 120},
            {"type": "Percent", "value": 10, "periodSeconds": 120},
        ],
    }
    # Another phase's HPAs keep the defaults.
    assert (
        find(render(4, plan), "HorizontalPodAutoscaler", "shop-gateway")["spec"]["behavior"]
        == default
    )


def test_spec_app_resources_never_shrink_the_vertical_phase(render, make_plan) -> None:
    plan = make_plan(app={"resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}})
    assert containers(_app(render(1, plan)))[0]["resources"]["requests"]["cpu"] == "100m"
    phase2 = containers(_app(render(2, plan), "shop-app-blue"))[0]["resources"]["requests"]
    assert cpu_millicores(phase2["cpu"]) > 100


def test_app_containers_are_probed_and_locked_down(render) -> None:
    for phase in (1, 2, 3, 4):
        for obj in render(phase):
            if obj["kind"] != "Deployment" or containers(obj)[0]["name"] != "app":
                continue
            app = containers(obj)[0]
            security = app["securityContext"]
            assert security["runAsNonRoot"] is True
            assert security["readOnlyRootFilesystem"] is True
            assert security["allowPrivilegeEscalation"] is False
            assert security["capabilities"] == {"drop": ["ALL"]}
            assert security["seccompProfile"] == {"type": "RuntimeDefault"}
            # Workers and event consumers serve only /metrics.
            if env_of(app).get("APP_ROLE") not in (None, "worker", "consumer"):
                assert app["livenessProbe"]["httpGet"]["path"] == "/healthz"
                assert app["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_plan_env_is_passed_to_the_app(render, make_plan) -> None:
    plan = make_plan(app={"env": [{"name": "FEATURE_X", "value": "on"}]})
    env = containers(_app(render(1, plan)))[0]["env"]
    assert {"name": "FEATURE_X", "value": "on"} in env


def test_each_track_listens_on_its_own_release_port(render, make_plan) -> None:
    plan = make_plan(app={"image": "registry.example/shop:1.0", "port": 8080})
    objects = render(2, plan, live_colour="blue", next_app=App(image="x/shop:2", port=9090))
    for colour, port in (("blue", "8080"), ("green", "9090")):
        container = containers(_app(objects, f"shop-app-{colour}"))[0]
        assert {"name": "PORT", "value": port} in container["env"]
        assert container["ports"][0]["containerPort"] == int(port)


def test_the_plans_env_wins_and_names_stay_unique(render, make_plan) -> None:
    plan = make_plan(
        app={"env": [{"name": "APP_ROLE", "value": "custom"}, {"name": "A", "value": "1"}]}
    )
    env = containers(_app(render(1, plan)))[0]["env"]
    names = [e["name"] for e in env]
    assert len(names) == len(set(names))
    assert {"name": "APP_ROLE", "value": "custom"} in env
