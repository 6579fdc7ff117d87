"""Benchmark: the shop climbing the phases on the real node, with examples/laptop.yaml.

    .venv/bin/python bench/phases_real.py [--name bench-phases] [--to 4]

The plan starts pinned to phase 1; then minPhase/maxPhase are raised one phase at a time
(the way a user forces a phase, needing no metrics). Prints, per phase N:

- seconds from the bump to phase N working: the plan settled (Ready, no transition),
  every Deployment and StatefulSet rolled out, and the app's entry point (the app's
  Service, phase 4's gateway) reading back a user written in phase 1 and taking a write;
- the CPU and memory its pods use on the node (metrics-server, after a minute idle with
  a trickle of reads), beside what they request.

It reuses a running cluster with a real node of that name, else starts and stops its own.
It prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from phaseshift.lab import cluster as local_cluster
from phaseshift.lab.realshop import (
    PLAN,
    apply_plan,
    laptop_sizes,
    phase_images,
    pinned_plan,
    request,
    running_operator,
    service_url,
    settled,
)
from phaseshift.lab.wait import wait_for
from phaseshift.render.quantity import cpu_millicores, memory_bytes

MiB = 1024**2
EVERY_COMPONENT = (
    "app", "postgres", "postgres-exporter", "redis", "redis-exporter", "rabbitmq", "nginx",
    "kafka", "cassandra",
)  # fmt: skip


def entry_point(kubectl: local_cluster.Kubectl, namespace: str, phase: int) -> str:
    return service_url(kubectl, namespace, f"{PLAN}-gateway" if phase == 4 else f"{PLAN}-app")


def rolled_out(kubectl: local_cluster.Kubectl, namespace: str) -> bool:
    listed = json.loads(
        kubectl("-n", namespace, "get", "deployments,statefulsets", "-o", "json").stdout
    )
    for obj in listed["items"]:
        spec, status = obj["spec"], obj.get("status") or {}
        wanted = spec.get("replicas", 1)
        if status.get("observedGeneration", 0) < obj["metadata"]["generation"]:
            return False
        if status.get("readyReplicas", 0) < wanted or status.get("updatedReplicas", 0) < wanted:
            return False
    return True


def working(
    kubectl: local_cluster.Kubectl, namespace: str, phase: int, user: dict[str, Any]
) -> bool:
    if settled(kubectl, namespace, phase) is None or not rolled_out(kubectl, namespace):
        return False
    url = entry_point(kubectl, namespace, phase)
    try:
        if request("GET", f"{url}/users/{user['id']}")["email"] != user["email"]:
            return False
        request("POST", f"{url}/items", {"owner": user["id"], "name": f"p{phase}"})
    except (OSError, ValueError, KeyError):
        return False
    return True


def usage(kubectl: local_cluster.Kubectl, namespace: str) -> tuple[int, int]:
    """Millicores and bytes the namespace's pods use now, as metrics-server reports."""
    listed = json.loads(
        kubectl("get", "--raw", f"/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods").stdout
    )
    cpu = memory = 0
    for pod in listed["items"]:
        for container in pod["containers"]:
            cpu += cpu_millicores(container["usage"]["cpu"])
            memory += memory_bytes(container["usage"]["memory"])
    return cpu, memory


def requested(kubectl: local_cluster.Kubectl, namespace: str) -> tuple[int, int, int]:
    """Millicores and bytes the namespace's running pods request, and how many pods."""
    listed = json.loads(
        kubectl(
            "-n", namespace, "get", "pods", "--field-selector=status.phase=Running", "-o", "json"
        ).stdout
    )
    cpu = memory = 0
    for pod in listed["items"]:
        for container in pod["spec"]["containers"]:
            asked = (container.get("resources") or {}).get("requests") or {}
            cpu += cpu_millicores(asked.get("cpu", "0"))
            memory += memory_bytes(asked.get("memory", "0"))
    return cpu, memory, len(listed["items"])


def measure(
    kubectl: local_cluster.Kubectl, namespace: str, phase: int, user: dict[str, Any]
) -> str:
    url = entry_point(kubectl, namespace, phase)
    deadline = time.monotonic() + 60
    samples = []
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            request("GET", f"{url}/users/{user['id']}")
        time.sleep(0.5)
        if deadline - time.monotonic() < 20:
            with contextlib.suppress(local_cluster.KubectlFailed):  # no sample yet
                samples.append(usage(kubectl, namespace))
            time.sleep(5)
    cpu_used = max((c for c, _ in samples), default=0)
    memory_used = max((m for _, m in samples), default=0)
    cpu_asked, memory_asked, pods = requested(kubectl, namespace)
    return (
        f"{pods:>4}  {cpu_used:>5}m / {cpu_asked:>5}m  "
        f"{memory_used // MiB:>5} MiB / {memory_asked // MiB:>5} MiB"
    )


def run(cluster: local_cluster.LocalCluster, top: int, timeout: float) -> None:
    kubectl = local_cluster.kubectl_runner(cluster.kubeconfig)
    print("building and loading every phase's images ...", flush=True)
    local_cluster.load_images(cluster, phase_images(*EVERY_COMPONENT))
    namespace = f"bench-phases-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", namespace)
    sizes = laptop_sizes()
    try:
        with running_operator(cluster, namespace, Path(tempfile.mkdtemp())):
            started = time.monotonic()
            apply_plan(kubectl, namespace, pinned_plan(1, **sizes))
            url_ready = wait_for(
                lambda: settled(kubectl, namespace, 1) and rolled_out(kubectl, namespace),
                timeout=timeout, poll=1, what="phase 1",
            )  # fmt: skip
            assert url_ready
            url = entry_point(kubectl, namespace, 1)
            user = wait_for(
                lambda: request("POST", f"{url}/users", {"name": "Ada", "email": "ada@x.org"}),
                timeout=120, poll=1, retry_on=(OSError,), what="phase 1 to take a write",
            )  # fmt: skip
            rows = [(1, time.monotonic() - started, measure(kubectl, namespace, 1, user))]
            print(f"phase 1 working after {rows[0][1]:.0f} s (from the plan's creation)")
            for phase in range(2, top + 1):
                started = time.monotonic()
                kubectl(
                    "-n", namespace, "patch", "scaleplan", PLAN, "--type=merge", "-p",
                    json.dumps({"spec": {"policy": {"minPhase": phase, "maxPhase": phase}}}),
                )  # fmt: skip
                wait_for(
                    lambda p=phase: working(kubectl, namespace, p, user),  # type: ignore[misc]
                    timeout=timeout, poll=2, what=f"phase {phase} working",
                )  # fmt: skip
                took = time.monotonic() - started
                print(f"phase {phase} working {took:.0f} s after the bump", flush=True)
                rows.append((phase, took, measure(kubectl, namespace, phase, user)))
    finally:
        kubectl("delete", "namespace", namespace, "--wait=false", check=False)
    print()
    print("phase  bump -> working  pods  CPU used / requested  memory used / requested")
    for phase, took, figures in rows:
        print(f"{phase:>5}  {took:>13.0f} s  {figures}")
    print("(phase 1's time is from the plan's creation; CPU and memory: the highest of")
    print(" metrics-server's samples over the last 20 s of a minute with a trickle of reads)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="bench-phases")
    parser.add_argument("--to", type=int, default=4, choices=(2, 3, 4))
    parser.add_argument("--timeout", type=float, default=1500)
    args = parser.parse_args()
    existing = local_cluster.LocalCluster(args.name)
    if existing.is_running() and existing.has_real_node():
        run(existing, args.to, args.timeout)
        return
    cluster = local_cluster.up(args.name, nodes=0, real_node=True)
    try:
        run(cluster, args.to, args.timeout)
    finally:
        local_cluster.down(args.name)


if __name__ == "__main__":
    main()
