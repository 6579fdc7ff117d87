"""The StatefulSet of a data tier (PostgreSQL, RabbitMQ, Kafka, Cassandra).

Every data tier has the same outer shape: stateful metadata (retained on demotion),
claims that outlive the StatefulSet, one `data` volume per pod. Only the pods differ,
so the caller builds the pod template and this builder wraps it.
"""

from __future__ import annotations

from typing import Any, Literal

from phaseshift.render.pods import retain_claims, volume_claim_template
from phaseshift.render.scope import Scope


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
