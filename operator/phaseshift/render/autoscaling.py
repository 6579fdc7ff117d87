"""HorizontalPodAutoscaler and PodDisruptionBudget of a horizontally scaled workload; the
quorum tiers (Redis Cluster, RabbitMQ, Kafka, Cassandra) take the same budget."""

from __future__ import annotations

from typing import Any

from phaseshift.catalog import Autoscale
from phaseshift.render.scope import Scope


def hpa(scope: Scope, suffix: str, component: str, bounds: Autoscale) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": scope.metadata(suffix, component),
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": scope.name(suffix),
            },
            "minReplicas": bounds.min_replicas,
            "maxReplicas": bounds.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": bounds.target_cpu_percent,
                        },
                    },
                }
            ],
        },
    }


def pdb(scope: Scope, suffix: str, component: str, selector: dict[str, str]) -> dict[str, Any]:
    # maxUnavailable rather than minAvailable: it keeps working however far the HPA scales.
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": scope.metadata(suffix, component),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": dict(selector)}},
    }
