"""The order objects are applied in: what others depend on first."""

from __future__ import annotations

from typing import Any

# Config and storage before the Services that name them, Services before the
# StatefulSets that need their DNS, backing services before the Jobs that wait for them,
# Jobs before the app, and what refers to a Deployment after it.
KIND_ORDER: tuple[str, ...] = (
    "Secret",
    "ConfigMap",
    "PersistentVolumeClaim",
    "Service",
    "StatefulSet",
    "Job",
    "Deployment",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "Ingress",
    "HTTPRoute",
    "ServiceMonitor",
    "PrometheusRule",
)
_RANK = {kind: rank for rank, kind in enumerate(KIND_ORDER)}


def apply_order(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Objects sorted by kind rank; the sort is stable, so builders' order stays within a kind."""
    return sorted(objects, key=lambda obj: _RANK.get(obj["kind"], len(KIND_ORDER)))
