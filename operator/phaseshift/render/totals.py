"""Total CPU and memory requests of a set of objects, counting replicas."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from phaseshift.render.quantity import cpu_millicores, memory_bytes

_WORKLOADS = ("Deployment", "StatefulSet")


def _replicas(obj: dict[str, Any], autoscaled: dict[str, int]) -> int:
    spec = obj["spec"]
    if "replicas" in spec:
        return int(spec["replicas"])
    # No replicas: an HPA owns the count, and runs at least its minimum.
    return autoscaled.get(obj["metadata"]["name"], 1)


def _requests(container: dict[str, Any]) -> tuple[int, int]:
    requests = container.get("resources", {}).get("requests", {})
    return cpu_millicores(requests.get("cpu", "0")), memory_bytes(requests.get("memory", "0"))


def pod_requests(pod_spec: dict[str, Any]) -> tuple[int, int]:
    """(CPU millicores, memory bytes) the scheduler reserves for one pod: the sum of its
    containers, or its largest init container where that is more (they run one by one,
    before the containers)."""
    running = [_requests(c) for c in pod_spec["containers"]]
    init = [_requests(c) for c in pod_spec.get("initContainers", [])]
    cpu = sum(c for c, _ in running)
    memory = sum(m for _, m in running)
    return max([cpu, *(c for c, _ in init)]), max([memory, *(m for _, m in init)])


def resource_totals(objects: Iterable[dict[str, Any]]) -> tuple[int, int]:
    """(CPU millicores, memory bytes) requested by the long-running workloads
    (Deployments and StatefulSets) at their replica counts; Jobs finish and are left out."""
    objects = list(objects)
    autoscaled = {
        obj["spec"]["scaleTargetRef"]["name"]: int(obj["spec"].get("minReplicas", 1))
        for obj in objects
        if obj["kind"] == "HorizontalPodAutoscaler"
    }
    cpu = memory = 0
    for obj in objects:
        if obj["kind"] not in _WORKLOADS:
            continue
        replicas = _replicas(obj, autoscaled)
        pod_cpu, pod_memory = pod_requests(obj["spec"]["template"]["spec"])
        cpu += replicas * pod_cpu
        memory += replicas * pod_memory
    return cpu, memory
