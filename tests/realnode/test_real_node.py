"""Pods that really run: the sample app served over Service DNS and a NodePort, logs,
exec and port-forward through the kubelet, a volume that outlives its pod, a Job's
output, and an HPA fed by metrics-server — all on the real node."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request
from typing import Any

import pytest
import yaml

from phaseshift.lab.cluster import Kubectl, LocalCluster
from phaseshift.lab.wait import wait_for

pytestmark = pytest.mark.integration

APP_PORT = 8080


def apply(kubectl: Kubectl, namespace: str, *objects: dict[str, Any]) -> None:
    kubectl("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump_all(objects))


def app_container(image: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": "app",
        "image": image,
        "imagePullPolicy": "Never",
        "command": ["python", "-m", "sample_app", "serve"],
        "env": [
            {"name": "PORT", "value": str(APP_PORT)},
            {"name": "DATABASE_URL", "value": "sqlite:////data/app.db"},
        ],
        "ports": [{"containerPort": APP_PORT}],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": APP_PORT}, "periodSeconds": 1},
        "resources": {"requests": {"cpu": "100m", "memory": "96Mi"}, "limits": {"memory": "256Mi"}},
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
        **extra,
    }


def web(image: str) -> list[dict[str, Any]]:
    labels = {"app": "web"}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [app_container(image)],
                    "volumes": [{"name": "data", "emptyDir": {}}],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {
            "type": "NodePort",
            "selector": labels,
            "ports": [{"port": 80, "targetPort": APP_PORT}],
        },
    }
    return [deployment, service]


def job(
    name: str, image: str, script: str, volumes: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "run",
        "image": image,
        "imagePullPolicy": "Never",
        "command": ["python", "-c", script],
    }
    if volumes:
        container["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [container],
                    "volumes": volumes or [],
                }
            },
        },
    }


def job_output(kubectl: Kubectl, namespace: str, name: str) -> str:
    """The log of a Job that completed; a failed Job fails the test with its log."""

    def finished() -> str | None:
        status = json.loads(kubectl("-n", namespace, "get", "job", name, "-o", "json").stdout)[
            "status"
        ]
        if status.get("succeeded"):
            return "Complete"
        return "Failed" if status.get("failed") else None

    outcome = wait_for(finished, timeout=120, poll=0.5, what=f"job {name} to finish")
    log = kubectl("-n", namespace, "logs", f"job/{name}").stdout
    assert outcome == "Complete", f"job {name} failed:\n{log}"
    return log


def http_get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read().decode()


@pytest.fixture
def web_app(kubectl: Kubectl, namespace: str, sample_app_image: str) -> str:
    apply(kubectl, namespace, *web(sample_app_image))
    kubectl("-n", namespace, "rollout", "status", "deployment/web", "--timeout=120s")
    return namespace


def test_app_serves_another_pod_by_service_name_and_the_host_by_node_port(
    cluster: LocalCluster, kubectl: Kubectl, web_app: str, sample_app_image: str
) -> None:
    namespace = web_app
    # Another pod writes and reads back through the Service's DNS name (CoreDNS, kube-proxy).
    url = f"http://web.{namespace}.svc.cluster.local"
    script = (
        "import json, urllib.request as u\n"
        f"req = u.Request('{url}/users', data=json.dumps({{'name': 'ada', 'email': 'ada@example.com'}}).encode(),"
        " headers={'content-type': 'application/json'}, method='POST')\n"
        "user = json.load(u.urlopen(req, timeout=10))\n"
        f"print('read-back', json.load(u.urlopen('{url}/users/%s' % user['id'], timeout=10))['name'])\n"
    )
    apply(kubectl, namespace, job("client", sample_app_image, script))
    assert "read-back ada" in job_output(kubectl, namespace, "client")

    service = json.loads(kubectl("-n", namespace, "get", "service", "web", "-o", "json").stdout)
    node_port = service["spec"]["ports"][0]["nodePort"]
    status, body = http_get(f"http://{cluster.network.node_ip}:{node_port}/users")
    assert status == 200
    assert "ada" in body


def test_logs_exec_and_port_forward_reach_the_container(
    cluster: LocalCluster, kubectl: Kubectl, web_app: str
) -> None:
    namespace = web_app
    exec_result = kubectl(
        "-n",
        namespace,
        "exec",
        "deploy/web",
        "--",
        "python",
        "-c",
        "import os; print(os.getpid(), 6 * 7)",
    )
    assert exec_result.stdout.split()[1] == "42"

    forward = subprocess.Popen(
        ["kubectl", "--kubeconfig", str(cluster.kubeconfig), "-n", namespace, "port-forward", "deploy/web", f":{APP_PORT}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert forward.stdout is not None
        line = forward.stdout.readline()
        match = re.search(r"127\.0\.0\.1:(\d+)", line)
        assert match, f"port-forward printed {line!r}"
        status, _ = http_get(f"http://127.0.0.1:{match.group(1)}/healthz")
        assert status == 200
    finally:
        forward.terminate()
        forward.wait(timeout=10)

    # What the container writes to its standard output is what `kubectl logs` reads back
    # through the kubelet.
    marker = f"marker-{namespace}"
    kubectl(
        "-n", namespace, "exec", "deploy/web", "--", "sh", "-c", f"echo {marker} > /proc/1/fd/1"
    )
    wait_for(
        lambda: marker in kubectl("-n", namespace, "logs", "deploy/web").stdout,
        timeout=30,
        what="the container's output in kubectl logs",
    )


def test_a_volume_outlives_its_pod(kubectl: Kubectl, namespace: str, sample_app_image: str) -> None:
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "64Mi"}}},
    }
    volume = [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]
    apply(kubectl, namespace, claim)
    write = "import os, uuid; t = uuid.uuid4().hex; open('/data/token', 'w').write(t); print('wrote', t, os.getuid())"
    apply(kubectl, namespace, job("write", sample_app_image, write, volume))
    written = job_output(kubectl, namespace, "write").split()[1]
    kubectl("-n", namespace, "delete", "job", "write", "--wait=true")
    wait_for(
        lambda: (
            not kubectl(
                "-n", namespace, "get", "pods", "-l", "job-name=write", "-o", "name"
            ).stdout.strip()
        ),
        what="the writing pod to be deleted",
    )
    apply(
        kubectl,
        namespace,
        job("read", sample_app_image, "print('read', open('/data/token').read())", volume),
    )
    assert job_output(kubectl, namespace, "read").split() == ["read", written]


def test_a_job_runs_its_command(kubectl: Kubectl, namespace: str, sample_app_image: str) -> None:
    script = "import platform, sys; print('sum', sum(range(1, 101))); print('python', platform.python_version()); sys.exit(0)"
    apply(kubectl, namespace, job("count", sample_app_image, script))
    out = job_output(kubectl, namespace, "count")
    assert "sum 5050" in out
    assert re.search(r"python 3\.\d+", out)
    failing = job("fail", sample_app_image, "import sys; print('bye'); sys.exit(3)")
    apply(kubectl, namespace, failing)
    kubectl("-n", namespace, "wait", "--for=condition=Failed", "job/fail", "--timeout=120s")
    pod = json.loads(
        kubectl("-n", namespace, "get", "pods", "-l", "job-name=fail", "-o", "json").stdout
    )["items"][0]
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 3


def test_an_hpa_reads_cpu_from_metrics_server(kubectl: Kubectl, web_app: str) -> None:
    namespace = web_app
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 1,
            "maxReplicas": 2,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}],
        },
    }  # fmt: skip
    apply(kubectl, namespace, hpa)

    def cpu_seen() -> int | None:
        status = json.loads(kubectl("-n", namespace, "get", "hpa", "web", "-o", "json").stdout).get(
            "status", {}
        )
        for metric in status.get("currentMetrics") or []:
            current = metric.get("resource", {}).get("current", {})
            if metric.get("resource", {}).get("name") == "cpu" and "averageUtilization" in current:
                return int(current["averageUtilization"]) + 1  # 0% is a reading too
        return None

    assert wait_for(cpu_seen, timeout=150, poll=2, what="the HPA to read the pods' CPU") >= 1
    top = kubectl("-n", namespace, "top", "pod", "-l", "app=web", "--no-headers")
    assert re.search(r"\d+m", top.stdout), top.stdout
