"""The StatefulSet of a data tier (PostgreSQL, RabbitMQ, Kafka, Cassandra), and the
objects around it of a clustered tier (RabbitMQ, Kafka, Cassandra).

Every data tier has the same outer shape: stateful metadata (retained on demotion),
claims that outlive the StatefulSet, one `data` volume per pod. Only the pods differ,
so the caller builds the pod template and this builder wraps it.
"""

from __future__ import annotations

from typing import Any, Literal

from phaseshift.render.autoscaling import pdb
from phaseshift.render.pods import retain_claims, volume_claim_template
from phaseshift.render.scope import Scope
from phaseshift.render.service import service


def data_statefulset(
    scope: Scope,
    *,
    suffix: str,
    component: str,
    replicas: int,
    service_name: str,
    pod_management: Literal["OrderedReady", "Parallel"],
    template: dict[str, Any],
    storage: str,
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": scope.metadata(suffix, component, stateful=True),
        "spec": {
            "replicas": replicas,
            "serviceName": service_name,
            "podManagementPolicy": pod_management,
            "selector": {"matchLabels": scope.selector(suffix)},
            "updateStrategy": {"type": "RollingUpdate"},
            "persistentVolumeClaimRetentionPolicy": retain_claims(),
            "template": template,
            "volumeClaimTemplates": [volume_claim_template(storage)],
        },
    }


def clustered_tier(
    scope: Scope,
    *,
    suffix: str,
    peers: str,
    component: str,
    config_name: str,
    config: dict[str, str],
    peer_ports: list[dict[str, Any]],
    client_ports: list[dict[str, Any]],
    statefulset: dict[str, Any],
) -> list[dict[str, Any]]:
    """A tier of peer nodes: its ConfigMap, a headless Service `peers` through which the
    nodes find each other (the StatefulSet's serviceName), a client Service `suffix`,
    the StatefulSet, and a PodDisruptionBudget that lets a drain take one node at a
    time, so the cluster's quorum holds."""
    selector = scope.selector(suffix)
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": scope.metadata(config_name, component),
            "data": config,
        },
        service(scope, peers, component, selector, peer_ports, headless=True),
        service(scope, suffix, component, selector, client_ports),
        statefulset,
        pdb(scope, suffix, component, selector),
    ]
