"""Shared pieces of pod templates: security, resources, probes, scrape and mesh marks."""

from __future__ import annotations

from typing import Any

from phaseshift.catalog import Size
from phaseshift.render.scope import Scope

# Unprivileged user of the sample app; the official images of the backing services
# each run as their own user, named where they are built.
APP_UID = 10001
METRICS_PATH = "/metrics"


def resources(size: Size) -> dict[str, Any]:
    return {
        "requests": {"cpu": size.cpu, "memory": size.memory},
        "limits": {"cpu": size.cpu_limit, "memory": size.memory_limit},
    }


def container_security(*, read_only_root: bool = True) -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": read_only_root,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def pod_security(uid: int) -> dict[str, Any]:
    # fsGroup makes mounted volumes writable by the unprivileged user.
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def http_probe(
    path: str, port: int | str, *, period: int = 10, failures: int = 3
) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def exec_probe(command: list[str], *, period: int = 10, failures: int = 3) -> dict[str, Any]:
    return {
        "exec": {"command": list(command)},
        "periodSeconds": period,
        "timeoutSeconds": 5,
        "failureThreshold": failures,
    }


def tcp_probe(port: int | str, *, period: int = 10, failures: int = 6) -> dict[str, Any]:
    return {"tcpSocket": {"port": port}, "periodSeconds": period, "failureThreshold": failures}


def scrape_annotations(metrics_port: int | None) -> dict[str, str]:
    """prometheus.io/* marks for Prometheus' kubernetes_sd pod discovery. A workload with
    no Prometheus endpoint says so with scrape=false, so a scrape config that keeps
    everything does not chase a port that speaks another protocol."""
    if metrics_port is None:
        return {"prometheus.io/scrape": "false"}
    return {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(metrics_port),
        "prometheus.io/path": METRICS_PATH,
    }


def mesh_marks(scope: Scope) -> tuple[dict[str, str], dict[str, str]]:
    """(labels, annotations) that ask the plan's service mesh to inject its sidecar."""
    provider = scope.plan.spec.mesh.provider
    if provider == "Linkerd":
        return {}, {"linkerd.io/inject": "enabled"}
    if provider == "Istio":
        return {"sidecar.istio.io/inject": "true"}, {}
    return {}, {}


def topology_spread(selector: dict[str, str]) -> list[dict[str, Any]]:
    # ScheduleAnyway: spreading is a preference; a one-zone cluster must still run pods.
    return [
        {
            "maxSkew": 1,
            "topologyKey": key,
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": dict(selector)},
        }
        for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname")
    ]


def pod_template(
    scope: Scope,
    *,
    workload: str,
    component: str,
    spec: dict[str, Any],
    metrics_port: int | None,
    meshed: bool,
    extra_labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    labels = scope.pod_labels(workload, component, **(extra_labels or {}))
    notes = scrape_annotations(metrics_port)
    if meshed:
        mesh_labels, mesh_annotations = mesh_marks(scope)
        labels.update(mesh_labels)
        notes.update(mesh_annotations)
    notes.update(annotations or {})
    return {"metadata": {"labels": labels, "annotations": notes}, "spec": spec}


def env_from_pod(name: str, field: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": field}}}


def env_from_secret(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def empty_dir(name: str, *, memory: bool = False) -> dict[str, Any]:
    return {"name": name, "emptyDir": {"medium": "Memory"} if memory else {}}


def volume_claim_template(storage: str) -> dict[str, Any]:
    return {
        "metadata": {"name": "data"},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": storage}},
        },
    }


def retain_claims() -> dict[str, str]:
    """Volumes outlive their StatefulSet, deleted or scaled down: they hold the data."""
    return {"whenDeleted": "Retain", "whenScaled": "Retain"}
