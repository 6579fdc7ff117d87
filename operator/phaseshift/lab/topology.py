"""Reads a plan's live topology from the API server for the traffic model.

The app's own environment (the config ConfigMap and Secret the operator renders) says
which backing services it uses, exactly as sample_app.config would read it; Ready
replicas and container CPU say how much of each tier there is. Only what serves
traffic counts: an app Deployment no Service selects (the idle blue-green colour) and
a database the app is not configured for (retained after a demotion) serve nothing.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from typing import Any

from phaseshift.api import LABEL_COMPONENT
from phaseshift.lab.traffic import Topology
from phaseshift.render.quantity import cpu_millicores

# Components whose pods run the application's request handlers (phase 4 splits the
# monolith; its gateway only routes, so it adds a hop, not compute).
APP_COMPONENTS = frozenset({"app", "user-service", "data-service"})
DATABASE_COMPONENTS = frozenset({"database", "nosql"})
QUEUE_COMPONENTS = frozenset({"queue", "stream"})

Obj = Mapping[str, Any]


def _component(obj: Obj) -> str:
    return str((obj["metadata"].get("labels") or {}).get(LABEL_COMPONENT, ""))


def _ready(obj: Obj) -> int:
    status = obj.get("status") or {}
    return int(status.get("ready_replicas") or status.get("readyReplicas") or 0)


def _pod_cores(obj: Obj) -> float:
    # A Python worker uses up to its CPU limit; the request is its floor.
    millicores = 0
    for container in obj["spec"]["template"]["spec"]["containers"]:
        resources = container.get("resources") or {}
        limit = (resources.get("limits") or {}).get("cpu")
        request = (resources.get("requests") or {}).get("cpu")
        millicores += cpu_millicores(str(limit or request or "1"))
    return millicores / 1000


def _selected(template_labels: Mapping[str, str], services: Iterable[Obj]) -> bool:
    for svc in services:
        selector = (svc.get("spec") or {}).get("selector") or {}
        if selector and all(template_labels.get(k) == v for k, v in selector.items()):
            return True
    return False


def _environment(objects: Iterable[Obj]) -> dict[str, str]:
    env: dict[str, str] = {}
    for obj in objects:
        if _component(obj) != "config":
            continue
        if obj["kind"] == "ConfigMap":
            env.update(obj.get("data") or {})
        elif obj["kind"] == "Secret":
            for key, value in (obj.get("data") or {}).items():
                env[key] = base64.b64decode(value).decode()
    return env


def _hpa_max(objects: Iterable[Obj]) -> dict[str, tuple[int, float]]:
    """Deployment name -> (maxReplicas, target utilization) of the HPA that scales it."""
    found: dict[str, tuple[int, float]] = {}
    for obj in objects:
        if obj["kind"] != "HorizontalPodAutoscaler":
            continue
        spec = obj["spec"]
        target = 0.7
        for metric in spec.get("metrics") or []:
            utilization = (metric.get("resource") or {}).get("target", {}).get("averageUtilization")
            if utilization:
                target = utilization / 100
        name = spec.get("scale_target_ref", spec.get("scaleTargetRef", {}))["name"]
        found[name] = (int(spec.get("max_replicas") or spec.get("maxReplicas") or 1), target)
    return found


def topology_of(objects: Iterable[Obj]) -> Topology:
    """The serving topology of one plan's managed objects (as `Kube.list_managed` gives)."""
    objects = list(objects)
    services = [o for o in objects if o["kind"] == "Service"]
    env = _environment(objects)
    hpas = _hpa_max(objects)

    app_cores = autoscale_cores = 0.0
    target = 0.7
    for obj in objects:
        if obj["kind"] != "Deployment" or _component(obj) not in APP_COMPONENTS:
            continue
        labels = obj["spec"]["template"]["metadata"].get("labels") or {}
        if not _selected(labels, services):
            continue
        cores = _pod_cores(obj)
        app_cores += _ready(obj) * cores
        if obj["metadata"]["name"] in hpas:
            max_replicas, target = hpas[obj["metadata"]["name"]]
            autoscale_cores += max_replicas * cores
        else:
            autoscale_cores += _ready(obj) * cores

    def ready_in(components: frozenset[str]) -> int:
        return sum(
            _ready(o)
            for o in objects
            if o["kind"] in ("StatefulSet", "Deployment") and _component(o) in components
        )

    sqlite = env.get("DATABASE_URL", "sqlite").startswith("sqlite")
    return Topology(
        app_cores=app_cores,
        app_autoscale_max_cores=autoscale_cores if autoscale_cores > app_cores else 0.0,
        app_autoscale_target=target,
        cache="REDIS_URL" in env and ready_in(frozenset({"cache"})) > 0,
        edge=ready_in(frozenset({"edge"})) > 0,
        queue=("QUEUE_URL" in env or "KAFKA_BOOTSTRAP" in env) and ready_in(QUEUE_COMPONENTS) > 0,
        sqlite=sqlite,
        db_instances=1 if sqlite else max(1, ready_in(DATABASE_COMPONENTS)),
    )
