"""The shop on the real node: a plan pinned to one phase, the operator that runs it with
the images built here, and how tests and benches reach it.

A plan is pinned by minPhase/maxPhase (rule 3 of the policy moves it there without any
metrics); sizes come from examples/laptop.yaml. Services are reached from the node
itself, through kube-proxy, at their ClusterIPs.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from phaseshift.api import GROUP, PLURAL, VERSION
from phaseshift.imagemap import ENV_MAP, format_image_map
from phaseshift.lab import images
from phaseshift.lab.binaries import REPO_ROOT
from phaseshift.lab.cluster import Kubectl, LocalCluster, install_crd
from phaseshift.lab.operator_process import OperatorProcess
from phaseshift.lab.wait import wait_for

PLAN = "shop"

# Nothing answers here: the plan's phase comes from minPhase/maxPhase, not from metrics.
NO_PROMETHEUS = "http://127.0.0.1:9"


def phase_images(*components: str) -> list[str]:
    names = images.component_image_names()
    return sorted({names[c] for c in components})


def pinned_plan(phase: int, **spec: Any) -> dict[str, Any]:
    """The shop pinned to `phase`, evaluated every second; `spec` adds fields."""
    body: dict[str, Any] = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ScalePlan",
        "metadata": {"name": PLAN},
        "spec": {
            "metrics": {"prometheusUrl": NO_PROMETHEUS},
            "policy": {"evaluationIntervalSeconds": 1, "minPhase": phase, "maxPhase": phase},
        },
    }
    body["spec"].update(spec)
    return body


@contextlib.contextmanager
def running_operator(
    cluster: LocalCluster, namespace: str, workdir: Path
) -> Iterator[OperatorProcess]:
    """The operator as a process, mapping every component to the images built here."""
    install_crd(cluster.kubeconfig)
    previous = os.environ.get(ENV_MAP)
    os.environ[ENV_MAP] = format_image_map(images.component_images())
    process = OperatorProcess(cluster.kubeconfig, namespace, workdir)
    try:
        process.start()
        yield process
    finally:
        # Plans carry the operator's finalizer: delete them while the operator still runs.
        kubectl = ["kubectl", "--kubeconfig", str(cluster.kubeconfig), "-n", namespace]
        subprocess.run(
            [*kubectl, "delete", f"{PLURAL}.{GROUP}", "--all", "--timeout=120s"],
            capture_output=True,
            check=False,
        )
        process.stop()
        if previous is None:
            os.environ.pop(ENV_MAP, None)
        else:
            os.environ[ENV_MAP] = previous


def apply_plan(kubectl: Kubectl, namespace: str, body: dict[str, Any]) -> None:
    kubectl("-n", namespace, "apply", "--server-side", "-f", "-", input=json.dumps(body))


def settled(kubectl: Kubectl, namespace: str, phase: int) -> dict[str, Any] | None:
    plan = json.loads(
        kubectl("-n", namespace, "get", f"{PLURAL}.{GROUP}", PLAN, "-o", "json").stdout
    )
    status = plan.get("status") or {}
    ready = any(
        c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", [])
    )
    if status.get("phase") == phase and not status.get("transition") and ready:
        return status
    return None


def service_url(kubectl: Kubectl, namespace: str, name: str, port_index: int = 0) -> str:
    """The Service's ClusterIP, reachable from the node itself through kube-proxy."""
    service = json.loads(kubectl("-n", namespace, "get", "service", name, "-o", "json").stdout)
    port = service["spec"]["ports"][port_index]["port"]
    return f"http://{service['spec']['clusterIP']}:{port}"


def served(url: str) -> Any:
    """Waits until the Service answers: kube-proxy programs a new endpoint a moment after
    the pod is Ready, and until then the Service refuses connections."""
    return wait_for(
        lambda: request("GET", f"{url}/readyz"),
        timeout=60,
        what=f"{url} to answer",
        retry_on=(OSError,),
    )


def request(method: str, url: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        url, data=data, method=method, headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as response:
        return json.load(response)


def laptop_sizes() -> dict[str, Any]:
    """The sizes of examples/laptop.yaml (everything but its metrics and policy)."""
    spec = yaml.safe_load((REPO_ROOT / "examples" / "laptop.yaml").read_text())["spec"]
    return {key: value for key, value in spec.items() if key not in ("metrics", "policy", "app")}


def psql(kubectl: Kubectl, namespace: str, pod: str, sql: str) -> str:
    """A query as the database owner over the pod's own socket (trusted locally)."""
    return str(
        kubectl(
            "-n", namespace, "exec", pod, "-c", "postgres", "--",
            "psql", "--host=/var/run/postgresql", "--username=app", "--dbname=app",
            "--tuples-only", "--no-align", "-c", sql,
        ).stdout.strip()
    )  # fmt: skip


def metric_sum(text: str, name: str, **labels: str) -> float | None:
    """The sum of a metric's samples in Prometheus' text format, of those carrying every
    label given; None if it has none."""
    wanted = [f'{key}="{value}"' for key, value in labels.items()]
    values = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if (line.startswith(name + "{") or line.startswith(name + " "))
        and all(label in line for label in wanted)
    ]
    return sum(values) if values else None


def app_metric(url: str, name: str, **labels: str) -> float:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        return metric_sum(response.read().decode(), name, **labels) or 0.0


def pod_metric(
    kubectl: Kubectl, namespace: str, pod: str, port: int, name: str, **labels: str
) -> float | None:
    """A metric a pod serves at :port/metrics, read through the API server's pod proxy
    (the way Prometheus is not needed to see what an exporter exports)."""
    text = kubectl(
        "get", "--raw", f"/api/v1/namespaces/{namespace}/pods/{pod}:{port}/proxy/metrics"
    ).stdout
    return metric_sum(text, name, **labels)


def pods(kubectl: Kubectl, namespace: str, workload: str) -> list[str]:
    """The names of a workload's pods (without the `pod/` prefix)."""
    return kubectl(
        "-n", namespace, "get", "pods",
        "-l", f"phaseshift.dev/plan={PLAN},phaseshift.dev/workload={workload}",
        "-o", "jsonpath={.items[*].metadata.name}",
    ).stdout.split()  # fmt: skip


def get(kubectl: Kubectl, namespace: str, kind: str, name: str) -> dict[str, Any]:
    return dict(json.loads(kubectl("-n", namespace, "get", kind, name, "-o", "json").stdout))


def delete_pods(kubectl: Kubectl, namespace: str, *which: str, timeout: float = 300) -> None:
    """Deletes pods (names, or `-l selector`) and returns once those pods are gone; their
    StatefulSet or Deployment may already run new pods of the same names. Polled by uid:
    `kubectl delete --wait` can miss the deletion on its watch and wait forever."""
    doomed = _pod_uids(kubectl, namespace, *which)
    kubectl("-n", namespace, "delete", "pods", *which, "--wait=false")
    wait_for(
        lambda: not doomed & _pod_uids(kubectl, namespace),
        timeout=timeout,
        poll=1,
        what=f"pods {' '.join(which)} to be gone",
    )


def _pod_uids(kubectl: Kubectl, namespace: str, *which: str) -> set[str]:
    listed = json.loads(kubectl("-n", namespace, "get", "pods", *which, "-o", "json").stdout)
    return {pod["metadata"]["uid"] for pod in listed.get("items", [listed])}
