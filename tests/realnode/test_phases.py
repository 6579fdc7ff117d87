"""Each phase's topology doing its job on the real node, checked by behaviour, not by Ready.

The operator runs as a process against the real node's cluster with the image table
that maps every component to the images built here (`images.component_images`), and a
plan pinned to one phase by minPhase/maxPhase (rule 3 of the policy moves it there
without any metrics). Sizes come from examples/laptop.yaml where a phase needs them.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from integration.operator_process import OperatorProcess
from integration.plans import PLAN, plan_body, wait_for

from phaseshift.api import GROUP, PLURAL
from phaseshift.imagemap import ENV_MAP, format_image_map
from phaseshift.lab import images
from phaseshift.lab.cluster import LocalCluster, install_crd, load_images

pytestmark = pytest.mark.integration

Kubectl = Callable[..., Any]
# Nothing answers here: the plan's phase comes from minPhase/maxPhase, not from metrics.
NO_PROMETHEUS = "http://127.0.0.1:9"


def phase_images(*components: str) -> list[str]:
    names = images.component_image_names()
    return sorted({names[c] for c in components})


@pytest.fixture
def operator(
    cluster: LocalCluster, namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[OperatorProcess]:
    install_crd(cluster.kubeconfig)
    monkeypatch.setenv(ENV_MAP, format_image_map(images.component_images()))
    process = OperatorProcess(cluster.kubeconfig, namespace, tmp_path)
    process.start()
    yield process
    process.stop()


def pinned_plan(phase: int, **spec: Any) -> dict[str, Any]:
    body = plan_body(NO_PROMETHEUS, minPhase=phase, maxPhase=phase)
    body["spec"].update(spec)
    return body


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


def request(method: str, url: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        url, data=data, method=method, headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as response:
        return json.load(response)


def test_phase_1_serves_crud_from_sqlite_and_keeps_its_data_across_a_pod_deletion(
    cluster: LocalCluster, kubectl: Kubectl, namespace: str, operator: OperatorProcess
) -> None:
    load_images(cluster, phase_images("app"))
    apply_plan(kubectl, namespace, pinned_plan(1))
    wait_for(lambda: settled(kubectl, namespace, 1), timeout=180, poll=1, what="phase 1 to settle")
    kubectl("-n", namespace, "rollout", "status", f"deployment/{PLAN}-app", "--timeout=180s")
    url = service_url(kubectl, namespace, f"{PLAN}-app")

    user = request("POST", f"{url}/users", {"name": "Grace", "email": "grace@example.com"})
    item = request(
        "POST", f"{url}/items", {"owner": user["id"], "name": "lamp", "price_cents": 1999}
    )
    assert request("GET", f"{url}/items/{item['id']}")["name"] == "lamp"

    # The monolith's database is the SQLite file on its PersistentVolumeClaim.
    pod = kubectl(
        "-n",
        namespace,
        "get",
        "pods",
        "-l",
        f"phaseshift.dev/plan={PLAN},phaseshift.dev/workload=app",
        "-o",
        "name",
    ).stdout.split()
    assert len(pod) == 1
    files = kubectl("-n", namespace, "exec", pod[0], "--", "sh", "-c", "ls /data").stdout.split()
    assert any(name.endswith(".db") for name in files), files

    kubectl("-n", namespace, "delete", pod[0], "--wait=true")
    kubectl("-n", namespace, "rollout", "status", f"deployment/{PLAN}-app", "--timeout=180s")
    again = wait_for(
        lambda: _get_or_none(f"{url}/users/{user['id']}"),
        timeout=120,
        poll=1,
        what="the new pod to serve",
    )
    assert again["email"] == "grace@example.com"
    assert request("GET", f"{url}/items/{item['id']}")["price_cents"] == 1999


def _get_or_none(url: str) -> Any:
    try:
        return request("GET", url)
    except OSError:  # the new pod not serving yet
        return None
