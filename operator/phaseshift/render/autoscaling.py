"""HorizontalPodAutoscaler and PodDisruptionBudget of a horizontally scaled workload; the
quorum tiers (Redis Cluster, RabbitMQ, Kafka, Cassandra) take the same budget."""

from __future__ import annotations

import copy
from typing import Any

from phaseshift.api import HpaScalingRules
from phaseshift.catalog import Autoscale
from phaseshift.render.scope import Scope

# Up at once: a load spike needs pods now, and too many for a while cost little. Per
# 15 s the HPA may double the pods or add 4, whichever is more.
SCALE_UP: dict[str, Any] = {
    "stabilizationWindowSeconds": 0,
    "selectPolicy": "Max",
    "policies": [
        {"type": "Percent", "value": 100, "periodSeconds": 15},
        {"type": "Pods", "value": 4, "periodSeconds": 15},
    ],
}
# Down slowly: only after five minutes of lower recommendations, and by at most half the
# pods a minute, so a dip between two peaks does not shed the capacity the next needs.
SCALE_DOWN: dict[str, Any] = {
    "stabilizationWindowSeconds": 300,
    "selectPolicy": "Max",
    "policies": [{"type": "Percent", "value": 50, "periodSeconds": 60}],
}


def _rules(default: dict[str, Any], override: HpaScalingRules | None) -> dict[str, Any]:
    rules = copy.deepcopy(default)
    if override is not None:
        rules.update(override.to_json())
    return rules


def behavior(scope: Scope) -> dict[str, Any]:
    """The HPAs' spec.behavior: the defaults above, with the phase's override field by
    field (a policies list replaces the default list)."""
    hpa = scope.override.hpa if scope.override is not None else None
    override = hpa.behavior if hpa is not None else None
    return {
        "scaleUp": _rules(SCALE_UP, override.scale_up if override else None),
        "scaleDown": _rules(SCALE_DOWN, override.scale_down if override else None),
    }


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
            "behavior": behavior(scope),
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
