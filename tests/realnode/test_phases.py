"""Each phase's topology doing its job on the real node, checked by behaviour, not by Ready.

The operator runs as a process against the real node's cluster with the image table
that maps every component to the images built here (`images.component_images`), and a
plan pinned to one phase by minPhase/maxPhase (rule 3 of the policy moves it there
without any metrics). Sizes come from examples/laptop.yaml where a phase needs them.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from integration.plans import PLAN, plan_body

from phaseshift.api import GROUP, PLURAL
from phaseshift.imagemap import ENV_MAP, format_image_map
from phaseshift.lab import images
from phaseshift.lab.cluster import Kubectl, LocalCluster, install_crd, load_images
from phaseshift.lab.operator_process import OperatorProcess
from phaseshift.lab.wait import wait_for

pytestmark = pytest.mark.integration

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
    # Plans carry the operator's finalizer: delete them while the operator still runs.
    kubectl = ["kubectl", "--kubeconfig", str(cluster.kubeconfig), "-n", namespace]
    subprocess.run(
        [*kubectl, "delete", f"{PLURAL}.{GROUP}", "--all", "--timeout=120s"],
        capture_output=True,
        check=False,
    )
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


def test_phase_1_serves_crud_from_sqlite_and_keeps_its_data_across_a_pod_deletion(
    cluster: LocalCluster, kubectl: Kubectl, namespace: str, operator: OperatorProcess
) -> None:
    load_images(cluster, phase_images("app"))
    apply_plan(kubectl, namespace, pinned_plan(1))
    wait_for(lambda: settled(kubectl, namespace, 1), timeout=180, poll=1, what="phase 1 to settle")
    kubectl("-n", namespace, "rollout", "status", f"deployment/{PLAN}-app", "--timeout=180s")
    url = service_url(kubectl, namespace, f"{PLAN}-app")
    served(url)

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
        lambda: request("GET", f"{url}/users/{user['id']}"),
        retry_on=(OSError,),
        timeout=120,
        poll=1,
        what="the new pod to serve",
    )
    assert again["email"] == "grace@example.com"
    assert request("GET", f"{url}/items/{item['id']}")["price_cents"] == 1999


REPO_ROOT = Path(__file__).resolve().parents[2]


def laptop_sizes() -> dict[str, Any]:
    """The sizes of examples/laptop.yaml (everything but its metrics and policy)."""
    import yaml

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


def app_metric(url: str, name: str) -> float:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") or line.startswith(name + " ")
    )


def test_phase_2_replicates_to_its_read_replica_and_caches_in_redis(
    cluster: LocalCluster, kubectl: Kubectl, namespace: str, operator: OperatorProcess
) -> None:
    load_images(
        cluster, phase_images("app", "postgres", "postgres-exporter", "redis", "redis-exporter")
    )
    apply_plan(kubectl, namespace, pinned_plan(2, **laptop_sizes()))
    status = wait_for(
        lambda: settled(kubectl, namespace, 2), timeout=420, poll=2, what="phase 2 to settle"
    )
    colour = status.get("liveColour", "blue")
    for workload in (
        "statefulset/shop-postgres",
        "statefulset/shop-postgres-replica",
        "deployment/shop-redis",
        f"deployment/shop-app-{colour}",
    ):
        kubectl("-n", namespace, "rollout", "status", workload, "--timeout=300s")
    url = service_url(kubectl, namespace, f"{PLAN}-app")
    served(url)

    user = request("POST", f"{url}/users", {"name": "Linus", "email": "linus@example.com"})
    # The row reaches the replica by streaming replication.
    replica = f"{PLAN}-postgres-replica-0"
    wait_for(
        lambda: (
            psql(kubectl, namespace, replica, f"select email from users where id = '{user['id']}'")
            == "linus@example.com"
        ),
        timeout=60,
        poll=1,
        what="the row on the read replica",
    )
    assert psql(kubectl, namespace, replica, "select pg_is_in_recovery()") == "t"
    senders = psql(
        kubectl, namespace, f"{PLAN}-postgres-0", "select state from pg_stat_replication"
    )
    assert "streaming" in senders.split()

    # Repeated reads are served from Redis: the app counts hits, Redis counts keyspace hits.
    before = app_metric(url, "cache_hits_total")
    for _ in range(3):
        assert request("GET", f"{url}/users/{user['id']}")["name"] == "Linus"
    assert app_metric(url, "cache_hits_total") > before
    redis_pod = kubectl(
        "-n",
        namespace,
        "get",
        "pods",
        "-l",
        f"phaseshift.dev/plan={PLAN},phaseshift.dev/workload=redis",
        "-o",
        "name",
    ).stdout.split()[0]
    stats = kubectl(
        "-n", namespace, "exec", redis_pod, "-c", "redis", "--", "redis-cli", "info", "stats"
    ).stdout
    hits = int(
        next(line.split(":")[1] for line in stats.splitlines() if line.startswith("keyspace_hits:"))
    )
    assert hits > 0

    # The Service sends traffic to the live colour only.
    service = json.loads(
        kubectl("-n", namespace, "get", "service", f"{PLAN}-app", "-o", "json").stdout
    )
    assert service["spec"]["selector"]["phaseshift.dev/colour"] == colour
    endpoints = json.loads(
        kubectl(
            "-n",
            namespace,
            "get",
            "endpointslices",
            "-l",
            f"kubernetes.io/service-name={PLAN}-app",
            "-o",
            "json",
        ).stdout
    )
    pods = {e["targetRef"]["name"] for s in endpoints["items"] for e in s.get("endpoints") or []}
    assert pods and all(p.startswith(f"{PLAN}-app-{colour}-") for p in pods), pods
