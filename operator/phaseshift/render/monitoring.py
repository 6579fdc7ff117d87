"""From phase 4, prometheus-operator objects when the plan asks for them: a
ServiceMonitor for the services and a PrometheusRule with the plan's SLO alerts."""

from __future__ import annotations

from typing import Any

from phaseshift.api import (
    DEFAULT_SIGNALS,
    LABEL_COMPONENT,
    LABEL_MANAGED_BY,
    LABEL_PLAN,
    MANAGED_BY,
)
from phaseshift.catalog import Application
from phaseshift.promql import PlanKey, fill_for_plan
from phaseshift.render.microservices import SERVICES
from phaseshift.render.scope import Scope

COMPONENT = "monitoring"
API_VERSION = "monitoring.coreos.com/v1"


def _signal(scope: Scope, name: str) -> str:
    """The plan's own query for a signal, or the default one when the plan renamed it."""
    queries = scope.plan.signal_queries()
    if name in queries:
        return queries[name]
    return fill_for_plan(DEFAULT_SIGNALS[name], PlanKey.of(scope.plan))


def _service_monitor(scope: Scope) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "ServiceMonitor",
        "metadata": scope.metadata("services", COMPONENT),
        "spec": {
            "selector": {
                "matchLabels": {LABEL_MANAGED_BY: MANAGED_BY, LABEL_PLAN: scope.plan_label},
                "matchExpressions": [
                    {"key": LABEL_COMPONENT, "operator": "In", "values": list(SERVICES)}
                ],
            },
            "endpoints": [{"port": "http", "path": "/metrics", "interval": "15s"}],
        },
    }


def _prometheus_rule(scope: Scope) -> dict[str, Any]:
    slo = scope.plan.spec.observability
    labels = {"severity": "warning", "plan": scope.plan.name}
    return {
        "apiVersion": API_VERSION,
        "kind": "PrometheusRule",
        "metadata": scope.metadata("slo", COMPONENT),
        "spec": {
            "groups": [
                {
                    "name": f"{scope.plan.name}.slo",
                    "rules": [
                        {
                            "alert": "PhaseshiftLatencySLOBreached",
                            "expr": f"({_signal(scope, 'p95LatencySeconds')}) > {slo.slo_latency_seconds}",
                            "for": "5m",
                            "labels": dict(labels),
                            "annotations": {
                                "summary": f"p95 latency of {scope.plan.name} above {slo.slo_latency_seconds}s",
                            },
                        },
                        {
                            "alert": "PhaseshiftErrorRateSLOBreached",
                            "expr": f"({_signal(scope, 'errorRate')}) > {slo.slo_error_rate}",
                            "for": "5m",
                            "labels": dict(labels),
                            "annotations": {
                                "summary": f"error rate of {scope.plan.name} above {slo.slo_error_rate}",
                            },
                        },
                    ],
                }
            ]
        },
    }


def objects(scope: Scope) -> list[dict[str, Any]]:
    if scope.catalog.application is not Application.MICROSERVICES:
        return []
    result = []
    if scope.plan.spec.observability.service_monitor:
        result.append(_service_monitor(scope))
    if scope.plan.spec.observability.prometheus_rule:
        result.append(_prometheus_rule(scope))
    return result
